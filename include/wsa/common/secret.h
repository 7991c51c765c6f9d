#pragma once
// Handling of tokens and other secrets: comparison without timing leaks, fingerprints that are
// safe to log.

#include <string>
#include <string_view>

namespace wsa {

bool constantTimeEquals(std::string_view a, std::string_view b);
// Lower-case hex SHA-256.
std::string sha256Hex(std::string_view data);
// A short, non-reversible tag for logs: "sha256:1a2b3c4d". Use it instead of the secret.
std::string secretFingerprint(std::string_view secret);

}  // namespace wsa
