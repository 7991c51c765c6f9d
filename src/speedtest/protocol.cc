#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "wsa/speedtest/speedtest.h"

namespace wsa::speedtest {

using json = nlohmann::json;

const char* directionName(Direction d) {
  return d == Direction::kDownload ? "download" : "upload";
}

Result<Config> parseConfig(std::string_view line, const Limits& limits) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return makeError("config is not a JSON object");
  Config c;
  if (!j.contains("version") || !j["version"].is_number_integer()) {
    return makeError("config needs an integer \"version\"");
  }
  c.version = j["version"].get<int>();
  if (c.version != kVersion) {
    return makeError("unsupported version " + std::to_string(c.version) + " (this agent speaks " +
                     std::to_string(kVersion) + ")");
  }
  if (!j.contains("direction") || !j["direction"].is_string()) {
    return makeError("config needs \"direction\": \"download\" or \"upload\"");
  }
  std::string dir = j["direction"].get<std::string>();
  if (dir == "download") {
    c.direction = Direction::kDownload;
  } else if (dir == "upload") {
    c.direction = Direction::kUpload;
  } else {
    return makeError("direction \"" + dir + "\" is neither \"download\" nor \"upload\"");
  }
  if (!j.contains("duration_ms") || !j["duration_ms"].is_number_integer()) {
    return makeError("config needs an integer \"duration_ms\"");
  }
  int64_t ms = j["duration_ms"].get<int64_t>();
  if (ms < limits.min_duration.count() || ms > limits.max_duration.count()) {
    return makeError("duration_ms " + std::to_string(ms) + " is outside " +
                     std::to_string(limits.min_duration.count()) + ".." +
                     std::to_string(limits.max_duration.count()));
  }
  c.duration = std::chrono::milliseconds(ms);
  return c;
}

std::string encodeConfig(const Config& c) {
  json j = {{"version", c.version},
            {"direction", directionName(c.direction)},
            {"duration_ms", c.duration.count()}};
  return j.dump() + "\n";
}

double Interval::bitsPerSecond() const {
  double secs = end_s - start_s;
  return secs > 0 ? static_cast<double>(bytes) * 8.0 / secs : 0.0;
}

std::string resultsToJson(const Results& r) {
  json intervals = json::array();
  auto one = [](const Interval& i) {
    return json{{"start_s", i.start_s},
                {"end_s", i.end_s},
                {"bytes", i.bytes},
                {"bits_per_second", i.bitsPerSecond()}};
  };
  for (const auto& i : r.intervals) intervals.push_back(one(i));
  json j = {
      {"direction", directionName(r.direction)}, {"intervals", intervals}, {"total", one(r.total)}};
  return j.dump();
}

Result<Results> resultsFromJson(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return makeError("results are not a JSON object");
  try {
    Results r;
    r.direction = j.at("direction").get<std::string>() == "upload" ? Direction::kUpload
                                                                   : Direction::kDownload;
    auto one = [](const json& x) {
      Interval i;
      i.start_s = x.at("start_s").get<double>();
      i.end_s = x.at("end_s").get<double>();
      i.bytes = x.at("bytes").get<uint64_t>();
      return i;
    };
    for (const auto& x : j.at("intervals")) r.intervals.push_back(one(x));
    r.total = one(j.at("total"));
    return r;
  } catch (const json::exception& e) {
    return makeError(std::string("malformed results: ") + e.what());
  }
}

std::string formatResults(const Results& r) {
  auto line = [](const Interval& i, const char* label) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "%5.1f-%-5.1f s %10.1f MiB %10.1f Mbit/s%s\n", i.start_s,
                  i.end_s, static_cast<double>(i.bytes) / (1024.0 * 1024.0),
                  i.bitsPerSecond() / 1e6, label);
    return std::string(buf);
  };
  std::string out = std::string(directionName(r.direction)) + ":\n";
  for (const auto& i : r.intervals) out += line(i, "");
  out += line(r.total, "  total");
  return out;
}

Meter::Meter(MonoTime start, Duration interval) : start_(start), interval_(interval) {}

void Meter::add(MonoTime now, uint64_t bytes) {
  auto since = now < start_ ? Duration::zero() : now - start_;
  auto idx = static_cast<size_t>(since / interval_);
  if (idx >= 3600) idx = 3599;  // bounded whatever the clock does
  if (buckets_.size() <= idx) buckets_.resize(idx + 1, 0);
  buckets_[idx] += bytes;
}

Results Meter::finish(MonoTime end, Direction direction) const {
  using Secs = std::chrono::duration<double>;
  Results r;
  r.direction = direction;
  double end_s = std::chrono::duration_cast<Secs>(end - start_).count();
  double step = std::chrono::duration_cast<Secs>(interval_).count();
  uint64_t total = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Interval iv;
    iv.start_s = step * static_cast<double>(i);
    iv.end_s = std::min(step * static_cast<double>(i + 1), std::max(end_s, iv.start_s));
    iv.bytes = buckets_[i];
    total += iv.bytes;
    // A sliver at the end (a frame that arrived just after the last full second) is folded
    // into the previous interval rather than shown as an absurd rate.
    if (iv.end_s - iv.start_s < step / 10 && !r.intervals.empty()) {
      r.intervals.back().bytes += iv.bytes;
      r.intervals.back().end_s = iv.end_s;
      continue;
    }
    r.intervals.push_back(iv);
  }
  r.total.start_s = 0;
  r.total.end_s = end_s;
  r.total.bytes = total;
  return r;
}

std::string frameHeader(char type, uint32_t length) {
  std::string h(kFrameHeader, '\0');
  h[0] = type;
  h[1] = static_cast<char>((length >> 24) & 0xff);
  h[2] = static_cast<char>((length >> 16) & 0xff);
  h[3] = static_cast<char>((length >> 8) & 0xff);
  h[4] = static_cast<char>(length & 0xff);
  return h;
}

}  // namespace wsa::speedtest
