#include "controld/relay_ticket.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wsa/common/fs.h"

namespace wsa::controld {

namespace ov = overlay::v1;

namespace {

constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::string signedMessage(const std::string& body) {
  std::string m(kRelayTicketContext);
  m += body;
  return m;
}

Pkey generateKey() {
  EVP_PKEY* k = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &k) != 1) {
    return nullptr;
  }
  return Pkey(k);
}

}  // namespace

struct RelayTicketSigner::Key {
  Pkey pkey;
};

struct RelayTicketVerifier::Keys {
  std::vector<Pkey> keys;
};

std::string base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return makeError("not base64");
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return makeError("not base64");
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (text.back() == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

RelayTicketSigner::RelayTicketSigner(std::unique_ptr<Key> key) : key_(std::move(key)) {}
RelayTicketSigner::~RelayTicketSigner() = default;

std::unique_ptr<RelayTicketSigner> RelayTicketSigner::generate() {
  auto k = std::make_unique<Key>();
  k->pkey = generateKey();
  if (!k->pkey) return nullptr;
  return std::unique_ptr<RelayTicketSigner>(new RelayTicketSigner(std::move(k)));
}

Result<std::unique_ptr<RelayTicketSigner>> RelayTicketSigner::loadOrCreate(
    const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return makeError(path + ": " + std::strerror(errno));
    auto signer = generate();
    if (!signer) return makeError("cannot generate an Ed25519 key");
    std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), signer->key_->pkey.get(), nullptr, nullptr, 0,
                                         nullptr, nullptr) != 1) {
      return makeError("cannot encode the relay signing key");
    }
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(google-runtime-int): OpenSSL's type
    // O_EXCL: two servers starting on one data directory do not overwrite each other's key.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) return loadOrCreate(path);
      return makeError(path + ": " + std::strerror(errno));
    }
    bool ok = ::write(fd, data, static_cast<size_t>(len)) == len && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      return makeError(path + ": cannot write the relay signing key");
    }
    return signer;
  }
  if ((st.st_mode & 077) != 0) {
    return makeError(path +
                     ": the relay signing key must not be accessible to group or others "
                     "(chmod 600)");
  }
  auto pem = readFile(path, 64 * 1024);
  if (!pem) return makeError(path + ": " + pem.error());
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  Pkey pkey(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!pkey || EVP_PKEY_id(pkey.get()) != EVP_PKEY_ED25519) {
    return makeError(path + ": not an Ed25519 private key (PEM)");
  }
  auto k = std::make_unique<Key>();
  k->pkey = std::move(pkey);
  return std::unique_ptr<RelayTicketSigner>(new RelayTicketSigner(std::move(k)));
}

std::string RelayTicketSigner::publicKey() const {
  std::string out(kEd25519KeyBytes, '\0');
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key_->pkey.get(), reinterpret_cast<unsigned char*>(out.data()),
                                  &len) != 1) {
    return "";
  }
  out.resize(len);
  return out;
}

std::string RelayTicketSigner::publicKeyBase64() const {
  return base64Encode(publicKey());
}

ov::RelayTicket RelayTicketSigner::sign(const ov::RelayTicketBody& body) const {
  ov::RelayTicket t;
  t.set_body(body.SerializeAsString());
  std::string msg = signedMessage(t.body());
  std::string sig(kEd25519SignatureBytes, '\0');
  size_t sig_len = sig.size();
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (ctx && EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_->pkey.get()) == 1 &&
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1) {
    sig.resize(sig_len);
    t.set_signature(sig);
  }
  return t;
}

const char* ticketCheckName(TicketCheck check) {
  switch (check) {
    case TicketCheck::kAccepted:
      return "accepted";
    case TicketCheck::kMissing:
      return "missing";
    case TicketCheck::kBadSignature:
      return "bad_signature";
    case TicketCheck::kExpired:
      return "expired";
    case TicketCheck::kStale:
      return "stale";
    case TicketCheck::kWrongKey:
      return "wrong_key";
  }
  return "unknown";
}

RelayTicketVerifier::RelayTicketVerifier(const std::vector<std::string>& raw_keys)
    : keys_(std::make_unique<Keys>()) {
  for (const auto& raw : raw_keys) {
    if (raw.size() != kEd25519KeyBytes) continue;
    Pkey k(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
    if (k) keys_->keys.push_back(std::move(k));
  }
}

RelayTicketVerifier::RelayTicketVerifier(RelayTicketVerifier&&) noexcept = default;
RelayTicketVerifier& RelayTicketVerifier::operator=(RelayTicketVerifier&&) noexcept = default;
RelayTicketVerifier::~RelayTicketVerifier() = default;

size_t RelayTicketVerifier::keyCount() const {
  return keys_ ? keys_->keys.size() : 0;
}

Result<RelayTicketVerifier> RelayTicketVerifier::fromBase64(const std::vector<std::string>& keys) {
  std::vector<std::string> raw;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto k = base64Decode(keys[i]);
    if (!k || k->size() != kEd25519KeyBytes) {
      return makeError("relay trusted key " + std::to_string(i + 1) +
                       ": not an Ed25519 public key (44 characters of base64, as controld "
                       "--print-relay-key prints it)");
    }
    raw.push_back(std::move(*k));
  }
  return RelayTicketVerifier(raw);
}

TicketCheck RelayTicketVerifier::verify(const ov::RelayTicket& ticket,
                                        const std::string& expected_key, int64_t now_unix_ms,
                                        ov::RelayTicketBody* out) const {
  if (ticket.body().empty() && ticket.signature().empty()) return TicketCheck::kMissing;
  if (ticket.signature().size() != kEd25519SignatureBytes) return TicketCheck::kBadSignature;
  std::string msg = signedMessage(ticket.body());
  bool signed_by_trusted = false;
  for (const auto& k : keys_->keys) {
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) == 1 &&
        EVP_DigestVerify(ctx.get(),
                         reinterpret_cast<const unsigned char*>(ticket.signature().data()),
                         ticket.signature().size(),
                         reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1) {
      signed_by_trusted = true;
      break;
    }
  }
  ov::RelayTicketBody body;
  if (!signed_by_trusted || !body.ParseFromString(ticket.body())) {
    return TicketCheck::kBadSignature;
  }
  if (body.key() != expected_key) return TicketCheck::kWrongKey;
  if (now_unix_ms > body.not_after_unix_ms() + kRelayTicketSkewMs) return TicketCheck::kExpired;
  if (out != nullptr) *out = std::move(body);
  return TicketCheck::kAccepted;
}

}  // namespace wsa::controld
