#include "wsa/common/secret.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdio>

namespace wsa {

bool constantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string out;
  out.reserve(len * 2);
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", digest[i]);
    out += buf;
  }
  return out;
}

std::string secretFingerprint(std::string_view secret) {
  if (secret.empty()) return "(empty)";
  return "sha256:" + sha256Hex(secret).substr(0, 8);
}

}  // namespace wsa
