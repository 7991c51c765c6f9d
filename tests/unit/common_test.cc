#include <gtest/gtest.h>

#include "wsa/common/secret.h"
#include "wsa/common/strings.h"
#include "wsa/common/time.h"
#include "wsa/common/uuid.h"
#include "wsa/net/address.h"

namespace wsa {
namespace {

TEST(Uuid, RandomIsVersion4AndRoundTrips) {
  std::string a = newUuid();
  std::string b = newUuid();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  auto bytes = parseUuid(a);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(formatUuid(*bytes), a);
}

TEST(Uuid, NameBasedIsStableAndDistinct) {
  EXPECT_EQ(nameUuid("ns", "x"), nameUuid("ns", "x"));
  EXPECT_NE(nameUuid("ns", "x"), nameUuid("ns", "y"));
  EXPECT_NE(nameUuid("ns1", "x"), nameUuid("ns2", "x"));
  // The separator keeps ("ab","c") and ("a","bc") apart.
  EXPECT_NE(nameUuid("ab", "c"), nameUuid("a", "bc"));
  EXPECT_TRUE(isUuid(nameUuid("a", "b")));
}

TEST(Uuid, RejectsMalformed) {
  EXPECT_FALSE(isUuid(""));
  EXPECT_FALSE(isUuid("8e928f84-366e-4d82-8a7e-10f740617cc"));
  EXPECT_FALSE(isUuid("8e928f84x366e-4d82-8a7e-10f740617cc0"));
  EXPECT_FALSE(isUuid("8e928f84-366e-4d82-8a7e-10f740617czz"));
  EXPECT_TRUE(isUuid("8E928F84-366E-4D82-8A7E-10F740617CC0"));
}

TEST(Strings, SanitizeReplacesInvalidUtf8AndNul) {
  EXPECT_EQ(sanitizeUtf8("héllo ✓"), "héllo ✓");
  EXPECT_EQ(sanitizeUtf8(std::string("a\0b", 3)),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(sanitizeUtf8("a\xff"
                         "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(sanitizeUtf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong '/'
  EXPECT_EQ(sanitizeUtf8("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  EXPECT_EQ(sanitizeUtf8("\xe2\x9c"), "\xef\xbf\xbd\xef\xbf\xbd");                  // truncated
}

TEST(Strings, JsonEscape) {
  EXPECT_EQ(jsonEscape("a\"b\\c\n\t\x01"), "a\\\"b\\\\c\\n\\t\\u0001");
}

TEST(Strings, SplitTrimIequals) {
  EXPECT_EQ(split("a,,b", ','), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(trim("  x y \t\n"), "x y");
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_FALSE(iequals("a", "ab"));
}

TEST(Time, Rfc3339RoundTrip) {
  auto t = fromUnixNanos(1764482052123456000);
  std::string s = formatRfc3339(t);
  EXPECT_EQ(s, "2025-11-30T05:54:12.123456Z");
  EXPECT_EQ(parseRfc3339(s), t);
  EXPECT_EQ(parseRfc3339("2025-11-30T06:54:12.123456+01:00"), t);
  EXPECT_EQ(parseRfc3339("2025-11-30T05:54:12Z"), fromUnixNanos(1764482052000000000));
}

TEST(Time, Rfc3339RejectsGarbage) {
  EXPECT_FALSE(parseRfc3339("").has_value());
  EXPECT_FALSE(parseRfc3339("2025-13-30T05:54:12Z").has_value());
  EXPECT_FALSE(parseRfc3339("2025-11-30 05:54:12").has_value());
  EXPECT_FALSE(parseRfc3339("2025-11-30T05:54:12.Z").has_value());
  EXPECT_FALSE(parseRfc3339("2025-11-30T05:54:12Zjunk").has_value());
}

TEST(Secret, ConstantTimeEqualsAndFingerprint) {
  EXPECT_TRUE(constantTimeEquals("abc", "abc"));
  EXPECT_FALSE(constantTimeEquals("abc", "abd"));
  EXPECT_FALSE(constantTimeEquals("abc", "abcd"));
  std::string secret = "0123456789abcdef0123456789abcdef";
  std::string fp = secretFingerprint(secret);
  EXPECT_EQ(fp.rfind("sha256:", 0), 0u);
  EXPECT_EQ(fp.find(secret), std::string::npos);
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ListenAddress, Forms) {
  auto a = net::parseListenAddress("127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto b = net::parseListenAddress("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  auto c = net::parseListenAddress(":22");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->host.empty());
  auto d = net::parseListenAddress("unix:/run/x.sock");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->is_unix);
  EXPECT_EQ(d->path, "/run/x.sock");
  EXPECT_FALSE(net::parseListenAddress("localhost").ok());
  EXPECT_FALSE(net::parseListenAddress("::1:80").ok());
  EXPECT_FALSE(net::parseListenAddress("host:99999").ok());
  EXPECT_FALSE(net::parseListenAddress("unix:").ok());
  EXPECT_NE(net::parseListenAddress("host:x").error().find("port"), std::string::npos);
}

}  // namespace
}  // namespace wsa

#include <nlohmann/json.hpp>

#include "support/util.h"
#include "wsa/common/logging.h"

namespace wsa {
namespace {

TEST(Logging, JsonLinesAreValidJsonAndEscaped) {
  test::TempDir dir;
  logging::Options o;
  o.to_stderr = false;
  o.format = logging::Format::kJson;
  o.file = dir.file("agent.log");
  ASSERT_TRUE(logging::init(o).ok());
  logging::get("unit")->info("quote \" backslash \\ newline \n tab \t bad \xff");
  logging::flush();
  std::string text = test::readText(o.file);
  ASSERT_FALSE(text.empty());
  auto line = text.substr(0, text.find('\n'));
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["logger"], "unit");
  EXPECT_EQ(j["msg"], "quote \" backslash \\ newline \n tab \t bad \xef\xbf\xbd");
  // Back to the default for other tests.
  logging::Options d;
  ASSERT_TRUE(logging::init(d).ok());
}

TEST(Logging, RejectsUnknownLevelAndFormat) {
  logging::Options o;
  o.level = "loud";
  EXPECT_FALSE(logging::init(o).ok());
  EXPECT_FALSE(logging::parseFormat("xml").ok());
}

TEST(Durations, ParseAndFormat) {
  EXPECT_EQ(parseDuration("72h"), std::chrono::hours(72));
  EXPECT_EQ(parseDuration("1h30m"), std::chrono::minutes(90));
  EXPECT_EQ(parseDuration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(parseDuration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(parseDuration("0"), std::chrono::nanoseconds(0));
  EXPECT_FALSE(parseDuration("10").has_value());
  EXPECT_FALSE(parseDuration("5 minutes").has_value());
  EXPECT_FALSE(parseDuration("").has_value());
  EXPECT_EQ(formatDuration(std::chrono::hours(72)), "72h");
  EXPECT_EQ(formatDuration(std::chrono::milliseconds(1500)), "1500ms");
}

}  // namespace
}  // namespace wsa
