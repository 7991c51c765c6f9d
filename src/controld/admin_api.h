#pragma once
// controld's HTTP API: the admin JSON API (Bearer admin token), /healthz and /metrics.

#include "controld/context.h"
#include "wsa/http/router.h"

namespace wsa::controld {

http::Router makeAdminRouter(ServiceContext& ctx);
// /healthz and /metrics alone (controld --relay-only).
http::Router makeHealthRouter(ServiceContext& ctx);

}  // namespace wsa::controld
