// software_key.hpp — an OpenSSL private key for the software fallback (internal).
#pragma once

#include <filesystem>
#include <memory>

#include "agentbus/crypto.hpp"

namespace agentbus::crypto {

// software_private_key signs digests like a TPM key does (same encodings). Its
// PEM file is written with mode 0600 from the start (no window where it is
// world-readable). Thread-safe for signing.
class software_private_key {
 public:
  static software_private_key generate(const key_type& type);
  // load reads PKCS#8 PEM; refuses a file readable by group or others.
  static software_private_key load(const std::filesystem::path& file);
  void save(const std::filesystem::path& file) const;

  const public_key& public_part() const noexcept { return public_; }
  // sign_digest: DER ECDSA, or RSA-PSS with MGF1(h) and salt = hash length (as swtpm).
  result<bytes> sign_digest(hash_algorithm h, byte_view digest) const;

 private:
  software_private_key(std::shared_ptr<const pkey_handle> pkey, public_key pub)
      : pkey_(std::move(pkey)), public_(std::move(pub)) {}
  static software_private_key adopt(std::shared_ptr<const pkey_handle> pkey);
  std::shared_ptr<const pkey_handle> pkey_;
  public_key public_;
};

}  // namespace agentbus::crypto
