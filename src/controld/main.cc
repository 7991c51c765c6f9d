// controld: the reference control server for wsa agents.

#include <csignal>
#include <iostream>

#include "controld/config.h"
#include "controld/server.h"
#include "wsa/common/cli_parse.h"
#include "wsa/common/logging.h"
#include "wsa/version.h"

int main(int argc, char** argv) {
  using namespace wsa;
  CLI::App app{"controld " WSA_VERSION
               " — reference control server for wsa workspace agents.\n"
               "Serves the agent and overlay gRPC APIs, persists what agents report in SQLite and "
               "offers an admin JSON API over HTTP."};
  controld::ControldOptions opts;
  std::string log_level = "info";
  std::string log_format = "text";
  bool example = false;
  bool check = false;
  bool print_relay_key = false;
  app.add_flag("--example-config", example,
               "Print a complete working config (fresh tokens) and exit");
  app.add_option("--config", opts.config_path, "JSON config file (see --example-config)")
      ->envname("WSA_CONTROLD_CONFIG");
  app.add_flag("--check-config", check, "Validate --config and exit");
  app.add_option("--grpc-listen", opts.grpc_listen,
                 "gRPC listen address: host:port, [v6]:port, :port or unix:/path")
      ->capture_default_str()
      ->envname("WSA_CONTROLD_GRPC_LISTEN");
  app.add_option("--http-listen", opts.http_listen,
                 "HTTP (admin API, /metrics, /healthz) listen address: host:port or unix:/path")
      ->capture_default_str()
      ->envname("WSA_CONTROLD_HTTP_LISTEN");
  app.add_option("--stun-listen", opts.stun_listen,
                 "STUN (RFC 8489 Binding, UDP) listen address: host:port, [v6]:port or :port "
                 "(IPv4 and IPv6); repeatable; port 0 picks one; \"none\" turns STUN off "
                 "(default: the --grpc-listen host, port 3478)")
      ->envname("WSA_CONTROLD_STUN_LISTEN");
  app.add_option("--data-dir", opts.data_dir,
                 "Directory for the database (default: /var/lib/wsa-controld as root, else "
                 "$XDG_STATE_HOME/wsa-controld or ~/.local/state/wsa-controld)")
      ->envname("WSA_CONTROLD_DATA_DIR");
  app.add_option("--db", opts.db_path, "SQLite database path (default: <data-dir>/controld.db)")
      ->envname("WSA_CONTROLD_DB");
  app.add_option("--tls-cert", opts.tls_cert, "PEM certificate chain: serve gRPC over TLS");
  app.add_option("--tls-key", opts.tls_key, "PEM private key for --tls-cert");
  app.add_option("--ready-file", opts.ready_file,
                 "Write {\"grpc\":..., \"http\":..., \"pid\":...} here once listening");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text or json")->capture_default_str();
  app.add_flag("--print-relay-key", print_relay_key,
               "Print the public key relay tickets are signed with (base64; creates "
               "<data-dir>/relay-signing.key if there is none) and exit: give it to relay-only "
               "nodes as --relay-trusted-key");
  app.add_flag("--relay-only", opts.relay_only,
               "Run as a relay node apart from the control server: Overlay.Relay (relay tickets, "
               "no tokens), STUN, /metrics and /healthz; no database, --config optional "
               "({\"relay_trusted_keys\": [...]})")
      ->envname("WSA_CONTROLD_RELAY_ONLY");
  app.add_option("--relay-trusted-key", opts.relay_trusted_keys,
                 "With --relay-only: a control server's relay public key (controld "
                 "--print-relay-key); repeatable (key rotation)")
      ->envname("WSA_CONTROLD_RELAY_TRUSTED_KEY");
  app.add_option("--max-relay-streams", opts.max_relay_streams,
                 "With --relay-only: relay streams served at once; more are refused")
      ->capture_default_str();
  app.set_version_flag("--version", WSA_VERSION);
  WSA_CLI_PARSE(app, argc, argv);

  if (example) {
    std::cout << controld::exampleConfig();
    return 0;
  }
  // A server outlives whatever reads its output: a closed stderr (terminal gone, a log pipe
  // that died) turns writes into errors, not into SIGPIPE deaths. Sockets are written with
  // MSG_NOSIGNAL anyway.
  ::signal(SIGPIPE, SIG_IGN);
  logging::Options lopts;
  lopts.level = log_level;
  auto fmt = logging::parseFormat(log_format);
  if (!fmt) {
    std::cerr << "controld: --log-format: " << fmt.error() << "\n";
    return 2;
  }
  lopts.format = *fmt;
  if (auto st = logging::init(lopts); !st) {
    std::cerr << "controld: " << st.error() << "\n";
    return 2;
  }
  if (print_relay_key) {
    auto key = controld::relaySigningPublicKey(opts.data_dir.empty() ? controld::defaultDataDir()
                                                                     : opts.data_dir);
    if (!key) {
      std::cerr << "controld: " << key.error() << "\n";
      return 1;
    }
    std::cout << *key << "\n";
    return 0;
  }
  if (opts.relay_only) {
    if (!opts.config_path.empty()) {
      auto keys = controld::loadRelayOnlyConfig(opts.config_path);
      if (!keys) {
        std::cerr << "controld: " << keys.error() << "\n";
        return 2;
      }
      opts.relay_trusted_keys.insert(opts.relay_trusted_keys.end(), keys->begin(), keys->end());
    }
    if (check) {
      std::cout << "relay-only: " << opts.relay_trusted_keys.size() << " trusted key(s)\n";
      return 0;
    }
    auto server = controld::Controld::create(std::move(opts), controld::Config{});
    if (!server) {
      std::cerr << "controld: " << server.error() << "\n";
      return 1;
    }
    return (*server)->run();
  }
  if (opts.config_path.empty()) {
    std::cerr
        << "controld: --config is required (try: controld --example-config > controld.json)\n";
    return 2;
  }
  auto config = controld::loadConfig(opts.config_path);
  if (!config) {
    std::cerr << "controld: " << config.error() << "\n";
    return 2;
  }
  if (check) {
    std::cout << opts.config_path << ": OK (" << config->agents.size() << " agent(s), "
              << config->users.size() << " user(s))\n";
    return 0;
  }
  auto server = controld::Controld::create(std::move(opts), std::move(*config));
  if (!server) {
    std::cerr << "controld: " << server.error() << "\n";
    return 1;
  }
  return (*server)->run();
}
