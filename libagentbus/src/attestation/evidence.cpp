#include "attestation/evidence.hpp"

#include <openssl/crypto.h>

#include "session/handshake.hpp"
#include "tpm/attestation.hpp"

namespace agentbus::attestation {

namespace att = tpm::attestation;

std::string attested_key::summary() const {
  return "ek_ca=" + ek_ca + (simulator ? " (simulator)" : "") + " issuer=" + ek_issuer + " ek=" + ek_fingerprint.substr(0, 16) +
         " ak=" + ak_name.substr(0, 20) + " certified=identity" + (ecdh_certified ? ",ecdh" : "") +
         " (fixedTPM,fixedParent,sensitiveDataOrigin)";
}

namespace {

// verify_chain_and_identity: the checks a broker and a receiver share (§3.9 steps 1-4
// for the identity key); fills out's CA, EK and AK fields.
result<session::evidence_msg> verify_chain_and_identity(const policy& pol, byte_view evidence,
                                                        const crypto::public_key& identity, attested_key& out,
                                                        std::optional<att::verified_endorsement>& ek,
                                                        std::optional<att::attestation_key>& ak) {
  auto ev = session::decode_evidence(evidence);
  if (!ev) return status{ev.error().code(), "evidence: " + ev.error().detail()};
  if (pol.ek_cas().empty()) return status{status_code::not_attested, "the policy trusts no EK CA"};
  const ek_ca* vouching = nullptr;
  status last;
  for (const ek_ca& ca : pol.ek_cas()) {
    auto v = att::verify_endorsement(ev->ek_certificate, ev->ek_public, {{ca.root_pem}, ca.intermediates_pem});
    if (v) {
      ek = std::move(v).value();
      vouching = &ca;
      break;
    }
    last = v.error();
  }
  if (!ek) return last;
  auto k = att::check_attestation_key(ev->ak_public);
  if (!k) return k.error();
  ak = std::move(k).value();
  if (status st = att::verify_certification(*ak, ev->identity_attest, ev->identity_signature, {}, ev->identity_public,
                                            att::certified_use::signing, identity);
      !st)
    return status{st.code(), "identity key: " + st.detail()};
  out.ek_ca = vouching->name;
  out.simulator = vouching->simulator;
  out.ek_issuer = ek->issuer;
  out.ek_fingerprint = ek->ek.fingerprint_hex();
  out.ak_name = to_hex(ak->name);
  out.ek = ek->ek;
  out.ak_tpm_name = ak->name;
  return std::move(ev).value();
}

}  // namespace

result<attested_key> check_peer_evidence(const policy& pol, byte_view evidence, const crypto::public_key& identity) {
  attested_key out;
  std::optional<att::verified_endorsement> ek;
  std::optional<att::attestation_key> ak;
  auto ev = verify_chain_and_identity(pol, evidence, identity, out, ek, ak);
  if (!ev) return ev.error();
  return out;
}

result<attested_key> check_evidence(const policy& pol, byte_view evidence, const crypto::public_key& identity,
                                    const std::optional<crypto::public_key>& static_ecdh) {
  attested_key out;
  std::optional<att::verified_endorsement> ek;
  std::optional<att::attestation_key> ak;
  auto ev = verify_chain_and_identity(pol, evidence, identity, out, ek, ak);
  if (!ev) return ev.error();
  if (!static_ecdh && !ev->ecdh_public.empty())
    return status{status_code::not_attested, "an ECDH certification for a HELLO without a static ECDH key"};
  if (static_ecdh) {
    if (ev->ecdh_public.empty())
      return status{status_code::not_attested, "the static ECDH key is not certified"};
    if (status st = att::verify_certification(*ak, ev->ecdh_attest, ev->ecdh_signature, {}, ev->ecdh_public,
                                              att::certified_use::ecdh, *static_ecdh);
        !st)
      return status{st.code(), "static ECDH key: " + st.detail()};
    out.ecdh_certified = true;
  }
  auto challenge = make_challenge(ek->ek, ak->name);
  if (!challenge) return challenge.error();
  out.credential = std::move(challenge->credential);
  out.secret = std::move(challenge->secret);
  return out;
}

result<credential_challenge> make_challenge(const crypto::public_key& ek, byte_view ak_name) {
  bytes secret = crypto::random_bytes(32);
  auto cred = att::make_credential(ek, ak_name, secret);
  credential_challenge out;
  if (cred) {
    out.credential = std::move(cred->id_object);
    out.credential.insert(out.credential.end(), cred->encrypted_secret.begin(), cred->encrypted_secret.end());
    out.secret = secret_bytes(secret.data(), secret.size());
  }
  OPENSSL_cleanse(secret.data(), secret.size());
  if (!cred) return cred.error();
  return out;
}

}  // namespace agentbus::attestation
