#pragma once
// Blocking HTTP requests for tests, through libcurl (the real client users have).

#include <chrono>
#include <string>
#include <vector>

namespace wsa::test {

struct HttpResult {
  int status = 0;  // 0 on transport failure
  std::string body;
  std::string error;  // transport error text
  std::string content_type;
};

HttpResult httpRequest(const std::string& method, const std::string& url,
                       const std::string& body = "", const std::vector<std::string>& headers = {},
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000),
                       const std::string& unix_socket = "");

}  // namespace wsa::test
