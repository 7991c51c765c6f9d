#pragma once
// Wall-clock helpers. Monotonic time for timers goes through wsa::Clock (clock.h).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsa {

using SystemTime = std::chrono::system_clock::time_point;

// RFC 3339 in UTC with microseconds: "2026-11-30T05:54:12.123456Z".
std::string formatRfc3339(SystemTime t);
// Accepts "Z" or "+hh:mm" offsets and up to nanosecond fractions.
std::optional<SystemTime> parseRfc3339(std::string_view text);

int64_t toUnixNanos(SystemTime t);
SystemTime fromUnixNanos(int64_t nanos);

}  // namespace wsa

namespace wsa {
// Go-style durations: "72h", "1h30m", "10s", "250ms", "1.5s". Zero may be written "0".
std::optional<std::chrono::nanoseconds> parseDuration(std::string_view text);
std::string formatDuration(std::chrono::nanoseconds d);
}  // namespace wsa
