#include "enrolment.hpp"

#include <stdexcept>

namespace agentbus::bench {

enrolment_access::enrolment_access(std::string broker_fingerprint, std::optional<broker::admin_client> admin,
                                   std::shared_ptr<identity_key> operator_key, std::string operator_name)
    : broker_fingerprint_(std::move(broker_fingerprint)),
      admin_(std::move(admin)),
      operator_key_(std::move(operator_key)),
      operator_name_(std::move(operator_name)) {}

void enrolment_access::prepare(agent_options& ao, const std::string& role, const identity_key& key) const {
  ao.broker_fingerprint = broker_fingerprint_;
  ao.insecure_trust_any_broker = broker_fingerprint_.empty();
  if (!admin_ || !operator_key_) return;
  auto t = admin_->issue_token(*operator_key_, operator_name_, ao.name, role, key.public_key().fingerprint_hex());
  if (!t) throw std::runtime_error("enrolment token for " + ao.name + ": " + t.error().to_string());
  ao.enrolment_token = *t;
}

}  // namespace agentbus::bench
