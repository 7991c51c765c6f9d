// controld, the real binary, driven over real gRPC (TCP and unix socket) and its admin API.

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "integration/grpc_client.h"
#include "support/controld_harness.h"
#include "support/http_client.h"

namespace wsa::test {
namespace {

namespace v1 = wsa::agent::v1;
using google::protobuf::util::TimeUtil;
using json = nlohmann::json;

json richConfig() {
  json c = basicControldConfig();
  c["banner"] = {{"enabled", true}, {"message", "initial banner"}, {"background_color", "#000"}};
  c["stats_report_interval_seconds"] = 7;
  c["agents"][0]["manifest"] = json::parse(R"({
    "directory": "~/project",
    "environment_variables": {"EDITOR": "vi"},
    "motd_path": "/etc/motd",
    "scripts": [{"display_name": "setup", "script": "echo hi", "run_on_start": true,
                 "timeout_seconds": 30}],
    "metadata": [{"key": "load", "script": "cat /proc/loadavg", "interval_seconds": 5}],
    "apps": [{"slug": "web", "healthcheck": {"url": "http://127.0.0.1:1/", "interval_seconds": 1,
              "threshold": 2}}]
  })");
  return c;
}

class ControldTransport : public ::testing::TestWithParam<bool> {};

TEST_P(ControldTransport, EveryAgentReportIsStoredAndVisible) {
  ControldHarness::Options opts;
  opts.grpc_on_unix_socket = GetParam();
  ControldHarness cd(richConfig(), opts);
  cd.start();
  ControlClient c(cd.controlUrl());
  const std::string tok = cd.agentToken();

  // GetManifest
  v1::Manifest m;
  ASSERT_TRUE(c.agent->GetManifest(callContext(tok).get(), {}, &m).ok());
  EXPECT_EQ(m.agent_name(), "dev");
  EXPECT_EQ(m.owner_username(), "alice");
  EXPECT_EQ(m.directory(), "~/project");
  EXPECT_EQ(m.agent_id().size(), 36u);
  ASSERT_EQ(m.scripts_size(), 1);
  EXPECT_EQ(m.scripts(0).timeout_seconds(), 30u);
  EXPECT_EQ(m.overlay_addresses_size(), 2);
  EXPECT_EQ(m.relay_map().regions_size(), 1);
  EXPECT_EQ(cd.agentView()["id"], m.agent_id());

  // UpdateStartup
  v1::UpdateStartupRequest su;
  su.mutable_startup()->set_version("1.2.3");
  su.mutable_startup()->set_expanded_directory("/home/u/project");
  su.mutable_startup()->add_subsystems(v1::SUBSYSTEM_ENVBOX);
  v1::Startup su_out;
  ASSERT_TRUE(c.agent->UpdateStartup(callContext(tok).get(), su, &su_out).ok());

  // UpdateLifecycle, including a retried report that must not duplicate.
  auto lifecycle = [&](v1::LifecycleState s, int64_t secs) {
    v1::UpdateLifecycleRequest r;
    r.mutable_lifecycle()->set_state(s);
    *r.mutable_lifecycle()->mutable_changed_at() = TimeUtil::SecondsToTimestamp(secs);
    v1::Lifecycle out;
    return c.agent->UpdateLifecycle(callContext(tok).get(), r, &out);
  };
  ASSERT_TRUE(lifecycle(v1::LIFECYCLE_STATE_STARTING, 1000).ok());
  ASSERT_TRUE(lifecycle(v1::LIFECYCLE_STATE_READY, 1001).ok());
  ASSERT_TRUE(lifecycle(v1::LIFECYCLE_STATE_READY, 1001).ok());
  EXPECT_EQ(lifecycle(v1::LIFECYCLE_STATE_UNSPECIFIED, 1002).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // BatchUpdateMetadata (unknown keys are ignored)
  v1::BatchUpdateMetadataRequest md;
  auto* load = md.add_metadata();
  load->set_key("load");
  load->mutable_result()->set_value("0.01 0.02 0.03");
  *load->mutable_result()->mutable_collected_at() = TimeUtil::SecondsToTimestamp(2000);
  md.add_metadata()->set_key("not-in-manifest");
  v1::BatchUpdateMetadataResponse md_out;
  ASSERT_TRUE(c.agent->BatchUpdateMetadata(callContext(tok).get(), md, &md_out).ok());

  // BatchCreateLogs
  v1::BatchCreateLogsRequest logs;
  logs.set_log_source_id(m.scripts(0).log_source_id());
  logs.set_agent_instance_id("instance-1");
  for (int i = 1; i <= 3; ++i) {
    auto* l = logs.add_logs();
    l->set_output("line " + std::to_string(i));
    l->set_level(i == 3 ? v1::LOG_LEVEL_ERROR : v1::LOG_LEVEL_INFO);
    l->set_sequence(static_cast<uint64_t>(i));
  }
  v1::BatchCreateLogsResponse logs_out;
  ASSERT_TRUE(c.agent->BatchCreateLogs(callContext(tok).get(), logs, &logs_out).ok());
  EXPECT_FALSE(logs_out.log_limit_exceeded());
  // The same batch again (a lost acknowledgement) stores nothing new.
  ASSERT_TRUE(c.agent->BatchCreateLogs(callContext(tok).get(), logs, &logs_out).ok());

  // UpdateStats: first call learns the interval, then a report.
  v1::UpdateStatsRequest st;
  v1::UpdateStatsResponse st_out;
  ASSERT_TRUE(c.agent->UpdateStats(callContext(tok).get(), st, &st_out).ok());
  EXPECT_EQ(TimeUtil::DurationToSeconds(st_out.report_interval()), 7);
  st.mutable_stats()->set_session_count_ssh(3);
  st.mutable_stats()->set_rx_bytes(12345);
  (*st.mutable_stats()->mutable_connections_by_proto())["ssh"] = 3;
  ASSERT_TRUE(c.agent->UpdateStats(callContext(tok).get(), st, &st_out).ok());

  // BatchUpdateAppHealths
  v1::BatchUpdateAppHealthRequest ah;
  auto* u = ah.add_updates();
  u->set_id(m.apps(0).id());
  u->set_health(v1::APP_HEALTH_HEALTHY);
  v1::BatchUpdateAppHealthResponse ah_out;
  ASSERT_TRUE(c.agent->BatchUpdateAppHealths(callContext(tok).get(), ah, &ah_out).ok());
  v1::BatchUpdateAppHealthRequest bad_ah;
  bad_ah.add_updates()->set_id("nope");
  EXPECT_EQ(c.agent->BatchUpdateAppHealths(callContext(tok).get(), bad_ah, &ah_out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // ScriptCompleted
  v1::ScriptCompletedRequest sc;
  sc.mutable_timing()->set_script_id(m.scripts(0).id());
  *sc.mutable_timing()->mutable_start() = TimeUtil::SecondsToTimestamp(3000);
  *sc.mutable_timing()->mutable_end() = TimeUtil::SecondsToTimestamp(3002);
  sc.mutable_timing()->set_exit_code(0);
  sc.mutable_timing()->set_stage(v1::Timing::STAGE_START);
  sc.mutable_timing()->set_status(v1::Timing::STATUS_OK);
  v1::ScriptCompletedResponse sc_out;
  ASSERT_TRUE(c.agent->ScriptCompleted(callContext(tok).get(), sc, &sc_out).ok());

  // ReportConnection: connect then disconnect
  for (auto action : {v1::Connection::ACTION_CONNECT, v1::Connection::ACTION_DISCONNECT}) {
    v1::ReportConnectionRequest rc;
    rc.mutable_connection()->set_id("c0ffee00-0000-4000-8000-000000000001");
    rc.mutable_connection()->set_action(action);
    rc.mutable_connection()->set_type(v1::Connection::TYPE_SSH);
    rc.mutable_connection()->set_ip("100.96.0.7");
    rc.mutable_connection()->set_status_code(action == v1::Connection::ACTION_DISCONNECT ? 3 : 0);
    *rc.mutable_connection()->mutable_timestamp() = TimeUtil::GetCurrentTime();
    v1::ReportConnectionResponse rc_out;
    ASSERT_TRUE(c.agent->ReportConnection(callContext(tok).get(), rc, &rc_out).ok());
  }

  // GetAnnouncementBanners
  v1::GetAnnouncementBannersResponse banners;
  ASSERT_TRUE(c.agent->GetAnnouncementBanners(callContext(tok).get(), {}, &banners).ok());
  ASSERT_EQ(banners.announcement_banners_size(), 1);
  EXPECT_EQ(banners.announcement_banners(0).message(), "initial banner");

  // Everything is visible through the admin API.
  json v = cd.agentView();
  EXPECT_EQ(v["startup"]["version"], "1.2.3");
  EXPECT_EQ(v["startup"]["expanded_directory"], "/home/u/project");
  EXPECT_EQ(v["startup"]["subsystems"], json::array({"envbox"}));
  ASSERT_EQ(v["lifecycle"].size(), 2u);
  EXPECT_EQ(v["lifecycle"][0]["state"], "starting");
  EXPECT_EQ(v["lifecycle"][1]["state"], "ready");
  EXPECT_EQ(v["lifecycle"][1]["changed_at"], "1970-01-01T00:16:41.000000Z");
  EXPECT_EQ(v["metadata"]["load"]["value"], "0.01 0.02 0.03");
  EXPECT_FALSE(v["metadata"].contains("not-in-manifest"));
  ASSERT_EQ(v["logs"].size(), 3u);
  EXPECT_EQ(v["logs"][0]["output"], "line 1");
  EXPECT_EQ(v["logs"][0]["source"], "setup");
  EXPECT_EQ(v["logs"][2]["level"], "error");
  EXPECT_EQ(v["stats"]["session_count_ssh"], "3");  // int64 as a JSON string (proto3 JSON)
  EXPECT_EQ(v["stats"]["connections_by_proto"]["ssh"], "3");
  EXPECT_EQ(v["app_health"][m.apps(0).id()], "healthy");
  ASSERT_EQ(v["script_timings"].size(), 1u);
  EXPECT_EQ(v["script_timings"][0]["status"], "ok");
  EXPECT_EQ(v["script_timings"][0]["stage"], "start");
  ASSERT_EQ(v["connections"].size(), 2u);
  EXPECT_EQ(v["connections"][0]["action"], "connect");
  EXPECT_EQ(v["connections"][1]["action"], "disconnect");
  EXPECT_EQ(v["connections"][1]["status_code"], 3);
  EXPECT_EQ(v["connections"][1]["type"], "ssh");
  EXPECT_FALSE(v["connected"].get<bool>());
}

TEST_P(ControldTransport, EventStreamMarksConnectedAndDeliversBannerAndShutdown) {
  ControldHarness::Options opts;
  opts.grpc_on_unix_socket = GetParam();
  ControldHarness cd(richConfig(), opts);
  cd.start();
  ControlClient c(cd.controlUrl());
  auto ctx = callContext(cd.agentToken(), std::chrono::seconds(30));
  v1::StreamEventsRequest req;
  req.set_agent_instance_id("i1");
  auto stream = c.agent->StreamEvents(ctx.get(), req);
  v1::ServerEvent ev;
  ASSERT_TRUE(stream->Read(&ev));
  ASSERT_TRUE(ev.has_hello());
  EXPECT_FALSE(ev.hello().server_version().empty());
  EXPECT_TRUE(
      waitUntil([&] { return cd.agentView()["connected"].get<bool>(); }, std::chrono::seconds(10)));

  auto put = httpRequest("PUT", "http://" + cd.httpAddress() + "/api/v1/banner",
                         R"({"enabled": true, "message": "maintenance at 6"})",
                         {"Authorization: Bearer " + cd.adminToken()});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(json::parse(put.body)["notified_agents"], 1);
  ASSERT_TRUE(stream->Read(&ev));
  EXPECT_TRUE(ev.has_banners_changed());
  v1::GetAnnouncementBannersResponse banners;
  ASSERT_TRUE(
      c.agent->GetAnnouncementBanners(callContext(cd.agentToken()).get(), {}, &banners).ok());
  EXPECT_EQ(banners.announcement_banners(0).message(), "maintenance at 6");

  auto shut = httpRequest("POST", "http://" + cd.httpAddress() + "/api/v1/agents/dev/shutdown",
                          R"({"reason": "workspace stopping"})",
                          {"Authorization: Bearer " + cd.adminToken()});
  EXPECT_EQ(shut.status, 202) << shut.body;
  ASSERT_TRUE(stream->Read(&ev));
  ASSERT_TRUE(ev.has_shutdown_requested());
  EXPECT_EQ(ev.shutdown_requested().reason(), "workspace stopping");

  ctx->TryCancel();
  while (stream->Read(&ev)) {
  }
  EXPECT_TRUE(waitUntil([&] { return !cd.agentView()["connected"].get<bool>(); },
                        std::chrono::seconds(10)));
  // Not connected: a shutdown request cannot be delivered and says so.
  auto shut2 = httpRequest("POST", "http://" + cd.httpAddress() + "/api/v1/agents/dev/shutdown", "",
                           {"Authorization: Bearer " + cd.adminToken()});
  EXPECT_EQ(shut2.status, 409);
}

INSTANTIATE_TEST_SUITE_P(Transports, ControldTransport, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "UnixSocket" : "Tcp";
                         });

TEST(Controld, RefusesMissingWrongAndMisplacedTokensWithoutLoggingThem) {
  ControldHarness cd(richConfig());
  cd.start();
  ControlClient c(cd.controlUrl());
  const std::string wrong = "wrong-token-" + randomHex();
  struct Case {
    std::string token;
    grpc::StatusCode code;
  };
  for (const auto& k :
       {Case{"", grpc::StatusCode::UNAUTHENTICATED}, Case{wrong, grpc::StatusCode::UNAUTHENTICATED},
        Case{cd.userToken(), grpc::StatusCode::PERMISSION_DENIED}}) {
    v1::Manifest m;
    EXPECT_EQ(c.agent->GetManifest(callContext(k.token).get(), {}, &m).error_code(), k.code);
    v1::UpdateLifecycleRequest lr;
    lr.mutable_lifecycle()->set_state(v1::LIFECYCLE_STATE_STARTING);
    v1::Lifecycle l;
    EXPECT_EQ(c.agent->UpdateLifecycle(callContext(k.token).get(), lr, &l).error_code(), k.code);
    v1::BatchCreateLogsRequest br;
    br.set_log_source_id("x");
    v1::BatchCreateLogsResponse b;
    EXPECT_EQ(c.agent->BatchCreateLogs(callContext(k.token).get(), br, &b).error_code(), k.code);
    v1::UpdateStatsResponse s;
    EXPECT_EQ(c.agent->UpdateStats(callContext(k.token).get(), {}, &s).error_code(), k.code);
    auto sctx = callContext(k.token);
    auto stream = c.agent->StreamEvents(sctx.get(), {});
    v1::ServerEvent ev;
    EXPECT_FALSE(stream->Read(&ev));
    EXPECT_EQ(stream->Finish().error_code(), k.code);
  }
  // Overlay calls need a known token too.
  overlay::v1::LookupAgentResponse la;
  overlay::v1::LookupAgentRequest lreq;
  lreq.set_agent_name("dev");
  EXPECT_EQ(c.overlay->LookupAgent(callContext(wrong).get(), lreq, &la).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // An incompatible API major version is refused clearly.
  grpc::ClientContext vctx;
  vctx.AddMetadata("authorization", "Bearer " + cd.agentToken());
  vctx.AddMetadata("wsa-api-version", "2.0");
  v1::Manifest m;
  auto vs = c.agent->GetManifest(&vctx, {}, &m);
  EXPECT_EQ(vs.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(vs.error_message().find("unsupported API version"), std::string::npos);

  EXPECT_EQ(cd.stop(), 0);
  std::string log = cd.log();
  EXPECT_NE(log.find("unknown token"), std::string::npos) << "refusals should be logged";
  for (const auto& secret : {wrong, cd.agentToken(), cd.userToken(), cd.adminToken()}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << "a token leaked into the log";
  }
}

TEST(Controld, KeepsReportsAcrossRestart) {
  ControldHarness cd(richConfig());
  cd.start();
  std::string agent_id;
  {
    ControlClient c(cd.controlUrl());
    v1::Manifest m;
    ASSERT_TRUE(c.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m).ok());
    agent_id = m.agent_id();
    v1::UpdateLifecycleRequest lr;
    lr.mutable_lifecycle()->set_state(v1::LIFECYCLE_STATE_STARTING);
    v1::Lifecycle l;
    ASSERT_TRUE(c.agent->UpdateLifecycle(callContext(cd.agentToken()).get(), lr, &l).ok());
    v1::BatchCreateLogsRequest br;
    br.set_log_source_id(m.scripts(0).log_source_id());
    br.add_logs()->set_output("persisted line");
    v1::BatchCreateLogsResponse b;
    ASSERT_TRUE(c.agent->BatchCreateLogs(callContext(cd.agentToken()).get(), br, &b).ok());
  }
  json before = cd.agentView();
  ASSERT_EQ(cd.stop(), 0);
  cd.start();  // same data directory and config
  json after = cd.agentView();
  EXPECT_EQ(after["id"], agent_id);
  EXPECT_EQ(after["lifecycle"], before["lifecycle"]);
  EXPECT_EQ(after["logs"], before["logs"]);
  EXPECT_EQ(after["overlay_addresses"], before["overlay_addresses"]);
  // And the restarted server still serves the agent under the same identity.
  ControlClient c(cd.controlUrl());
  v1::Manifest m;
  ASSERT_TRUE(c.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m).ok());
  EXPECT_EQ(m.agent_id(), agent_id);
}

TEST(Controld, EnforcesTheLogBudget) {
  json config = richConfig();
  config["log_budget_bytes"] = 2000;
  ControldHarness cd(config);
  cd.start();
  ControlClient c(cd.controlUrl());
  int accepted = 0;
  int refused = 0;
  for (int batch = 0; batch < 8; ++batch) {
    v1::BatchCreateLogsRequest br;
    br.set_log_source_id("agent");
    br.set_log_source_name("agent");
    br.set_agent_instance_id("i");
    for (int i = 0; i < 5; ++i) {
      auto* l = br.add_logs();
      l->set_output(std::string(100, static_cast<char>('a' + batch)));
      l->set_sequence(static_cast<uint64_t>(batch * 5 + i + 1));
    }
    v1::BatchCreateLogsResponse b;
    ASSERT_TRUE(c.agent->BatchCreateLogs(callContext(cd.agentToken()).get(), br, &b).ok());
    if (b.log_limit_exceeded()) {
      ++refused;
    } else {
      EXPECT_EQ(refused, 0) << "once exceeded, the limit must stay exceeded";
      ++accepted;
    }
  }
  EXPECT_EQ(accepted, 4);  // 4 × 500 bytes fit in 2000
  EXPECT_EQ(refused, 4);
  json v = cd.agentView();
  EXPECT_EQ(v["logs_length"], 2000);
  EXPECT_TRUE(v["logs_overflowed"].get<bool>());
  EXPECT_EQ(v["logs"].size(), 20u);
  auto metrics = httpRequest("GET", "http://" + cd.httpAddress() + "/metrics");
  EXPECT_NE(metrics.body.find("wsa_controld_log_batches_over_budget_total 4"), std::string::npos)
      << metrics.body;
}

struct BadConfig {
  std::string name;
  std::string text;
  std::string expected;
};

void PrintTo(const BadConfig& b, std::ostream* os) {
  *os << b.name;
}

class ControldBadConfig : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ControldBadConfig, DoesNotStartAndSaysWhy) {
  TempDir dir;
  std::string path = dir.file("controld.json");
  writeText(path, GetParam().text);
  auto r = run({controldPath(), "--config", path, "--data-dir", dir.file("data"), "--grpc-listen",
                "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
               std::chrono::seconds(20));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(GetParam().expected), std::string::npos) << r.output;
  EXPECT_FALSE(pathExists(dir.file("data/controld.db")));
}

INSTANTIATE_TEST_SUITE_P(
    All, ControldBadConfig,
    ::testing::Values(
        BadConfig{"NotJson", "{admin_token:", "not valid JSON"},
        BadConfig{"MissingToken", R"({"users": []})", "admin_token: is required"},
        BadConfig{"UnknownField", R"({"admin_token": "0123456789abcdef", "agentz": []})",
                  "agentz: unknown field"},
        BadConfig{"WrongType",
                  R"({"admin_token": "0123456789abcdef", "agents": [{"name": "a", "token": 5}]})",
                  "agents[0].token: must be a string"}),
    [](const ::testing::TestParamInfo<BadConfig>& i) { return i.param.name; });

TEST(Controld, MissingConfigFileIsAClearError) {
  auto r = run({controldPath(), "--config", "/nonexistent/wsa.json"}, std::chrono::seconds(20));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/wsa.json"), std::string::npos) << r.output;
}

TEST(Controld, ExampleConfigIsValidAndServes) {
  auto r = run({controldPath(), "--example-config"}, std::chrono::seconds(20));
  ASSERT_EQ(r.code, 0);
  ControldHarness cd(json::parse(r.output));
  cd.start();
  ControlClient c(cd.controlUrl());
  v1::Manifest m;
  ASSERT_TRUE(c.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m).ok());
  EXPECT_GT(m.scripts_size(), 0);
  EXPECT_GT(m.metadata_size(), 0);
}

TEST(Controld, KeepsServingWhenItsLogOutputGoesAway) {
  // stdout and stderr are a pipe nobody reads any more (a closed terminal, a `tee` that got
  // the terminal's Ctrl-C): writing a log line must not kill the server (SIGPIPE).
  ControldHarness::Options o;
  o.wrapper = {
      "python3", "-c",
      "import os, signal, sys\n"
      "signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # python ignores it; exec keeps that\n"
      "r, w = os.pipe()\n"
      "os.close(r)\n"
      "os.dup2(w, 1)\n"
      "os.dup2(w, 2)\n"
      "os.execv(sys.argv[1], sys.argv[1:])\n"};
  ControldHarness cd(basicControldConfig(), o);
  cd.start();  // it has logged that it serves by now
  ControlClient c(cd.controlUrl());
  v1::Manifest m;
  ASSERT_TRUE(c.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m).ok());
  auto r = httpRequest("GET", "http://" + cd.httpAddress() + "/healthz");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(cd.stop(), 0);
}

TEST(Controld, ServesTlsForHttpsUrls) {
  TempDir dir;
  auto gen = run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
                  "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", dir.file("key.pem"),
                  "-out", dir.file("cert.pem")},
                 std::chrono::seconds(30));
  ASSERT_EQ(gen.code, 0) << gen.output;
  ControldHarness::Options opts;
  opts.extra_args = {"--tls-cert", dir.file("cert.pem"), "--tls-key", dir.file("key.pem")};
  ControldHarness cd(richConfig(), opts);
  cd.start();
  control::ChannelOptions co;
  co.ca_file = dir.file("cert.pem");
  ControlClient tls("https://" + cd.grpcTarget(), co);
  v1::Manifest m;
  auto st = tls.agent->GetManifest(callContext(cd.agentToken()).get(), {}, &m);
  EXPECT_TRUE(st.ok()) << st.error_message();
  // A plaintext client cannot talk to the TLS listener.
  ControlClient plain("http://" + cd.grpcTarget());
  EXPECT_FALSE(
      plain.agent->GetManifest(callContext(cd.agentToken(), std::chrono::seconds(3)).get(), {}, &m)
          .ok());
}

TEST(Controld, SigtermEndsOpenStreamsAndExitsCleanly) {
  ControldHarness cd(richConfig());
  cd.start();
  ControlClient c(cd.controlUrl());
  auto ctx = callContext(cd.agentToken(), std::chrono::seconds(60));
  auto stream = c.agent->StreamEvents(ctx.get(), {});
  v1::ServerEvent ev;
  ASSERT_TRUE(stream->Read(&ev));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(cd.stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
  while (stream->Read(&ev)) {
  }
  auto st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(cd.log().find("stopped"), std::string::npos);
}

}  // namespace
}  // namespace wsa::test
