#pragma once
// Method + path routing. Patterns are literal segments, "{name}" segments (captured into
// Request::params) and a final "*" that captures the rest of the path as params["*"].

#include <functional>
#include <string>
#include <vector>

#include "wsa/http/message.h"

namespace wsa::http {

class Router {
 public:
  using Handler = std::function<void(Request&, Responder)>;
  using SyncHandler = std::function<Response(Request&)>;

  void add(std::string method, std::string pattern, Handler handler);
  void addSync(std::string method, std::string pattern, SyncHandler handler);
  // Routes the request; unknown paths get 404 and wrong methods 405, both as JSON errors.
  void dispatch(Request& request, Responder respond) const;
  // The matched pattern for a request (for metrics labels), or "" if none.
  std::string matchPattern(const Request& request) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  static bool match(const Route& route, const std::vector<std::string>& path,
                    std::map<std::string, std::string>* params);
  std::vector<Route> routes_;
};

}  // namespace wsa::http
