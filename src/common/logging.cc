#include "wsa/common/logging.h"

#include <spdlog/details/registry.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <vector>

#include "wsa/common/strings.h"

namespace wsa::logging {

namespace {

// %* : the message, escaped for a JSON string.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string escaped = jsonEscape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

std::unique_ptr<spdlog::formatter> makeFormatter(Format format) {
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  if (format == Format::kJson) {
    f->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","msg":"%*"})");
  } else {
    f->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  return f;
}

struct State {
  std::mutex mu;
  std::vector<spdlog::sink_ptr> sinks;
  spdlog::level::level_enum level = spdlog::level::info;
  bool initialized = false;
};

State& state() {
  static State s;
  return s;
}

void ensureDefaultLocked(State& s) {
  if (s.initialized) return;
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  sink->set_formatter(makeFormatter(Format::kText));
  s.sinks = {sink};
  s.initialized = true;
}

}  // namespace

Result<Format> parseFormat(const std::string& text) {
  if (text == "text" || text == "human") return Format::kText;
  if (text == "json") return Format::kJson;
  return makeError("unknown log format \"" + text + "\" (want text or json)");
}

Status init(const Options& options) {
  auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return makeError("unknown log level \"" + options.level +
                     "\" (want trace, debug, info, warn, error or off)");
  }
  std::vector<spdlog::sink_ptr> sinks;
  if (options.to_stderr) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_formatter(makeFormatter(options.format));
    sinks.push_back(sink);
  }
  if (!options.file.empty()) {
    try {
      auto sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
          options.file, options.max_file_bytes, options.max_files);
      sink->set_formatter(makeFormatter(options.format));
      sinks.push_back(sink);
    } catch (const spdlog::spdlog_ex& e) {
      return makeError("log file " + options.file + ": " + e.what());
    }
  }
  auto& s = state();
  std::lock_guard lock(s.mu);
  s.sinks = std::move(sinks);
  s.level = level;
  s.initialized = true;
  if (!options.file.empty()) {
    // Lines reach the file within a second even at info level (warnings flush at once).
    spdlog::flush_every(std::chrono::seconds(1));
  }
  spdlog::details::registry::instance().apply_all([&](const std::shared_ptr<spdlog::logger>& l) {
    l->sinks() = s.sinks;
    l->set_level(s.level);
    l->flush_on(spdlog::level::warn);
  });
  return Status::success();
}

std::shared_ptr<spdlog::logger> get(const std::string& name) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  ensureDefaultLocked(s);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, s.sinks.begin(), s.sinks.end());
  logger->set_level(s.level);
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

void flush() {
  spdlog::details::registry::instance().apply_all(
      [](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
}

}  // namespace wsa::logging
