#include "client/exit.h"

#include <iostream>

namespace wsa::client {

int report(const Exit& exit) {
  if (!exit.message.empty()) std::cerr << "wsa: " << exit.message << "\n";
  return exit.code;
}

}  // namespace wsa::client
