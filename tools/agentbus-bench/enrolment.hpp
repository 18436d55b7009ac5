// enrolment.hpp — what an operator hands the bench's agents: the broker's
// fingerprint and, for roles that enrol by token, a one-time token per agent, issued
// through the broker's admin endpoint with an operator key (docs/operations.md
// "Enrolling an agent"). For the broker the bench starts, the bench is that operator
// (a software key in the run's temp dir, listed in the policy copy it runs); for a
// running broker (--broker) the operator's --admin, --operator-key and --operator.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "admin_client.hpp"
#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"

namespace agentbus::bench {

class enrolment_access {
 public:
  // broker_fingerprint empty: agents enrol with any broker (insecure_trust_any_broker,
  // logged); no admin or key: agents get no token (open roles and known keys only).
  enrolment_access(std::string broker_fingerprint, std::optional<broker::admin_client> admin,
                   std::shared_ptr<identity_key> operator_key, std::string operator_name);

  // prepare sets the fingerprint and, when it can, a token for `role` bound to `key`.
  // Thread-safe (each token request opens its own socket).
  void prepare(agent_options& ao, const std::string& role, const identity_key& key) const;

 private:
  std::string broker_fingerprint_;
  std::optional<broker::admin_client> admin_;
  std::shared_ptr<identity_key> operator_key_;
  std::string operator_name_;
};

}  // namespace agentbus::bench
