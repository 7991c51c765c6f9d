#pragma once
// A small asynchronous HTTP/1.1 GET for health checks: http:// and https:// (certificates are
// not verified: health checks test liveness, usually of local services with their own
// certificates). Answers the status code, or an error message. Runs on the loop; bounded by a
// timeout and by a 64 KiB cap on the response head.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "wsa/common/result.h"

namespace asio {
class io_context;
}

namespace wsa::agent {

class HttpGet {
 public:
  virtual ~HttpGet() = default;
  virtual void cancel() = 0;
};

std::unique_ptr<HttpGet> httpGet(asio::io_context& io, const std::string& url,
                                 std::chrono::milliseconds timeout,
                                 std::function<void(Result<int>)> done);

}  // namespace wsa::agent
