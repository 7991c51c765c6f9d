#pragma once
// stdin and stdout as one byte stream (`wsa proxy`, an ssh ProxyCommand). The descriptors are
// duplicated: closing the stream leaves 0 and 1 open.

#include <memory>

#include "wsa/net/stream.h"

namespace asio {
class io_context;
}

namespace wsa::client {

net::ByteStreamPtr makeStdioStream(asio::io_context& io);

}  // namespace wsa::client
