#pragma once
// File helpers that report errors as messages naming the path.

#include <sys/types.h>

#include <string>

#include "wsa/common/result.h"

namespace wsa {

Result<std::string> readFile(const std::string& path, size_t max_bytes = 64u << 20);
// Write through a temporary file in the same directory and rename, so readers never see a
// partial file. The file gets `mode`.
Status writeFileAtomic(const std::string& path, const std::string& contents, mode_t mode = 0644);
// mkdir -p with `mode` for directories it creates.
Status makeDirs(const std::string& path, mode_t mode = 0755);
std::string homeDirectory();
bool isDirectory(const std::string& path);
bool fileExists(const std::string& path);

}  // namespace wsa
