#include "signature.h"

#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "files.h"

namespace troy::cli {
namespace {

constexpr size_t kSignatureBytes = 64;  // Ed25519

struct ContextDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};
using Context = std::unique_ptr<EVP_MD_CTX, ContextDeleter>;

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

Result<std::vector<unsigned char>> decode_base64(const std::string& text, const std::string& path) {
  const std::string line = trimmed(text);
  const auto bad = Error{fmt::format("{}: not one line of base64 holding a {}-byte Ed25519 signature", path,
                                     kSignatureBytes)};
  if (line.empty() || line.size() % 4 != 0) return bad;
  std::vector<unsigned char> bytes(line.size() / 4 * 3);
  const int decoded = EVP_DecodeBlock(bytes.data(), reinterpret_cast<const unsigned char*>(line.data()),
                                      static_cast<int>(line.size()));
  if (decoded < 0) return bad;
  // EVP_DecodeBlock counts the padding's bytes too.
  const size_t padding = line.ends_with("==") ? 2 : line.ends_with("=") ? 1 : 0;
  if (static_cast<size_t>(decoded) - padding != kSignatureBytes) return bad;
  bytes.resize(kSignatureBytes);
  return bytes;
}

}  // namespace

void KeyDeleter::operator()(::evp_pkey_st* key) const { EVP_PKEY_free(key); }

Result<Key> load_ed25519_key(const std::string& path, bool public_only) {
  constexpr uint64_t kMaxKeyBytes = 64 << 10;  // a PEM Ed25519 key is about 120 bytes
  TROY_ASSIGN(pem, read_small_file(path, kMaxKeyBytes, public_only ? "a PEM public key" : "a PEM private key"));
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Error{fmt::format("{}: cannot read the key", path)};
  EVP_PKEY* key = public_only ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr)
                              : PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  OPENSSL_cleanse(pem.data(), pem.size());  // a private key stays in memory no longer than needed
  if (key == nullptr)
    return Error{fmt::format("{}: not a PEM {} key", path, public_only ? "public" : "private (unencrypted)")};
  Key owned(key);
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) return Error{fmt::format("{}: not an Ed25519 key", path)};
  return owned;
}

Result<std::string> sign(const Key& key, const std::string& key_path, std::span<const std::byte> message) {
  Context context(EVP_MD_CTX_new());
  unsigned char signature[kSignatureBytes];
  size_t length = sizeof signature;
  const auto* data = reinterpret_cast<const unsigned char*>(message.data());
  // Ed25519 hashes the message itself: no digest is named.
  if (!context || EVP_DigestSignInit(context.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(context.get(), signature, &length, data, message.size()) != 1 || length != kSignatureBytes)
    return Error{fmt::format("{}: signing failed (is it a private key?)", key_path)};
  std::string text(4 * ((kSignatureBytes + 2) / 3), '\0');
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()), signature, kSignatureBytes);
  return text;
}

Result<void> verify(const Key& key, std::span<const std::byte> message, const std::string& signature_base64,
                    const std::string& signature_path) {
  auto signature = decode_base64(signature_base64, signature_path);
  if (!signature) return signature.error();
  Context context(EVP_MD_CTX_new());
  const auto* data = reinterpret_cast<const unsigned char*>(message.data());
  if (!context || EVP_DigestVerifyInit(context.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestVerify(context.get(), signature->data(), signature->size(), data, message.size()) != 1)
    return Error{fmt::format("{}: the signature does not match (the manifest was changed, or signed with another key)",
                             signature_path)};
  return success();
}

std::string hmac_sha256_hex(std::span<const uint8_t> key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  ::HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
         message.size(), digest, &length);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

bool same_hmac(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<void> check_private_key_place(const std::string& key, const std::string& served) {
  struct stat st {};
  if (::stat(key.c_str(), &st) != 0) return success();  // loading it names the problem
  std::error_code error;
  const auto key_path = std::filesystem::weakly_canonical(key, error);
  const auto served_path = std::filesystem::weakly_canonical(served, error);
  const auto [served_end, key_at] = std::mismatch(served_path.begin(), served_path.end(), key_path.begin(), key_path.end());
  if (!error && served_end == served_path.end())
    return Error{fmt::format("--key {}: the private key is inside the served directory {}, which anyone on the network "
                             "can download: move it out (e.g. /etc/troy/lab.key) and make a new key pair",
                             key, served)};
  if ((st.st_mode & 077) != 0)
    return Error{fmt::format("--key {}: mode {:04o}: the private key is readable or writable by group or others "
                             "(chmod 600 {})",
                             key, st.st_mode & 07777, key)};
  return success();
}

}  // namespace troy::cli
