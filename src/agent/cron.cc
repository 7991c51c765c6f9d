#include "agent/cron.h"

#include <charconv>
#include <ctime>
#include <vector>

#include "wsa/common/strings.h"

namespace wsa::agent {

namespace {

struct Field {
  const char* name;
  int min;
  int max;
  const char* const* names;  // index 0 = min
};

const char* const kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",  "JUL",
                               "AUG", "SEP", "OCT", "NOV", "DEC", nullptr};
const char* const kDays[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", nullptr};

Result<int> value(const std::string& s, const Field& f) {
  if (f.names != nullptr) {
    std::string up = s;
    for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (int i = 0; f.names[i] != nullptr; ++i) {
      if (up == f.names[i]) return f.min + i;
    }
  }
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return makeError(std::string(f.name) + ": \"" + s + "\" is not a number");
  }
  int max = f.max;
  if (f.names == kDays) max = 7;  // 7 is Sunday
  if (v < f.min || v > max) {
    return makeError(std::string(f.name) + ": " + std::to_string(v) + " is outside " +
                     std::to_string(f.min) + "-" + std::to_string(max));
  }
  return v;
}

template <size_t N>
Status parseField(const std::string& text, const Field& f, std::bitset<N>* out, bool* star) {
  *star = text == "*" || text == "?";
  for (const auto& part : split(text, ',')) {
    if (part.empty()) return makeError(std::string(f.name) + ": empty list element");
    std::string range = part;
    int step = 1;
    if (size_t slash = part.find('/'); slash != std::string::npos) {
      range = part.substr(0, slash);
      std::string st = part.substr(slash + 1);
      auto [p, ec] = std::from_chars(st.data(), st.data() + st.size(), step);
      if (st.empty() || ec != std::errc() || p != st.data() + st.size() || step <= 0) {
        return makeError(std::string(f.name) + ": bad step \"" + st + "\"");
      }
    }
    int lo = f.min;
    int hi = f.max;
    if (range != "*" && range != "?") {
      size_t dash = range.find('-');
      auto a = value(range.substr(0, dash), f);
      if (!a) return makeError(a.error());
      lo = *a;
      if (dash != std::string::npos) {
        auto b = value(range.substr(dash + 1), f);
        if (!b) return makeError(b.error());
        hi = *b;
      } else {
        hi = part.find('/') != std::string::npos ? f.max : lo;
      }
      if (lo > hi) return makeError(std::string(f.name) + ": range " + range + " is backwards");
    }
    for (int v = lo; v <= hi; v += step) {
      int bit = (f.names == kDays && v == 7) ? 0 : v;
      out->set(static_cast<size_t>(bit));
    }
  }
  return Status::success();
}

}  // namespace

Result<CronSchedule> CronSchedule::parse(const std::string& spec) {
  std::vector<std::string> fields;
  for (auto& f : split(std::string(trim(spec)), ' ')) {
    if (!f.empty()) fields.push_back(f);
  }
  if (fields.size() == 5) fields.insert(fields.begin(), "0");
  if (fields.size() != 6) {
    return makeError("cron spec \"" + spec +
                     "\": want 6 fields (second minute hour day month "
                     "weekday) or 5");
  }
  CronSchedule c;
  c.spec_ = spec;
  bool star = false;
  static const Field kSec{"seconds", 0, 59, nullptr}, kMin{"minutes", 0, 59, nullptr},
      kHour{"hours", 0, 23, nullptr}, kDom{"day of month", 1, 31, nullptr},
      kMon{"month", 1, 12, kMonths}, kDow{"day of week", 0, 6, kDays};
  Status st;
  if (!(st = parseField(fields[0], kSec, &c.seconds_, &star)) ||
      !(st = parseField(fields[1], kMin, &c.minutes_, &star)) ||
      !(st = parseField(fields[2], kHour, &c.hours_, &star)) ||
      !(st = parseField(fields[3], kDom, &c.days_, &c.days_star_)) ||
      !(st = parseField(fields[4], kMon, &c.months_, &star)) ||
      !(st = parseField(fields[5], kDow, &c.weekdays_, &c.weekdays_star_))) {
    return makeError("cron spec \"" + spec + "\": " + st.error());
  }
  return c;
}

std::optional<SystemTime> CronSchedule::next(SystemTime after) const {
  std::time_t t = std::chrono::system_clock::to_time_t(after) + 1;
  std::tm tm{};
  localtime_r(&t, &tm);
  std::time_t limit = t + 5LL * 366 * 24 * 3600;
  auto normalize = [&] {
    tm.tm_isdst = -1;
    t = std::mktime(&tm);
    localtime_r(&t, &tm);
  };
  while (t < limit) {
    if (!months_.test(static_cast<size_t>(tm.tm_mon + 1))) {
      tm.tm_mon += 1;
      tm.tm_mday = 1;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      normalize();
      continue;
    }
    bool dom = days_.test(static_cast<size_t>(tm.tm_mday));
    bool dow = weekdays_.test(static_cast<size_t>(tm.tm_wday));
    bool day_ok = (days_star_ || weekdays_star_) ? (dom && dow) : (dom || dow);
    if (!day_ok) {
      tm.tm_mday += 1;
      tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
      normalize();
      continue;
    }
    if (!hours_.test(static_cast<size_t>(tm.tm_hour))) {
      tm.tm_hour += 1;
      tm.tm_min = tm.tm_sec = 0;
      normalize();
      continue;
    }
    if (!minutes_.test(static_cast<size_t>(tm.tm_min))) {
      tm.tm_min += 1;
      tm.tm_sec = 0;
      normalize();
      continue;
    }
    if (!seconds_.test(static_cast<size_t>(tm.tm_sec))) {
      tm.tm_sec += 1;
      normalize();
      continue;
    }
    return std::chrono::system_clock::from_time_t(t);
  }
  return std::nullopt;
}

}  // namespace wsa::agent
