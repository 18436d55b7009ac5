// identity.hpp — an agent's identity key: in a TPM, or (loudly flagged) in software.
//
// An identity lives in a key directory:
//   identity.toml  metadata: role, suite, key type, protection, fingerprint, and for
//                  TPM keys the storage key name the blob belongs to
//   public.pem     the public key (SubjectPublicKeyInfo)
//   key.pub, key.priv   TPM keys: marshalled TPM2B_PUBLIC / TPM2B_PRIVATE
//   private.pem    software keys only: PKCS#8, mode 0600
// A TPM identity is non-exportable: the directory holds only a blob that the TPM
// that made it can load. The software fallback is marked protection=software in
// every output, and the policy decides whether a role may use it.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"
#include "agentbus/tpm.hpp"

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

namespace tpm {
class tpm;
struct key_evidence;
}

// identity_error is thrown when a key directory cannot be created, read or used
// (missing files, wrong permissions, a TPM blob from another TPM).
class identity_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct identity_metadata {
  std::string role;
  suite key_suite;
  protection key_protection = protection::tpm;
  std::string fingerprint;         // hex SHA-256 of the DER public key
  std::string tpm_storage_name;    // hex TPM name of the parent (TPM keys only)
  std::string tpm_manufacturer;    // e.g. "IBM" (TPM keys only)
  bool tpm_simulator = false;
};

// identity_key signs digests with an agent's identity key. Implementations are
// thread-safe (TPM keys queue to the TPM worker).
class identity_key {
 public:
  virtual ~identity_key() = default;

  // create_tpm makes a new key for `role` with the suite's key type in `t`, writes
  // the key directory (which must not already hold an identity), and returns it.
  // unsupported_algorithm if the TPM lacks the suite's algorithm.
  static result<std::unique_ptr<identity_key>> create_tpm(const std::filesystem::path& dir, const std::string& role,
                                                          const suite& s, std::shared_ptr<tpm::tpm> t);
  // create_software makes an OpenSSL key in a 0600 file. Logs a warning.
  static std::unique_ptr<identity_key> create_software(const std::filesystem::path& dir, const std::string& role,
                                                       const suite& s);
  // open loads an existing identity. A TPM identity needs `t` (the TPM that made
  // it); a software identity ignores it and logs a warning. Throws identity_error.
  static std::unique_ptr<identity_key> open(const std::filesystem::path& dir, std::shared_ptr<tpm::tpm> t);
  // read_metadata reads identity.toml without touching any key.
  static identity_metadata read_metadata(const std::filesystem::path& dir);

  const identity_metadata& metadata() const noexcept { return meta_; }
  const crypto::public_key& public_key() const noexcept { return public_; }
  protection key_protection() const noexcept { return meta_.key_protection; }
  const suite& key_suite() const noexcept { return meta_.key_suite; }

  // sign_digest signs a digest of the suite's envelope hash and returns the
  // standard encoding (DER ECDSA / RSA-PSS). invalid_field for a wrong length.
  virtual result<bytes> sign_digest(byte_view digest) = 0;
  // sign_message hashes `message` with the suite's envelope hash and signs it, so
  // `openssl dgst -<hash> -verify public.pem -signature SIG FILE` verifies the result.
  result<bytes> sign_message(byte_view message);
  // verify_message checks a signature made by this identity (in-process OpenSSL).
  status verify_message(byte_view message, byte_view signature) const;

  // static_ecdh_public returns the identity's static ECDH public key on `curve`,
  // creating the key on first use (TPM identities: a TPM-resident decrypt key
  // stored as ecdh-<curve>.pub/.priv in the key directory). nullopt: the identity
  // has none by design (software identities: their sessions rely on ephemeral ECDH
  // alone). An error status: it should have one and the key can be neither loaded
  // nor created (a TPM or key-directory failure; logged, and not tried again for
  // kStaticEcdhRetry). The caller then goes on without it, which downgrades the
  // session to ephemeral ECDH, and counts that where users see it
  // (agent_stats::static_ecdh_failures, the broker's static_ecdh_failures_total).
  static constexpr std::chrono::seconds kStaticEcdhRetry{30};
  virtual result<std::optional<crypto::public_key>> static_ecdh_public(ec_curve curve) {
    (void)curve;
    return std::optional<crypto::public_key>{};
  }
  // static_ecdh computes Z = x(d_static * peer) inside the TPM (TPM2_ECDH_ZGen).
  virtual result<secret_bytes> static_ecdh(ec_curve curve, const crypto::public_key& peer) {
    (void)curve; (void)peer;
    return status{status_code::unsupported_algorithm, "this identity has no static ECDH key"};
  }

  // attestation_evidence returns the TPM's evidence for this identity and its static
  // ECDH key on `curve` (schemas/protocol.md §3.9), made on first use: an AK kept in
  // the key directory (ak.pub, ak.priv) certifies both keys. nullopt: this identity
  // has no evidence to give (software keys; a TPM without an EK certificate, which is
  // logged once) and its protection stays declared.
  virtual result<std::optional<tpm::key_evidence>> attestation_evidence(ec_curve curve) {
    (void)curve;
    return std::optional<tpm::key_evidence>{};
  }
  // activate_credential recovers the secret a verifier wrapped for this identity's AK
  // (TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET); not_attested when the TPM refuses it.
  virtual result<secret_bytes> activate_credential(byte_view credential) {
    (void)credential;
    return status{status_code::not_attested, "this identity has no attestation key"};
  }

  // tpm_stats returns the operation counts and latencies of the TPM this identity
  // lives in (the whole tpm object's, shared with whatever else in this process uses
  // it); empty for a software identity.
  virtual std::vector<tpm::tpm_op_stats> tpm_stats() const { return {}; }

 protected:
  identity_key(identity_metadata meta, crypto::public_key pub) : meta_(std::move(meta)), public_(std::move(pub)) {}
  static void write_metadata(const std::filesystem::path& dir, const identity_metadata& meta);
  static void write_public_pem(const std::filesystem::path& dir, const crypto::public_key& pub);
  static void prepare_directory(const std::filesystem::path& dir);

 private:
  identity_metadata meta_;
  crypto::public_key public_;
};

// connect_tpm opens the TPM named by `tcti`. When no TPM answers (or `tcti` is
// empty) and `allow_software_fallback` is set, it logs a loud warning and returns
// nullptr: the caller then uses a software identity, marked protection=software.
// Without the fallback it throws tpm::tpm_error.
std::shared_ptr<tpm::tpm> connect_tpm(const std::string& tcti, bool allow_software_fallback);

}  // namespace agentbus

#pragma GCC visibility pop
