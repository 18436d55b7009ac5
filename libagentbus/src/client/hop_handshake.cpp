#include "client/hop_handshake.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "session/checks.hpp"

namespace agentbus::client {

hop_handshake::hop_handshake(identity_key& key, const suite& my_suite, std::string agent_name, std::string broker_pin,
                             const secret_bytes* token)
    : key_(key),
      suite_(my_suite),
      name_(std::move(agent_name)),
      broker_pin_(std::move(broker_pin)),
      token_(token != nullptr ? std::optional<secret_bytes>(token->clone()) : std::nullopt),
      ephemeral_(crypto::ec_keypair::generate(my_suite.ecdh_curve)) {
  // Hex in either case (agentbus-key prints lower case).
  std::transform(broker_pin_.begin(), broker_pin_.end(), broker_pin_.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto st = key_.static_ecdh_public(suite_.ecdh_curve);
  if (!st) static_key_failed_ = true;
  else if (st->has_value()) static_pub_ = std::move(**st);
  hello_.name = name_;
  hello_.role = key_.metadata().role;
  hello_.suite = suite_.name;
  hello_.key_protection = key_.key_protection();
  hello_.identity_der = key_.public_key().der();
  hello_.tpm_manufacturer = key_.metadata().tpm_manufacturer;
  hello_.tpm_simulator = key_.metadata().tpm_simulator;
  hello_.ephemeral_der = ephemeral_.public_part().der();
  if (static_pub_) hello_.static_ecdh_der = static_pub_->der();
  hello_.nonce = crypto::random_bytes(session::kNonceSize);
  // TPM evidence (made once per identity and curve): without it the key's protection
  // is only declared, which a role with require_attestation refuses.
  if (auto ev = key_.attestation_evidence(suite_.ecdh_curve); !ev) {
    spdlog::warn("[{}] no attestation evidence: {}; the key's protection is only declared", name_, ev.error().to_string());
  } else if (ev->has_value()) {
    const tpm::key_evidence& e = **ev;
    session::evidence_msg m;
    m.ek_certificate = e.ek.certificate_der;
    m.ek_public = e.ek.public_area;
    m.ak_public = e.ak_public;
    m.identity_public = e.identity_public;
    m.identity_attest = e.identity.attest;
    m.identity_signature = e.identity.signature;
    if (static_pub_ && !e.ecdh_public.empty()) {
      m.ecdh_public = e.ecdh_public;
      m.ecdh_attest = e.ecdh.attest;
      m.ecdh_signature = e.ecdh.signature;
    }
    hello_.evidence = session::encode(m);
  }
  hello_bytes_ = session::encode(hello_);
}

result<bytes> hop_handshake::with_cookie(byte_view cookie_body) {
  auto c = session::decode_cookie(cookie_body);
  if (!c) return status{c.error().code(), "bad COOKIE: " + c.error().to_string()};
  hello_.cookie = std::move(c->cookie);
  const bytes unsigned_hello = session::encode(hello_, false);
  auto sig = key_.sign_message(session::hello_transcript(unsigned_hello));
  if (!sig) return status{sig.error().code(), "cannot sign the HELLO: " + sig.error().to_string()};
  hello_.possession = std::move(sig).value();
  hello_.token_proof.clear();
  if (token_) hello_.token_proof = session::hello_token_proof(crypto::digest(hash_algorithm::sha256, token_->view()), unsigned_hello);
  hello_bytes_ = session::encode(hello_);
  return hello_bytes_;
}

result<hop_handshake::proof> hop_handshake::on_challenge(byte_view challenge_body) const {
  auto challenge = session::decode_challenge(challenge_body);
  if (!challenge) return status{challenge.error().code(), "bad CHALLENGE: " + challenge.error().to_string()};
  // The broker proves its identity first (SIGMA: each side signs the transcript).
  auto broker_key = crypto::public_key::from_der(challenge->broker_identity_der);
  if (!broker_key) return status{broker_key.error().code(), "broker key unreadable"};
  if (!broker_pin_.empty() && broker_key->fingerprint_hex() != broker_pin_)
    return status{status_code::key_changed,
                  "broker key " + broker_key->fingerprint_hex() + " does not match the pinned fingerprint"};
  const bytes ct = session::challenge_transcript(hello_bytes_, session::encode(*challenge, false));
  if (!crypto::verify_digest(*broker_key, broker_key->type(), challenge->broker_hash,
                             crypto::digest(challenge->broker_hash, ct), challenge->signature)
           .ok())
    return status{status_code::bad_signature, "broker signature over the challenge does not verify"};

  auto broker = session::read_peer_ecdh_keys(challenge->ephemeral_der, challenge->static_ecdh_der, suite_.ecdh_curve, "broker");
  if (!broker) return broker.error();
  auto shares = session::software_shares(ephemeral_, broker->ephemeral, broker->static_key);
  if (!shares) return status{shares.error().code(), "ECDH failed: " + shares.error().to_string()};
  if (static_pub_) {
    auto z = key_.static_ecdh(suite_.ecdh_curve, broker->ephemeral);  // TPM2_ECDH_ZGen
    if (!z) return status{z.error().code(), "TPM ECDH failed: " + z.error().to_string()};
    shares->my_static = std::move(z).value();
  }

  session::proof_msg proof;
  auto sig = key_.sign_message(session::proof_transcript(hello_bytes_, challenge_body));
  if (!sig) return status{sig.error().code(), "cannot sign the enrolment proof: " + sig.error().to_string()};
  proof.signature = std::move(sig).value();
  if (!challenge->credential.empty()) {
    // The broker wrapped a secret for our AK under our TPM's EK: only that TPM, holding
    // that AK, recovers it.
    if (hello_.evidence.empty()) return status{status_code::malformed, "CHALLENGE carries a credential for no evidence"};
    auto secret = key_.activate_credential(challenge->credential);
    if (!secret) return status{secret.error().code(), "credential activation failed: " + secret.error().to_string()};
    proof.activation.assign(secret->data(), secret->data() + secret->size());
  }
  if (token_) {
    // Sealed for the broker whose CHALLENGE verified above: only it can open it.
    const std::array<byte_view, 2> hello_challenge{hello_bytes_, challenge_body};
    proof.sealed_token = session::seal_enrolment_token(
        *shares, {"hop", name_, challenge->broker_name, hello_.nonce, challenge->nonce, suite_.mac_hash,
                  suite_.mac_hash, hello_challenge},
        token_->view());
  }
  bytes proof_bytes = session::encode(proof);

  const std::array<byte_view, 3> transcript{hello_bytes_, challenge_body, proof_bytes};
  session::agreed_keys keys = session::agree(session::handshake_role::initiator, *shares,
                                             {"hop", name_, challenge->broker_name, hello_.nonce, challenge->nonce,
                                              suite_.mac_hash, suite_.mac_hash, transcript});
  return hop_handshake::proof{std::move(proof_bytes), std::move(keys)};
}

result<hop_handshake::welcome> hop_handshake::on_welcome(byte_view welcome_body) {
  if (!keys_) return status{status_code::malformed, "WELCOME before PROOF"};
  auto w = session::decode_welcome(welcome_body);
  if (!w) return status{w.error().code(), "bad WELCOME: " + w.error().to_string()};
  if (status st = session::check_welcome_confirm(*keys_, *w); !st) return st;
  // The rekey schedule is covered by the confirmation; bounded all the same, so that
  // no value can overflow a clock computation.
  constexpr std::uint64_t kMaxRekeySeconds = 10ull * 365 * 24 * 3600;
  welcome out{std::move(*keys_), w->rekey_after_messages,
              std::chrono::seconds(std::min(w->rekey_after_seconds, kMaxRekeySeconds))};
  keys_.reset();
  return out;
}

}  // namespace agentbus::client
