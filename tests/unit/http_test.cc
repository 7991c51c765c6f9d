#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <future>
#include <thread>

#include "support/http_client.h"
#include "support/util.h"
#include "wsa/http/parser.h"
#include "wsa/http/router.h"
#include "wsa/http/server.h"

namespace wsa::http {
namespace {

using State = RequestParser::State;

TEST(Parser, SimpleGet) {
  RequestParser p;
  ASSERT_EQ(p.feed("GET /a/b%20c?x=1&y=two+words HTTP/1.1\r\nHost: h\r\n\r\n"), State::kComplete);
  Request r = p.take();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/a/b c");
  EXPECT_EQ(r.query, "x=1&y=two+words");
  EXPECT_EQ(r.queryParam("y"), "two words");
  EXPECT_FALSE(r.queryParam("z").has_value());
  ASSERT_NE(r.header("host"), nullptr);
  EXPECT_TRUE(r.keepAlive());
}

TEST(Parser, BodyArrivesInPieces) {
  RequestParser p;
  EXPECT_EQ(p.feed("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234"), State::kNeedMore);
  EXPECT_EQ(p.feed("56789"), State::kComplete);
  EXPECT_EQ(p.take().body, "0123456789");
}

TEST(Parser, PipelinedRequests) {
  RequestParser p;
  ASSERT_EQ(p.feed("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nConnection: close\r\n\r\n"),
            State::kComplete);
  EXPECT_EQ(p.take().path, "/1");
  ASSERT_EQ(p.advance(), State::kComplete);
  Request r = p.take();
  EXPECT_EQ(r.path, "/2");
  EXPECT_FALSE(r.keepAlive());
  EXPECT_EQ(p.advance(), State::kNeedMore);
}

TEST(Parser, Http10DefaultsToClose) {
  RequestParser p;
  ASSERT_EQ(p.feed("GET / HTTP/1.0\r\n\r\n"), State::kComplete);
  EXPECT_FALSE(p.take().keepAlive());
}

struct BadCase {
  const char* input;
  int status;
};

void PrintTo(const BadCase& b, std::ostream* os) {
  *os << b.status << " for " << b.input;
}

class ParserErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParserErrors, AnswerWithStatus) {
  ParserLimits limits;
  limits.max_header_bytes = 256;
  limits.max_body_bytes = 100;
  RequestParser p(limits);
  EXPECT_EQ(p.feed(GetParam().input), State::kError);
  EXPECT_EQ(p.errorStatus(), GetParam().status) << p.errorMessage();
  EXPECT_FALSE(p.errorMessage().empty());
}

INSTANTIATE_TEST_SUITE_P(
    All, ParserErrors,
    ::testing::Values(BadCase{"GARBAGE\r\n\r\n", 400}, BadCase{"GET / HTTP/2.0\r\n\r\n", 505},
                      BadCase{"GET / FTP/1.0\r\n\r\n", 400},
                      BadCase{"GET relative HTTP/1.1\r\n\r\n", 400},
                      BadCase{"GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400},
                      BadCase{"GET / HTTP/1.1\r\nno-colon\r\n\r\n", 400},
                      BadCase{"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
                      BadCase{"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
                      BadCase{"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                              400},
                      BadCase{"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
                      BadCase{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501}));

TEST(Parser, OversizedHeaderWithoutTerminator) {
  ParserLimits limits;
  limits.max_header_bytes = 64;
  RequestParser p(limits);
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\nX: " + std::string(100, 'a')), State::kError);
  EXPECT_EQ(p.errorStatus(), 431);
}

TEST(Router, ParamsWildcardAndErrors) {
  Router r;
  r.addSync("GET", "/api/v1/agents/{name}",
            [](Request& req) { return Response::text(200, "agent " + req.params["name"]); });
  r.addSync("PUT", "/api/v1/agents/{name}", [](Request&) { return Response::text(200, "put"); });
  r.addSync("GET", "/debug/*", [](Request& req) { return Response::text(200, req.params["*"]); });
  auto call = [&](const std::string& method, const std::string& path) {
    Request req;
    req.method = method;
    req.path = path;
    Response out;
    r.dispatch(req, [&](Response resp) { out = std::move(resp); });
    return out;
  };
  EXPECT_EQ(call("GET", "/api/v1/agents/dev").body, "agent dev");
  EXPECT_EQ(call("HEAD", "/api/v1/agents/dev").status, 200);
  EXPECT_EQ(call("GET", "/debug/a/b").body, "a/b");
  EXPECT_EQ(call("GET", "/nope").status, 404);
  auto m = call("DELETE", "/api/v1/agents/dev");
  EXPECT_EQ(m.status, 405);
  ASSERT_NE(m.header("Allow"), nullptr);
  EXPECT_EQ(*m.header("Allow"), "GET, PUT");
  EXPECT_EQ(r.matchPattern(Request{"GET", "", "/api/v1/agents/x"}), "/api/v1/agents/{name}");
}

// A server on a real loopback socket, its loop on a background thread.
class ServerTest : public ::testing::Test {
 protected:
  void startServer(ServerOptions opts = {}) {
    Router r;
    r.addSync("GET", "/hello", [](Request&) { return Response::json(200, "{\"hello\":true}"); });
    r.addSync("POST", "/echo", [](Request& req) { return Response::text(200, req.body); });
    r.add("GET", "/async", [](Request&, Responder respond) {
      std::thread([respond = std::move(respond)] {
        respond(Response::text(200, "later"));
      }).detach();
    });
    server_ = std::make_unique<Server>(io_, std::move(r), opts);
    auto bound = server_->listen("127.0.0.1:0");
    ASSERT_TRUE(bound.ok()) << bound.error();
    addr_ = *bound;
    auto unix_bound = server_->listen("unix:" + dir_.file("http.sock"));
    ASSERT_TRUE(unix_bound.ok()) << unix_bound.error();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (server_) {
      std::promise<void> done;
      asio::post(io_, [&] {
        server_->stop();
        done.set_value();
      });
      done.get_future().wait();
      io_.stop();
    }
    if (thread_.joinable()) thread_.join();
  }

  test::TempDir dir_;
  asio::io_context io_;
  std::unique_ptr<Server> server_;
  std::string addr_;
  std::thread thread_;
};

TEST_F(ServerTest, ServesRoutesAndJsonErrors) {
  startServer();
  auto ok = test::httpRequest("GET", "http://" + addr_ + "/hello");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "{\"hello\":true}");
  EXPECT_EQ(ok.content_type, "application/json");
  auto missing = test::httpRequest("GET", "http://" + addr_ + "/missing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("\"error\""), std::string::npos);
  auto echo = test::httpRequest("POST", "http://" + addr_ + "/echo", "payload");
  EXPECT_EQ(echo.body, "payload");
  EXPECT_EQ(test::httpRequest("GET", "http://" + addr_ + "/async").body, "later");
}

TEST_F(ServerTest, ServesOnUnixSocket) {
  startServer();
  auto r = test::httpRequest("GET", "http://localhost/hello", "", {}, std::chrono::seconds(5),
                             dir_.file("http.sock"));
  EXPECT_EQ(r.status, 200) << r.error;
}

// Writes raw bytes and reads until the peer closes; bounded by SO_RCVTIMEO.
std::string rawExchange(const std::string& addr, const std::string& data,
                        bool close_write = false) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  auto colon = addr.rfind(':');
  s.connect({asio::ip::make_address(addr.substr(0, colon)),
             static_cast<uint16_t>(std::stoi(addr.substr(colon + 1)))});
  timeval tv{10, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  asio::write(s, asio::buffer(data));
  if (close_write) s.shutdown(asio::socket_base::shutdown_send);
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(s.native_handle(), buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST_F(ServerTest, PipelinedRequestsAnsweredInOrder) {
  startServer();
  std::string out = rawExchange(addr_,
                                "GET /hello HTTP/1.1\r\n\r\n"
                                "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                                "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
  size_t first = out.find("{\"hello\":true}");
  size_t second = out.find("abc");
  size_t third = out.rfind("{\"hello\":true}");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
}

TEST_F(ServerTest, MalformedRequestGetsErrorAndClose) {
  startServer();
  std::string out = rawExchange(addr_, "NOT HTTP\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400 Bad Request", 0), 0u) << out;
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
}

TEST_F(ServerTest, HeaderTimeoutClosesSlowClient) {
  ServerOptions o;
  o.header_timeout = std::chrono::milliseconds(200);
  startServer(o);
  auto start = std::chrono::steady_clock::now();
  // An incomplete request: the server must give up on it, not wait for ever.
  std::string out = rawExchange(addr_, "GET /hello HTTP/1.1\r\nX: partial");
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(out, "");
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST_F(ServerTest, ConnectionCapAnswers503) {
  ServerOptions o;
  o.max_connections = 1;
  startServer(o);
  asio::io_context io;
  asio::ip::tcp::socket hold(io);
  auto colon = addr_.rfind(':');
  hold.connect({asio::ip::make_address("127.0.0.1"),
                static_cast<uint16_t>(std::stoi(addr_.substr(colon + 1)))});
  // The held connection occupies the only slot once the server has accepted it.
  ASSERT_TRUE(
      test::waitUntil([&] { return server_->connectionCount() == 1; }, std::chrono::seconds(5)));
  auto r = test::httpRequest("GET", "http://" + addr_ + "/hello");
  EXPECT_EQ(r.status, 503);
  hold.close();
  ASSERT_TRUE(
      test::waitUntil([&] { return server_->connectionCount() == 0; }, std::chrono::seconds(5)));
  EXPECT_EQ(test::httpRequest("GET", "http://" + addr_ + "/hello").status, 200);
}

TEST_F(ServerTest, OversizedBodyRefusedWith413) {
  ServerOptions o;
  o.limits.max_body_bytes = 1024;
  startServer(o);
  auto r = test::httpRequest("POST", "http://" + addr_ + "/echo", std::string(5000, 'x'));
  EXPECT_EQ(r.status, 413);
}

}  // namespace
}  // namespace wsa::http
