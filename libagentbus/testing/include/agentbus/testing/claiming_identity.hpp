// claiming_identity.hpp — an identity that lies about itself (agentbus_testing: for
// tests and the rogue example, never linked by the product). It signs with an inner
// identity (a software key, typically) but declares other facts — protection=tpm,
// a manufacturer, no simulator — and may present another key's TPM evidence. A
// broker must refuse it where the role requires attestation (not_attested).
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
  claiming_identity(std::shared_ptr<identity_key> inner, identity_metadata claimed,
                    std::optional<tpm::key_evidence> evidence = std::nullopt)
      : identity_key(std::move(claimed), inner->public_key()), inner_(std::move(inner)), evidence_(std::move(evidence)) {}

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

 private:
  std::shared_ptr<identity_key> inner_;
  std::optional<tpm::key_evidence> evidence_;
};

}  // namespace agentbus::testing
