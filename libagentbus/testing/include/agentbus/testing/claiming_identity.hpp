// claiming_identity.hpp — an identity that lies about itself (agentbus_testing: for
// tests and the rogue example, never linked by the product). It signs with an inner
// identity (a software key, typically) but declares other facts — protection=tpm,
// a manufacturer, no simulator — and may present another key's TPM evidence. A
// broker must refuse it where the role requires attestation (not_attested).
// Static ECDH and credential activation are the inner identity's, or, by `activation`,
// an impostor's: `invent` answers a credential the inner TPM cannot open with random
// bytes (a peer that goes on as if it had opened it); `replay_first` answers every
// credential with the secret of the first one it opened (a recorded activation).
#pragma once

#include <memory>
#include <optional>
#include <utility>

#include "agentbus/identity.hpp"

namespace agentbus::testing {

class claiming_identity final : public identity_key {
 public:
  // claimed: the metadata to declare (role, suite and fingerprint must stay the
  // inner key's, or nothing verifies). evidence: what to present (nullopt: none).
  enum class activation { forward, invent, replay_first };
  claiming_identity(std::shared_ptr<identity_key> inner, identity_metadata claimed,
                    std::optional<tpm::key_evidence> evidence = std::nullopt, activation mode = activation::forward)
      : identity_key(std::move(claimed), inner->public_key()), inner_(std::move(inner)), evidence_(std::move(evidence)),
        mode_(mode) {}

  // claim_tpm: the inner identity's metadata, declaring a hardware TPM.
  static identity_metadata claim_tpm(const identity_key& inner, std::string manufacturer = "IFX") {
    identity_metadata m = inner.metadata();
    m.key_protection = protection::tpm;
    m.tpm_manufacturer = std::move(manufacturer);
    m.tpm_simulator = false;
    return m;
  }

  result<bytes> sign_digest(byte_view digest) override { return inner_->sign_digest(digest); }
  result<std::optional<tpm::key_evidence>> attestation_evidence(ec_curve) override { return evidence_; }
  result<std::optional<crypto::public_key>> static_ecdh_public(ec_curve curve) override {
    return inner_->static_ecdh_public(curve);
  }
  result<secret_bytes> static_ecdh(ec_curve curve, const crypto::public_key& peer) override {
    return inner_->static_ecdh(curve, peer);
  }
  result<secret_bytes> activate_credential(byte_view credential) override {
    if (mode_ == activation::replay_first && first_) return first_->clone();
    auto secret = inner_->activate_credential(credential);
    if (!secret && mode_ == activation::invent) return secret_bytes(crypto::random_bytes(32));
    if (secret && mode_ == activation::replay_first) first_ = secret->clone();
    return secret;
  }

 private:
  std::shared_ptr<identity_key> inner_;
  std::optional<tpm::key_evidence> evidence_;
  activation mode_ = activation::forward;
  std::optional<secret_bytes> first_;  // replay_first: the recorded activation
};

}  // namespace agentbus::testing
