// broker.hpp — the agentbus broker: a ZeroMQ ROUTER that enrols agents, enforces
// the policy at publish and routes.
//
// One socket thread owns the ROUTER and every piece of routing state; it never
// touches the TPM. The broker's own TPM work (signing enrolment challenges, TPM
// ECDH) runs on a signer thread that hands results back through an eventfd.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"
#include "broker_config.hpp"
#include "metrics.hpp"

namespace agentbus::broker {

struct broker_runtime_options {
  // permissive_testing forwards envelopes after the hop MAC without the suite,
  // ACL, replay and signature checks. It exists only so that tests can prove the
  // receiving library refuses what a broker wrongly forwards. Never in production.
  bool permissive_testing = false;
  // tpm, if the broker's identity lives in one: its operation counts and mean
  // times are published with the metrics (tpm_operations_total, tpm_operation_mean_ms).
  std::shared_ptr<tpm::tpm> tpm;
};

class broker {
 public:
  // Binds every endpoint; throws on failure (address in use, bad endpoint).
  broker(broker_config cfg, std::shared_ptr<const policy> pol, std::shared_ptr<identity_key> identity,
         std::shared_ptr<metrics> m, broker_runtime_options runtime = {});
  ~broker();
  broker(const broker&) = delete;
  broker& operator=(const broker&) = delete;

  // run serves until `stop` becomes true (checked at least every 100 ms).
  void run(const std::atomic<bool>& stop);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  friend class broker_admin_state;
};

}  // namespace agentbus::broker
