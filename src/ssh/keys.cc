#include "ssh/keys.h"

#include <libssh/libssh.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "wsa/common/fs.h"
#include "wsa/common/strings.h"

namespace wsa::ssh {

Result<KeyPtr> loadOrCreateHostKey(const std::string& path) {
  ssh_key key = nullptr;
  if (fileExists(path)) {
    if (ssh_pki_import_privkey_file(path.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
      return makeError("SSH host key " + path + ": cannot read it (not an OpenSSH private key?)");
    }
    return KeyPtr(key);
  }
  auto slash = path.rfind('/');
  if (slash != std::string::npos) {
    if (auto st = makeDirs(path.substr(0, slash), 0700); !st)
      return makeError("SSH host key: " + st.error());
  }
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK) {
    return makeError("SSH host key: cannot generate an ed25519 key");
  }
  KeyPtr owned(key);
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  mode_t old = ::umask(077);
  int rc = ssh_pki_export_privkey_file(key, nullptr, nullptr, nullptr, tmp.c_str());
  ::umask(old);
  if (rc != SSH_OK || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return makeError("SSH host key " + path + ": cannot write it");
  }
  ::chmod(path.c_str(), 0600);
  return owned;
}

std::string fingerprint(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t len = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != SSH_OK) return "";
  char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
  std::string out = fp != nullptr ? fp : "";
  ssh_string_free_char(fp);
  ssh_clean_pubkey_hash(&hash);
  return out;
}

AuthorizedKeys AuthorizedKeys::load(const std::string& path, std::vector<std::string>* warnings) {
  AuthorizedKeys ak;
  std::ifstream in(path);
  if (!in) return ak;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string_view t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    std::vector<std::string> fields;
    for (auto& f : split(std::string(t), ' ')) {
      if (!f.empty()) fields.push_back(f);
    }
    if (fields.size() < 2) {
      if (warnings != nullptr)
        warnings->push_back(path + ":" + std::to_string(n) + ": malformed line");
      continue;
    }
    enum ssh_keytypes_e type = ssh_key_type_from_name(fields[0].c_str());
    if (type == SSH_KEYTYPE_UNKNOWN) {
      if (warnings != nullptr) {
        warnings->push_back(path + ":" + std::to_string(n) +
                            ": key options are not supported; line skipped");
      }
      continue;
    }
    ssh_key key = nullptr;
    if (ssh_pki_import_pubkey_base64(fields[1].c_str(), type, &key) != SSH_OK) {
      if (warnings != nullptr) warnings->push_back(path + ":" + std::to_string(n) + ": bad key");
      continue;
    }
    ak.keys_.emplace_back(key, [](ssh_key k) { ssh_key_free(k); });
  }
  return ak;
}

bool AuthorizedKeys::contains(ssh_key key) const {
  for (const auto& k : keys_) {
    if (ssh_key_cmp(k.get(), key, SSH_KEY_CMP_PUBLIC) == 0) return true;
  }
  return false;
}

}  // namespace wsa::ssh
