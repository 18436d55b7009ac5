// evidence.hpp — checking an enrolling key's TPM evidence (schemas/protocol.md §3.9)
// against a policy's trusted EK CAs: the broker at HELLO, and the same code for any
// verifier that holds the evidence (internal).
//
// check_evidence decodes HELLO's evidence field and runs tpm/attestation.hpp's checks:
// the EK certificate chains to one of the policy's ek_cas (the first that vouches
// for it names the CA and whether its TPMs are simulators), the AK is a restricted
// TPM signing key, and it certified the identity key and, when HELLO offers one, the
// static ECDH key: TPM-resident, the very keys of the handshake. Then it wraps a
// fresh secret for the AK under the EK (make_credential): the broker sends it in
// CHALLENGE, and only the TPM holding both the EK and the AK returns it in PROOF.
#pragma once

#include <optional>
#include <string>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"

namespace agentbus::attestation {

struct attested_key {
  std::string ek_ca;           // the policy's name of the CA that vouched for the EK
  bool simulator = false;      // that CA's TPMs are simulators
  std::string ek_issuer;       // the EK certificate's issuer
  std::string ek_fingerprint;  // hex SHA-256 of the EK's DER public key (what revoke_key names)
  std::string ak_name;         // hex TPM name of the AK
  bool ecdh_certified = false;
  std::optional<crypto::public_key> ek;  // the endorsement key, for credentials
  bytes ak_tpm_name;           // the AK's TPM name (ak_name in binary), for credentials
  bytes credential;            // TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET, for CHALLENGE
  secret_bytes secret;         // what PROOF must return

  // summary: one line for operators ("ek_ca=... issuer=... ak=... certified=identity,ecdh").
  std::string summary() const;
};

// check_evidence: not_attested (or a decoding code) when the evidence does not hold.
result<attested_key> check_evidence(const policy& pol, byte_view evidence, const crypto::public_key& identity,
                                    const std::optional<crypto::public_key>& static_ecdh);

// check_peer_evidence is a receiver's check of the evidence the broker hands out with
// a peer's key: the same certificate, AK and identity-key checks under the
// receiver's own policy. It makes no credential: the receiver makes its own when it
// sets up a session with the peer (make_challenge, schemas/protocol.md §4.3), so that
// the AK sits next to the EK never rests on the broker's word. Returns the vouching
// CA's name and simulator flag, the EK and the AK's name.
result<attested_key> check_peer_evidence(const policy& pol, byte_view evidence, const crypto::public_key& identity);

// credential_challenge: a credential for an AK (TPM2B_ID_OBJECT ||
// TPM2B_ENCRYPTED_SECRET, the form CHALLENGE and session offers carry) and the fresh
// 32-byte secret only the TPM holding both that AK and the EK recovers.
struct credential_challenge {
  bytes credential;
  secret_bytes secret;
};
result<credential_challenge> make_challenge(const crypto::public_key& ek, byte_view ak_name);

}  // namespace agentbus::attestation
