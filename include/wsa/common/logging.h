#pragma once
// Process-wide logging on spdlog: stderr and/or a size-rotated file, text or JSON lines.
// Components take a named logger from logging::get("component"). Never pass a token or a
// private key to a logger; log their presence or a redacted form instead.

#include <spdlog/logger.h>

#include <memory>
#include <string>

#include "wsa/common/result.h"

namespace wsa::logging {

enum class Format { kText, kJson };

struct Options {
  std::string level = "info";  // trace, debug, info, warn, error, off
  Format format = Format::kText;
  bool to_stderr = true;
  std::string file;                  // empty: no file
  size_t max_file_bytes = 5u << 20;  // rotate at this size
  size_t max_files = 10;             // rotated files kept
};

// Installs the sinks. May be called again (tests, reconfiguration); existing loggers switch to
// the new sinks.
Status init(const Options& options);
Result<Format> parseFormat(const std::string& text);
// A logger sharing the process sinks; created on first use.
std::shared_ptr<spdlog::logger> get(const std::string& name);
void flush();

}  // namespace wsa::logging
