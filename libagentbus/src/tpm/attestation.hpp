// attestation.hpp — the verifier's side of TPM attestation (internal; no TPM needed):
// what a broker (and, with the same evidence, a receiver) checks before it believes
// that a key lives in a real TPM. docs/tpm-notes.md "Attestation" says why each
// check is there; tpm.hpp has the TPM's side.
//
//   1. the EK certificate chains to a CA the verifier trusts, and its key is the EK
//      public area's (verify_endorsement);
//   2. the AK is a restricted signing key whose attributes are hashed into its name
//      (check_attestation_key);
//   3. the AK sits in the same TPM as the EK: a secret wrapped for the AK's name
//      under the EK (make_credential) comes back from that TPM (tpm::activate_credential);
//   4. the AK certified the identity key and the static ECDH key: TPM-resident
//      (fixedTPM, fixedParent, sensitiveDataOrigin), and the very keys of the
//      handshake (verify_certification).
// Every failure is not_attested with a detail saying which check failed.
#pragma once

#include <string>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/status.hpp"

namespace agentbus::tpm::attestation {

// object_name is a TPM object's name: BE16(nameAlg) || H_nameAlg(TPMT_PUBLIC), from
// its marshalled TPM2B_PUBLIC. Computed by the verifier, never taken from the agent.
result<bytes> object_name(byte_view tpm2b_public);

// trust_anchors: PEM certificates. Roots are trusted; intermediates only link.
struct trust_anchors {
  std::vector<std::string> roots_pem;
  std::vector<std::string> intermediates_pem;
};

// verified_endorsement: the EK whose certificate chained to a trusted root.
struct verified_endorsement {
  crypto::public_key ek;  // from the certificate, equal to the EK public area's
  std::string issuer;     // the certificate's issuer, one line ("CN=swtpm-localca")
  bytes certificate_fingerprint;  // SHA-256 of the DER certificate
};
// verify_endorsement checks the certificate chain (X509_verify_cert, no purpose:
// EK certificates carry tcg-kp-EKCertificate), that the EK public area is the TCG
// profile's RSA-2048 storage key (restricted decrypt, SHA-256, AES-128-CFB) and
// that the certificate's key is that public area's.
result<verified_endorsement> verify_endorsement(byte_view certificate_der, byte_view ek_tpm2b_public,
                                                const trust_anchors& trusted);

// attestation_key: an AK whose public area passed check_attestation_key.
struct attestation_key {
  crypto::public_key key;
  bytes name;
};
// check_attestation_key: restricted, sign, not decrypt, fixedTPM, fixedParent,
// sensitiveDataOrigin; ECDSA P-256 with the ECDSA-SHA256 scheme.
result<attestation_key> check_attestation_key(byte_view ak_tpm2b_public);

// certified_use: what the certified key must be for.
enum class certified_use { signing, ecdh };
// verify_certification checks a TPM2_Certify by `ak`: the signature over the exact
// attest bytes, magic and type, extraData == qualifying_data, the certified name ==
// object_name(key_tpm2b_public), the key's attributes (fixedTPM, fixedParent,
// sensitiveDataOrigin, not restricted; sign or decrypt for `use`) and that its
// public key is `expected` (the key of the handshake).
status verify_certification(const attestation_key& ak, byte_view attest, byte_view signature, byte_view qualifying_data,
                            byte_view key_tpm2b_public, certified_use use, const crypto::public_key& expected);

// credential: TPM2_MakeCredential's output, marshalled (TPM2B_ID_OBJECT,
// TPM2B_ENCRYPTED_SECRET), for tpm::activate_credential.
struct credential {
  bytes id_object;
  bytes encrypted_secret;
};
// make_credential wraps `secret` (1..32 bytes) for the object named `ak_name` under
// the RSA-2048 EK `ek` (TPM 2.0 Part 1 §24: RSA-OAEP seed with label "IDENTITY",
// KDFa "STORAGE"/"INTEGRITY", AES-128-CFB, outer HMAC-SHA256), in software.
result<credential> make_credential(const crypto::public_key& ek, byte_view ak_name, byte_view secret);

}  // namespace agentbus::tpm::attestation
