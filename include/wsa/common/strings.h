#pragma once
// Small string helpers.

#include <string>
#include <string_view>
#include <vector>

namespace wsa {

std::string_view trim(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);
bool iequals(std::string_view a, std::string_view b);
std::string toLower(std::string_view s);
// Escape for JSON string contents (no surrounding quotes). Invalid UTF-8 bytes become U+FFFD.
std::string jsonEscape(std::string_view s);
// Replace invalid UTF-8 sequences and NUL bytes with U+FFFD so text is safe to store and send.
std::string sanitizeUtf8(std::string_view s);
// Human-readable byte count: "1.5 MiB".
std::string humanBytes(double bytes);

}  // namespace wsa
