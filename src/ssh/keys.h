#pragma once
// SSH host key (ed25519, generated once and persisted) and authorized_keys files.

#include <libssh/libssh.h>

#include <memory>
#include <string>
#include <vector>

#include "wsa/common/result.h"

namespace wsa::ssh {

struct KeyDeleter {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
using KeyPtr = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyDeleter>;

// Loads the private key at `path`, or generates an ed25519 key there (0600, parent 0700).
Result<KeyPtr> loadOrCreateHostKey(const std::string& path);
// "SHA256:..." as OpenSSH prints it.
std::string fingerprint(ssh_key key);

// Public keys from an OpenSSH authorized_keys file. Keys with options (from=, command=, ...)
// are skipped with a warning: honouring only some options would silently widen access.
class AuthorizedKeys {
 public:
  // A missing file is an empty set (nobody may log in); unreadable or malformed lines are
  // reported in `warnings`.
  static AuthorizedKeys load(const std::string& path, std::vector<std::string>* warnings);
  bool contains(ssh_key key) const;
  size_t size() const { return keys_.size(); }

 private:
  std::vector<std::shared_ptr<std::remove_pointer_t<ssh_key>>> keys_;
};

}  // namespace wsa::ssh
