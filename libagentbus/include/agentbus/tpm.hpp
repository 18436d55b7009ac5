// tpm.hpp — a TPM 2.0 reached through the tpm2-tss ESAPI and the TCTI loader.
//
// One `tpm` object owns one ESAPI context on its own worker thread: ESAPI is not
// thread-safe and its calls block (a stopped swtpm holds a call for as long as it
// is stopped), so every operation is queued to that thread and the caller waits
// with a deadline. A call that misses the deadline fails closed: it throws
// tpm_error and the object refuses every later call. All methods are thread-safe.
//
// Keys live as blobs (marshalled TPM2B_PUBLIC / TPM2B_PRIVATE, the private part
// encrypted by this TPM's storage key) that the caller stores; they are loaded on
// demand. At most the storage key and two other objects stay loaded, because many
// TPMs (swtpm included) hold only three. Service keys carry noDA: a failed
// authorisation must not lock the TPM out.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus::tpm {

// tpm_error is thrown when the TPM cannot be reached, misses its deadline, or
// fails for a reason that is not the caller's input. Its message names the TCTI
// and the ESAPI call and decodes the TSS2 return code (Tss2_RC_Decode).
class tpm_error : public std::runtime_error {
 public:
  tpm_error(const std::string& message, std::uint32_t rc = 0) : std::runtime_error(message), rc_(rc) {}
  std::uint32_t rc() const noexcept { return rc_; }

 private:
  std::uint32_t rc_;
};

// tpm_info is what a TPM says about itself (TPM2_GetCapability, TPM2_TestParms).
struct tpm_info {
  std::string tcti;
  std::string manufacturer;      // TPM2_PT_MANUFACTURER as text, e.g. "IBM"
  std::string vendor;            // TPM2_PT_VENDOR_STRING_1..4, e.g. "SW   TPM"
  std::string firmware;          // FIRMWARE_VERSION_1.2 as "a.b.c.d"
  std::uint32_t spec_revision = 0;
  bool simulator = false;        // swtpm/IBM or Microsoft simulator
  std::vector<std::string> algorithms;  // names of TPM2_CAP_ALGS entries
  std::vector<ec_curve> curves;         // NIST curves the TPM implements
  std::vector<unsigned> rsa_bits;       // RSA sizes TestParms accepts
  std::vector<std::string> pcr_banks;   // hashes with allocated PCR banks
};

// key_blob is a TPM key as stored on disk. The private area is useless without
// the TPM (and storage key) that created it.
struct key_blob {
  key_type type;
  bool ecdh = false;      // a decrypt key for ECDH_ZGen rather than a signing key
  hash_algorithm scheme_hash = hash_algorithm::sha256;  // the hash bound into the key's scheme
  bytes public_area;      // marshalled TPM2B_PUBLIC
  bytes private_area;     // marshalled TPM2B_PRIVATE
};

// endorsement is the TPM's endorsement key (the RSA-2048 EK of the TCG EK profile's
// template L-1 at persistent handle 0x81010001) and its certificate from NV index
// 0x01c00002, as manufacturers (and swtpm_setup --create-ek-cert) provision them.
struct endorsement {
  bytes public_area;      // marshalled TPM2B_PUBLIC of the EK
  bytes certificate_der;  // the EK certificate (X.509 DER)
};
// endorsement_fingerprint: hex SHA-256 of the EK's DER public key, from its public
// area: how operators name a TPM (agentbus-trust revoke-key, token create --ek).
result<std::string> endorsement_fingerprint(const endorsement& ek);

// certification is TPM2_Certify's output: the TPMS_ATTEST bytes the TPM signed and
// the signature (DER ECDSA over SHA-256 of `attest`, for the attestation key made
// by create_attestation_key).
struct certification {
  bytes attest;
  bytes signature;
};

// key_evidence is what an identity presents at enrolment (schemas/protocol.md
// §3.9): its TPM's endorsement, an AK's public area, and the AK's certification of
// the identity key and, when there is one, of the static ECDH key on the role's
// curve (the public areas certified, marshalled TPM2B_PUBLIC).
struct key_evidence {
  endorsement ek;
  bytes ak_public;
  bytes identity_public;
  certification identity;
  bytes ecdh_public;         // empty: no static ECDH key
  certification ecdh;
};

struct tpm_options {
  // deadline bounds each TPM operation. RSA key generation on a real chip can take
  // tens of seconds, so creation uses create_deadline.
  std::chrono::milliseconds deadline{10'000};
  std::chrono::milliseconds create_deadline{120'000};
};

// tpm_latency_bounds are the upper bounds (inclusive) of the TPM operation latency
// buckets: 100 µs (a key cache hit on a simulator) to 120 s (RSA key generation on
// a slow chip, tpm_options::create_deadline).
inline constexpr std::array<std::chrono::microseconds, 18> tpm_latency_bounds = {
    std::chrono::microseconds{100},       std::chrono::microseconds{250},       std::chrono::microseconds{500},
    std::chrono::microseconds{1'000},     std::chrono::microseconds{2'500},     std::chrono::microseconds{5'000},
    std::chrono::microseconds{10'000},    std::chrono::microseconds{25'000},    std::chrono::microseconds{50'000},
    std::chrono::microseconds{100'000},   std::chrono::microseconds{250'000},   std::chrono::microseconds{500'000},
    std::chrono::microseconds{1'000'000}, std::chrono::microseconds{2'500'000}, std::chrono::microseconds{5'000'000},
    std::chrono::microseconds{10'000'000}, std::chrono::microseconds{30'000'000}, std::chrono::microseconds{120'000'000}};

// tpm_op_stats counts one kind of operation ("sign", "ecdh_zgen", "create",
// "key_load", "key_flush", ...) since the tpm object was made: how many, how many
// failed (an error answer or a missed deadline), and how long they took.
struct tpm_op_stats {
  std::string operation;
  std::uint64_t count = 0;  // every completed or abandoned call, failures included
  std::uint64_t failures = 0;
  std::chrono::nanoseconds total_time{0};
  // latency_buckets[i] counts the calls that took more than tpm_latency_bounds[i-1]
  // and at most tpm_latency_bounds[i]; the last counts those over 120 s. Not
  // cumulative; their sum is count.
  std::array<std::uint64_t, tpm_latency_bounds.size() + 1> latency_buckets{};

  double mean_ms() const noexcept {
    return count == 0 ? 0.0 : std::chrono::duration<double, std::milli>(total_time).count() / static_cast<double>(count);
  }
};

// scheme_hash_for returns the SHA-2 hash a TPM signing scheme must name for a
// digest of `digest_hash`: SHA-3 digests are signed under the SHA-2 scheme of the
// same size (TPMs implement no SHA-3; ECDSA signs any digest of that size).
hash_algorithm scheme_hash_for(hash_algorithm digest_hash) noexcept;

class tpm {
 public:
  // Connects to the TPM named by `tcti` ("swtpm:path=/dir/sock",
  // "swtpm:host=127.0.0.1,port=2321", "device:/dev/tpmrm0", "tabrmd"). An empty
  // TCTI is refused: agentbus never falls back to a default TPM address. Creates
  // the storage primary (ECC P-256 SRK template, owner hierarchy). Throws tpm_error.
  explicit tpm(std::string tcti, tpm_options options = {});
  ~tpm();
  tpm(const tpm&) = delete;
  tpm& operator=(const tpm&) = delete;

  const std::string& tcti() const noexcept;
  tpm_info info();

  // check_key_type asks the TPM (TestParms, curve list) whether it can create and
  // use such a key; unsupported_algorithm naming the algorithm otherwise.
  status check_key_type(const key_type& type);

  // create_signing_key makes a non-exportable signing key (fixedTPM, fixedParent,
  // sensitiveDataOrigin, noDA) whose scheme is bound to RSA-PSS or ECDSA with
  // scheme_hash_for(digest_hash).
  result<key_blob> create_signing_key(const key_type& type, hash_algorithm digest_hash);
  // create_ecdh_key makes an unrestricted decrypt ECC key for ECDH_ZGen.
  result<key_blob> create_ecdh_key(ec_curve curve);

  // public_key_of parses the blob's public area (no TPM call).
  static result<crypto::public_key> public_key_of(const key_blob& blob);

  // sign_digest signs a digest computed in software and returns the standard
  // encoding (DER ECDSA, or the RSA-PSS signature bytes). The digest length must
  // match the key's scheme (invalid_field otherwise).
  result<bytes> sign_digest(const key_blob& key, byte_view digest);

  // ecdh_zgen returns Z.x = x(d_key * Q_peer) computed inside the TPM.
  result<secret_bytes> ecdh_zgen(const key_blob& key, const crypto::public_key& peer);

  // ---- attestation (docs/tpm-notes.md "Attestation")

  // read_endorsement returns the EK's public area and certificate; not_attested if
  // the TPM has no EK at 0x81010001 or no certificate at 0x01c00002.
  result<endorsement> read_endorsement();
  // create_attestation_key makes an AK: a restricted ECDSA P-256 / SHA-256 signing
  // key (fixedTPM, fixedParent, sensitiveDataOrigin, noDA) under the storage key.
  result<key_blob> create_attestation_key();
  // certify has `ak` certify `key` (TPM2_Certify) with `qualifying_data` (at most 64
  // bytes) as extraData.
  result<certification> certify(const key_blob& key, const key_blob& ak, byte_view qualifying_data);
  // activate_credential recovers the secret a verifier wrapped for `ak` under this
  // TPM's EK (TPM2_MakeCredential's output: marshalled TPM2B_ID_OBJECT and
  // TPM2B_ENCRYPTED_SECRET). not_attested when the TPM refuses it: the credential
  // was made for another EK or another key name.
  result<secret_bytes> activate_credential(const key_blob& ak, byte_view id_object, byte_view encrypted_secret);

  // pcr_extend extends PCR `index` of the bank `bank` with `digest`
  // (PCR := H(PCR || digest)); pcr_read returns the PCR's value.
  void pcr_extend(unsigned index, hash_algorithm bank, byte_view digest);
  bytes pcr_read(unsigned index, hash_algorithm bank);

  // storage_key_name is the TPM name of the storage primary: a key blob loads
  // only under the primary (on the TPM) it was created under.
  bytes storage_key_name();

  std::vector<tpm_op_stats> stats() const;

 private:
  struct __attribute__((visibility("hidden"))) impl;  // the library's own (tpm/tpm_device.hpp)
  std::shared_ptr<impl> impl_;
};

}  // namespace agentbus::tpm

#pragma GCC visibility pop
