#include "wsa/http/router.h"

#include "wsa/common/strings.h"

namespace wsa::http {

namespace {
std::vector<std::string> pathSegments(const std::string& path) {
  std::vector<std::string> out;
  for (auto& s : split(path, '/')) {
    if (!s.empty()) out.push_back(std::move(s));
  }
  return out;
}
}  // namespace

void Router::add(std::string method, std::string pattern, Handler handler) {
  Route r;
  r.method = std::move(method);
  r.segments = pathSegments(pattern);
  r.pattern = std::move(pattern);
  r.handler = std::move(handler);
  routes_.push_back(std::move(r));
}

void Router::addSync(std::string method, std::string pattern, SyncHandler handler) {
  add(std::move(method), std::move(pattern),
      [h = std::move(handler)](Request& req, Responder respond) { respond(h(req)); });
}

bool Router::match(const Route& route, const std::vector<std::string>& path,
                   std::map<std::string, std::string>* params) {
  size_t i = 0;
  for (; i < route.segments.size(); ++i) {
    const std::string& seg = route.segments[i];
    if (seg == "*") {
      if (params != nullptr) {
        std::string rest;
        for (size_t k = i; k < path.size(); ++k) {
          if (!rest.empty()) rest += '/';
          rest += path[k];
        }
        (*params)["*"] = rest;
      }
      return true;
    }
    if (i >= path.size()) return false;
    if (seg.size() > 2 && seg.front() == '{' && seg.back() == '}') {
      if (params != nullptr) (*params)[seg.substr(1, seg.size() - 2)] = path[i];
      continue;
    }
    if (seg != path[i]) return false;
  }
  return i == path.size();
}

void Router::dispatch(Request& request, Responder respond) const {
  auto path = pathSegments(request.path);
  std::string allowed;
  for (const auto& route : routes_) {
    if (!match(route, path, nullptr)) continue;
    bool method_ok =
        route.method == request.method || (request.method == "HEAD" && route.method == "GET");
    if (!method_ok) {
      if (!allowed.empty()) allowed += ", ";
      allowed += route.method;
      continue;
    }
    request.params.clear();
    match(route, path, &request.params);
    route.handler(request, std::move(respond));
    return;
  }
  if (!allowed.empty()) {
    auto r = Response::error(405, "method " + request.method + " not allowed on " + request.path);
    r.setHeader("Allow", allowed);
    respond(std::move(r));
    return;
  }
  respond(Response::error(404, "no route for " + request.path));
}

std::string Router::matchPattern(const Request& request) const {
  auto path = pathSegments(request.path);
  for (const auto& route : routes_) {
    if (match(route, path, nullptr)) return route.pattern;
  }
  return "";
}

}  // namespace wsa::http
