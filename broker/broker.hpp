// broker.hpp — the agentbus broker: a ZeroMQ ROUTER that enrols agents, enforces
// the policy at publish and routes.
//
// The broker is a facade over parts with one owner each (docs/architecture.md):
//   connections      known agents apart from their connections (connections.hpp)
//   enrolment        the handshake and its checks (enrolment.hpp)
//   identity worker  the broker's own TPM work, off the event loop (identity_worker.hpp)
//   publish intake   enforcement at publish, in the protocol's one order (publish_intake.hpp)
//   router, topics   where accepted envelopes go (router.hpp, topics.hpp)
//   control channel  subscribe, peer lookups, membership, bye (control_channel.hpp)
//   outbox           every message the broker sends (outbox.hpp)
//   accounting       metrics, registry counters, trust edges (accounting.hpp)
//   admin server     the admin endpoint (admin_server.hpp)
//
// Threads: one event-loop thread (run()) owns the ROUTER, the admin socket and every
// part above; nothing there blocks on a TPM. The identity worker's thread signs
// CHALLENGE transcripts and computes the broker's TPM ECDH shares and hands results
// back through an eventfd; it waits on the library's TPM worker thread (tpm/tpm.cpp)
// when the identity lives in a TPM. ZeroMQ's I/O thread is libzmq's own. The locks
// the event loop takes are leaves inside parts and primitives (the identity worker's
// queue, the metrics' registry, the admin nonces, the log limiter, the prepared HMAC
// pool): no lock is ever held while another is taken.
#pragma once

#include <atomic>
#include <functional>
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
  // on_loop_turn, if set, is called on every turn of the event loop (at least every
  // 100 ms): main.cpp pings systemd's watchdog from it (service_notifier).
  std::function<void()> on_loop_turn;
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
};

}  // namespace agentbus::broker
