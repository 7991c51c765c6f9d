#include "wsa/control/channel.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include "wsa/common/fs.h"

namespace wsa::control {

Result<std::shared_ptr<grpc::Channel>> makeChannel(const ControlUrl& url,
                                                   const ChannelOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (url.scheme == ControlUrl::Scheme::kHttps) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      auto roots = readFile(options.ca_file);
      if (!roots) return makeError("CA file " + roots.error());
      ssl.pem_root_certs = *roots;
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect quickly after a server restart; our own loop adds the capped backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
  args.SetMaxReceiveMessageSize(16 << 20);
  return grpc::CreateCustomChannel(url.grpc_target, creds, args);
}

void prepareContext(grpc::ClientContext& context, const std::string& token) {
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  context.AddMetadata("wsa-api-version", kApiVersion);
}

}  // namespace wsa::control
