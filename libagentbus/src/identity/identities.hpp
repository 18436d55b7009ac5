// identities.hpp — the two identity_key implementations (internal).
#pragma once

#include <map>
#include <mutex>

#include "agentbus/identity.hpp"
#include "agentbus/tpm.hpp"
#include "crypto/software_key.hpp"

namespace agentbus {

class tpm_identity final : public identity_key {
 public:
  tpm_identity(identity_metadata meta, crypto::public_key pub, std::shared_ptr<tpm::tpm> t, tpm::key_blob blob)
      : identity_key(std::move(meta), std::move(pub)), tpm_(std::move(t)), blob_(std::move(blob)) {}
  result<bytes> sign_digest(byte_view digest) override;
  result<std::optional<crypto::public_key>> static_ecdh_public(ec_curve curve) override;
  result<secret_bytes> static_ecdh(ec_curve curve, const crypto::public_key& peer) override;
  result<std::optional<tpm::key_evidence>> attestation_evidence(ec_curve curve) override;
  result<secret_bytes> activate_credential(byte_view credential) override;
  std::vector<tpm::tpm_op_stats> tpm_stats() const override { return tpm_->stats(); }
  static std::unique_ptr<identity_key> load(const std::filesystem::path& dir, identity_metadata meta,
                                            std::shared_ptr<tpm::tpm> t);
  static void save_blob(const std::filesystem::path& dir, const tpm::key_blob& blob);

 private:
  // ecdh_blob: the static ECDH key on `curve` (nullptr: none by design), loaded or
  // created on first use; a failure is remembered for kStaticEcdhRetry.
  result<const tpm::key_blob*> ecdh_blob(ec_curve curve);
  result<const tpm::key_blob*> load_or_create_ecdh(ec_curve curve);

  std::shared_ptr<tpm::tpm> tpm_;
  tpm::key_blob blob_;
  std::filesystem::path dir_;
  std::mutex ecdh_mutex_;
  std::map<ec_curve, tpm::key_blob> ecdh_blobs_;
  std::map<ec_curve, std::pair<status, std::chrono::steady_clock::time_point>> ecdh_failures_;
  // Attestation: the AK (ak.pub / ak.priv in the key directory) and the evidence
  // made per curve, under attest_mutex_ (taken before ecdh_mutex_, never after).
  result<const tpm::key_blob*> attestation_key_locked();
  std::mutex attest_mutex_;
  std::optional<tpm::key_blob> ak_;
  bool no_endorsement_ = false;
  std::map<ec_curve, tpm::key_evidence> evidence_;
};

class software_identity final : public identity_key {
 public:
  software_identity(identity_metadata meta, crypto::software_private_key key)
      : identity_key(std::move(meta), key.public_part()), key_(std::move(key)) {}
  result<bytes> sign_digest(byte_view digest) override;

 private:
  crypto::software_private_key key_;
};

// Files of a key directory.
inline constexpr const char* kMetadataFile = "identity.toml";
inline constexpr const char* kPublicPemFile = "public.pem";
inline constexpr const char* kTpmPublicFile = "key.pub";
inline constexpr const char* kTpmPrivateFile = "key.priv";
inline constexpr const char* kSoftwareKeyFile = "private.pem";

bytes read_binary_file(const std::filesystem::path& file);
void write_binary_file(const std::filesystem::path& file, byte_view data, unsigned mode);

}  // namespace agentbus
