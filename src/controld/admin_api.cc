#include "controld/admin_api.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "wsa/agent/v1/events.pb.h"
#include "wsa/common/metrics.h"
#include "wsa/common/secret.h"
#include "wsa/common/strings.h"

namespace wsa::controld {

using json = nlohmann::json;
using http::Request;
using http::Response;

namespace {

constexpr size_t kMaxBannerMessage = 4096;

Response jsonResponse(int status, const json& j) {
  return Response::json(status, j.dump(2) + "\n");
}

bool authorized(const ServiceContext& ctx, const Request& req) {
  const std::string* h = req.header("Authorization");
  if (h == nullptr) return false;
  std::string_view v = trim(*h);
  constexpr std::string_view kBearer = "Bearer ";
  if (v.size() <= kBearer.size() || !iequals(v.substr(0, kBearer.size()), kBearer)) return false;
  return constantTimeEquals(trim(v.substr(kBearer.size())), ctx.config->admin_token);
}

Response unauthorized() {
  auto r =
      Response::error(401, "missing or wrong admin token (Authorization: Bearer <admin_token>)");
  r.setHeader("WWW-Authenticate", "Bearer");
  return r;
}

int64_t intParam(const Request& req, const char* name, int64_t def) {
  auto v = req.queryParam(name);
  if (!v) return def;
  int64_t out = def;
  std::from_chars(v->data(), v->data() + v->size(), out);
  return out;
}

// Wraps a handler with the admin-token check.
http::Router::SyncHandler admin(ServiceContext& ctx, http::Router::SyncHandler h) {
  return [&ctx, h = std::move(h)](Request& req) {
    if (!authorized(ctx, req)) return unauthorized();
    return h(req);
  };
}

json bannerJson(const std::optional<Banner>& b) {
  if (!b) return {{"enabled", false}, {"message", ""}, {"background_color", ""}};
  return {
      {"enabled", b->enabled}, {"message", b->message}, {"background_color", b->background_color}};
}

}  // namespace

http::Router makeHealthRouter(ServiceContext& ctx) {
  http::Router r;
  r.addSync("GET", "/healthz", [](Request&) { return jsonResponse(200, {{"status", "ok"}}); });
  r.addSync("GET", "/metrics", [&ctx](Request&) {
    auto resp = Response::text(200, ctx.collectors->text());
    resp.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return resp;
  });
  return r;
}

http::Router makeAdminRouter(ServiceContext& ctx) {
  http::Router r = makeHealthRouter(ctx);
  r.addSync("GET", "/api/v1/agents", admin(ctx, [&ctx](Request&) {
              json list = json::array();
              for (const auto& a : ctx.store->listAgents()) {
                json s = ctx.store->agentSummary(a);
                s["configured"] = ctx.agent_configs.count(a.id) > 0;
                list.push_back(s);
              }
              return jsonResponse(200, {{"agents", list}});
            }));
  r.addSync("GET", "/api/v1/agents/{name}", admin(ctx, [&ctx](Request& req) {
              auto a = ctx.store->findAgent(req.params["name"]);
              if (!a) return Response::error(404, "no agent named \"" + req.params["name"] + "\"");
              json view = ctx.store->agentView(*a, intParam(req, "logs_after", 0),
                                               intParam(req, "logs_limit", -1));
              view["configured"] = ctx.agent_configs.count(a->id) > 0;
              return jsonResponse(200, view);
            }));
  r.addSync("GET", "/api/v1/agents/{name}/logs", admin(ctx, [&ctx](Request& req) {
              auto a = ctx.store->findAgent(req.params["name"]);
              if (!a) return Response::error(404, "no agent named \"" + req.params["name"] + "\"");
              json view =
                  ctx.store->agentView(*a, intParam(req, "after", 0), intParam(req, "limit", -1));
              return jsonResponse(200, {{"logs", view["logs"]},
                                        {"logs_length", view["logs_length"]},
                                        {"logs_overflowed", view["logs_overflowed"]}});
            }));
  r.addSync(
      "POST", "/api/v1/agents/{name}/shutdown", admin(ctx, [&ctx](Request& req) {
        auto a = ctx.store->findAgent(req.params["name"]);
        if (!a) return Response::error(404, "no agent named \"" + req.params["name"] + "\"");
        std::string reason = "requested by the control server";
        if (!req.body.empty()) {
          json body = json::parse(req.body, nullptr, false);
          if (body.is_discarded() || !body.is_object()) {
            return Response::error(400, "body must be a JSON object like {\"reason\": \"...\"}");
          }
          if (body.contains("reason") && body["reason"].is_string()) {
            reason = body["reason"].get<std::string>();
          }
        }
        agent::v1::ServerEvent ev;
        ev.mutable_shutdown_requested()->set_reason(reason);
        size_t n = ctx.hub->sendEvent(a->id, ev);
        ctx.log->info("shutdown of agent {} requested ({} stream(s) reached)", a->name, n);
        return jsonResponse(n > 0 ? 202 : 409, {{"delivered", n > 0},
                                                {"error", n > 0 ? "" : "agent is not connected"}});
      }));
  r.addSync("GET", "/api/v1/banner", admin(ctx, [&ctx](Request&) {
              return jsonResponse(200, bannerJson(ctx.store->banner()));
            }));
  r.addSync("PUT", "/api/v1/banner", admin(ctx, [&ctx](Request& req) {
              json body = json::parse(req.body, nullptr, false);
              if (body.is_discarded() || !body.is_object()) {
                return Response::error(400,
                                       "body must be a JSON object: {\"enabled\": true, "
                                       "\"message\": \"...\", \"background_color\": \"#rrggbb\"}");
              }
              for (const auto& [k, v] : body.items()) {
                if (k != "enabled" && k != "message" && k != "background_color") {
                  return Response::error(400, "unknown field \"" + k + "\"");
                }
              }
              Banner b = ctx.store->banner().value_or(Banner{});
              if (body.contains("enabled")) {
                if (!body["enabled"].is_boolean())
                  return Response::error(400, "enabled must be true or false");
                b.enabled = body["enabled"].get<bool>();
              }
              if (body.contains("message")) {
                if (!body["message"].is_string())
                  return Response::error(400, "message must be a string");
                b.message = body["message"].get<std::string>();
                if (b.message.size() > kMaxBannerMessage) {
                  return Response::error(400, "message is longer than 4096 bytes");
                }
              }
              if (body.contains("background_color")) {
                if (!body["background_color"].is_string()) {
                  return Response::error(400, "background_color must be a string");
                }
                b.background_color = body["background_color"].get<std::string>();
              }
              ctx.store->setBanner(b, std::chrono::system_clock::now());
              agent::v1::ServerEvent ev;
              ev.mutable_banners_changed();
              size_t n = ctx.hub->broadcastEvent(ev);
              ctx.log->info("banner updated; notified {} agent stream(s)", n);
              json out = bannerJson(b);
              out["notified_agents"] = n;
              return jsonResponse(200, out);
            }));
  return r;
}

}  // namespace wsa::controld
