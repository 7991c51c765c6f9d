#pragma once
// HTTP/1.1 request and response values.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsa::http {

struct Header {
  std::string name;
  std::string value;
};

struct Request {
  std::string method;
  std::string target;  // as received: path plus optional ?query
  std::string path;    // percent-decoded path
  std::string query;   // raw query string without '?'
  int version_minor = 1;
  std::vector<Header> headers;
  std::string body;
  std::string remote;                         // peer address
  std::map<std::string, std::string> params;  // filled by the router from {name} segments

  // First header with this name (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
  // Decoded value of a query parameter.
  std::optional<std::string> queryParam(std::string_view name) const;
  bool keepAlive() const;
};

struct Response {
  int status = 200;
  std::vector<Header> headers;
  std::string body;

  // Body is already-serialized JSON.
  static Response json(int status, std::string body);
  static Response text(int status, std::string body);
  // {"error": message} with the given status.
  static Response error(int status, std::string_view message);
  Response& setHeader(std::string name, std::string value);
  const std::string* header(std::string_view name) const;
};

// Completes a request; may be called from any thread, at most once.
using Responder = std::function<void(Response)>;

std::string_view reasonPhrase(int status);
std::string percentDecode(std::string_view s, bool plus_as_space = false);

}  // namespace wsa::http
