#include "wsa/control/url.h"

#include <gtest/gtest.h>

namespace wsa::control {
namespace {

TEST(ControlUrl, Http) {
  auto u = parseControlUrl("http://127.0.0.1:7070");
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_EQ(u->scheme, ControlUrl::Scheme::kHttp);
  EXPECT_EQ(u->grpc_target, "127.0.0.1:7070");
  EXPECT_EQ(parseControlUrl("http://example.test")->port, 80);
  EXPECT_EQ(parseControlUrl("http://example.test/")->grpc_target, "example.test:80");
}

TEST(ControlUrl, Https) {
  auto u = parseControlUrl("https://control.example.test");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, ControlUrl::Scheme::kHttps);
  EXPECT_EQ(u->port, 443);
  auto v6 = parseControlUrl("https://[::1]:8443");
  ASSERT_TRUE(v6.ok()) << v6.error();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->grpc_target, "[::1]:8443");
}

TEST(ControlUrl, Unix) {
  EXPECT_EQ(parseControlUrl("unix:/run/c.sock")->grpc_target, "unix:/run/c.sock");
  EXPECT_EQ(parseControlUrl("unix:///run/c.sock")->grpc_target, "unix:/run/c.sock");
}

TEST(ControlUrl, RejectsWithReason) {
  for (const char* bad : {"ftp://x", "http://", "http://h:0", "http://h:70000", "http://h/api",
                          "unix:relative.sock", "http://user:pw@h:1", "127.0.0.1:7070"}) {
    auto u = parseControlUrl(bad);
    EXPECT_FALSE(u.ok()) << bad;
    if (!u.ok()) {
      EXPECT_NE(u.error().find(bad), std::string::npos) << u.error();
    }
  }
}

}  // namespace
}  // namespace wsa::control
