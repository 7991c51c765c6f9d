#pragma once
// UUIDs as canonical lower-case text ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx").

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsa {

using UuidBytes = std::array<uint8_t, 16>;

// A random (version 4) UUID from the OS's CSPRNG.
std::string newUuid();
// A name-based UUID (version 8 layout over SHA-256 of namespace ‖ 0 ‖ name): stable for the
// same inputs, different for different ones.
std::string nameUuid(std::string_view name_space, std::string_view name);
std::string formatUuid(const UuidBytes& bytes);
std::optional<UuidBytes> parseUuid(std::string_view text);
bool isUuid(std::string_view text);

}  // namespace wsa
