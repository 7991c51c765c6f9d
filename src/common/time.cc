#include "wsa/common/time.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace wsa {

int64_t toUnixNanos(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

SystemTime fromUnixNanos(int64_t nanos) {
  return SystemTime(
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::nanoseconds(nanos)));
}

std::string formatRfc3339(SystemTime t) {
  int64_t ns = toUnixNanos(t);
  int64_t secs = ns / 1000000000;
  int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    secs -= 1;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long>(frac / 1000));
  return buf;
}

std::optional<SystemTime> parseRfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)
  if (s.size() < 20) return std::nullopt;
  auto num = [&](size_t pos, size_t len, int& out) {
    out = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  std::tm tm{};
  int year, mon, day, hh, mm, ss;
  if (!num(0, 4, year) || s[4] != '-' || !num(5, 2, mon) || s[7] != '-' || !num(8, 2, day) ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !num(11, 2, hh) || s[13] != ':' ||
      !num(14, 2, mm) || s[16] != ':' || !num(17, 2, ss)) {
    return std::nullopt;
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
    return std::nullopt;
  }
  size_t i = 19;
  int64_t frac_ns = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 9) {
        frac_ns = frac_ns * 10 + (s[i] - '0');
        ++digits;
      }
      ++i;
    }
    if (digits == 0) return std::nullopt;
    while (digits++ < 9) frac_ns *= 10;
  }
  int64_t offset_s = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    int oh, om;
    if (!num(i + 1, 2, oh) || !num(i + 4, 2, om)) return std::nullopt;
    offset_s = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset_s;
  return fromUnixNanos(secs * 1000000000 + frac_ns);
}

}  // namespace wsa

namespace wsa {

std::optional<std::chrono::nanoseconds> parseDuration(std::string_view s) {
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return std::nullopt;
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
    if (i == start) return std::nullopt;
    double v = std::strtod(std::string(s.substr(start, i - start)).c_str(), nullptr);
    size_t u = i;
    while (i < s.size() && !((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
    std::string_view unit = s.substr(u, i - u);
    double mult = 0;
    if (unit == "ns")
      mult = 1;
    else if (unit == "us" || unit == "µs")
      mult = 1e3;
    else if (unit == "ms")
      mult = 1e6;
    else if (unit == "s")
      mult = 1e9;
    else if (unit == "m")
      mult = 60e9;
    else if (unit == "h")
      mult = 3600e9;
    else
      return std::nullopt;
    total += v * mult;
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

std::string formatDuration(std::chrono::nanoseconds d) {
  using namespace std::chrono;
  auto ns = d.count();
  if (ns % 3600000000000LL == 0 && ns != 0) return std::to_string(ns / 3600000000000LL) + "h";
  if (ns % 60000000000LL == 0 && ns != 0) return std::to_string(ns / 60000000000LL) + "m";
  if (ns % 1000000000LL == 0) return std::to_string(ns / 1000000000LL) + "s";
  if (ns % 1000000LL == 0) return std::to_string(ns / 1000000LL) + "ms";
  return std::to_string(ns) + "ns";
}

}  // namespace wsa
