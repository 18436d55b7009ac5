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

// reload_input is what a reload applies: the configuration and the policy, read again
// and validated by broker_runtime_options::load_for_reload.
struct reload_input {
  broker_config cfg;
  std::shared_ptr<const policy> pol;
};

struct broker_runtime_options {
  // permissive_testing forwards envelopes after the hop MAC without the suite,
  // ACL, replay and signature checks. It exists only so that tests can prove the
  // receiving library refuses what a broker wrongly forwards. Never in production.
  bool permissive_testing = false;
  // tamper_federation changes one byte of every envelope's payload this broker forwards
  // to another broker of the federation: a broker gone bad, which tests use to prove
  // the receiving broker and the receiving library catch it. Never in production.
  bool tamper_federation = false;
  // tpm, if the broker's identity lives in one: its operation counts, failures and
  // latency histograms are published with the metrics (tpm_operation_duration_seconds,
  // tpm_operation_failures_total).
  std::shared_ptr<tpm::tpm> tpm;
  // on_loop_turn, if set, is called on every turn of the event loop (at least every
  // 100 ms): main.cpp pings systemd's watchdog from it (service_notifier).
  std::function<void()> on_loop_turn;
  // load_for_reload reads the configuration and policy files again (with whatever the
  // command line overrides) when run()'s reload flag is set. It throws (config_error,
  // policy_error, ...) for a file that does not validate: the reload is refused and
  // everything running is kept. Without it, a reload request is refused.
  std::function<reload_input()> load_for_reload;
  // on_reloaded, if set, is told how a reload ended (main.cpp tells systemd).
  std::function<void(bool applied, const std::string& summary)> on_reloaded;
};

class broker {
 public:
  // Binds every endpoint; throws on failure (address in use, bad endpoint).
  broker(broker_config cfg, std::shared_ptr<const policy> pol, std::shared_ptr<identity_key> identity,
         std::shared_ptr<metrics> m, broker_runtime_options runtime = {});
  ~broker();
  broker(const broker&) = delete;
  broker& operator=(const broker&) = delete;

  // run serves until `stop` becomes true (checked at least every 100 ms). When
  // `reload_requested` becomes true (SIGHUP), it clears it and reloads (below).
  void run(const std::atomic<bool>& stop, std::atomic<bool>* reload_requested = nullptr);

  // reload applies a new configuration and policy, on the event loop's thread (run()
  // calls it; so may a test between runs). Refused (invalid_field, the running ones
  // kept) when the new policy lacks the broker's own suite. Applied: the policy
  // replaces the running one for every part at once (the next envelope, enrolment,
  // subscription and admin request is checked against it); online agents it no
  // longer admits (revoked by name or key, role gone, suite changed) are closed and
  // their peers told of revocations; subscriptions it no longer allows are withdrawn
  // and their agents told; the live configuration fields are applied
  // (policy_reload.hpp), the others reported as waiting for a restart. Everything
  // else (sessions, queues, compliant traffic) goes on untouched. Returns the log
  // summary of what changed.
  result<std::string> reload(reload_input next);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace agentbus::broker
