// enrolment.hpp — the broker's side of the enrolment handshake (schemas/protocol.md
// §3): HELLO → CHALLENGE → PROOF → WELCOME, the policy and pin checks of §3.7 in
// their order, and the hop keys (session/key_agreement.hpp, the one key agreement
// both ends run).
//
// A HELLO without a valid cookie is answered COOKIE and leaves nothing behind
// (hello_cookies). One with a cookie must carry the identity key's signature; it is
// screened, and admitted only if something could authorise it (admission): to the
// credentialed pool (a pinned or registered key, a proven token) or the open pool
// (first use in an open role).
//
// State: at most one handshake per connection (routing id), at most kMaxPendingOpen
// open ones and kMaxPendingOpen + kMaxPendingCredentialed in all, each expiring
// kEnrolmentTimeout after its HELLO. Credentialed handshakes' TPM jobs run first. Its
// TPM work goes to the identity worker with a generation number (a result for an
// older handshake on the same connection is discarded) and a cancel flag (set when
// the handshake goes away, so the worker skips it).
//
// An enrolment completes only when its WELCOME left: the registry row is committed
// first (a pinned key survives kill -9), then WELCOME is sent, and only a sent
// WELCOME opens the agent's connection. One that cannot be sent leaves nothing
// online (enrolments_total{outcome="welcome_unsent"}).
//
// No sockets (it sends through the outbox): unit-tested with a recording transport.
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "accounting.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "broker_config.hpp"
#include "connections.hpp"
#include "enrolment_authority.hpp"
#include "hello_cookies.hpp"
#include "identity_worker.hpp"
#include "net/zmq_util.hpp"
#include "outbox.hpp"
#include "registry.hpp"
#include "session/handshake.hpp"
#include "session/key_agreement.hpp"

namespace agentbus::attestation {
struct attested_key;
}

namespace agentbus::broker {

// Pending handshakes (each holds a TPM job until it ends): at most kMaxPendingOpen
// admitted as first use of an open role, and the whole table (credentialed ones:
// a pinned key, the registry's key or a proven token) at most both together. 256
// open ones are 5-13 s of a hardware TPM's signatures (20-50/s), within the 30 s a
// handshake may take: an open-pool flood cannot queue TPM work that would expire
// unread, and leaves the host's CPU (swtpm) to the credentialed agents.
inline constexpr std::size_t kMaxPendingOpen = 256;
inline constexpr std::size_t kMaxPendingCredentialed = 4096;
// kMaxPendingPerAgent: handshakes in progress for one name or one key, over all
// connections (a rekey racing a reconnection needs two).
inline constexpr std::size_t kMaxPendingPerAgent = 2;
// kEnrolmentRefusals is the registry's refusal-counter name for every refused
// enrolment: one row per reason whatever names peers claim (the latest claimed name
// is in its last_detail).
inline constexpr std::string_view kEnrolmentRefusals = "(enrolment)";
inline constexpr std::chrono::seconds kEnrolmentTimeout{30};
// kReHello: a new HELLO on a connection whose handshake is at least this old replaces
// it (an agent that gave up waiting retries); a younger one is answered ERR
// overloaded. Either way a connection costs the TPM at most one signature per kReHello.
inline constexpr std::chrono::seconds kReHello{5};

class enrolment {
 public:
  using submit_fn = std::function<void(identity_job)>;

  // The broker's static ECDH keys (one per curve the policy uses) are read from
  // `identity` here, once: later handshakes never wait for a TPM on this thread. A
  // curve whose key cannot be had is logged and counted
  // (static_ecdh_failures_total{curve}); its hop sessions use ephemeral ECDH only.
  enrolment(const broker_config& cfg, const policy& pol, identity_key& identity, registry& reg, connections& agents,
            outbox& out, accounting& acct, submit_fn submit);
  ~enrolment();
  enrolment(const enrolment&) = delete;
  enrolment& operator=(const enrolment&) = delete;

  // on_hello / on_proof: frames after the kind (one body frame each). `from`: what
  // libzmq says of the connection: its address (recorded with a changed key for the
  // operator), its CurveZMQ client key (the ZAP handler's User-Id; "" on a plain
  // endpoint), which an enrolment completed over it registers for the name
  // (schemas/protocol.md §1.3), and its socket (TCP), which becomes authenticated.
  void on_hello(const bytes& route, std::span<const bytes> frames, const net::connection_facts& from = {});
  // A PROOF must come over the connection its HELLO came over (the same socket and
  // CurveZMQ key): a peer that chose its own routing id cannot finish on another.
  void on_proof(const bytes& route, std::span<const bytes> frames, const net::connection_facts& from = {});
  // on_signed: the identity worker finished a job.
  void on_signed(identity_result r);
  // expire drops handshakes older than kEnrolmentTimeout.
  void expire(std::chrono::steady_clock::time_point now);

  std::size_t pending() const noexcept { return pending_.size(); }
  std::size_t pending_in(admission pool) const;
  std::size_t pending_for(const std::string& name, const std::string& fingerprint) const;
  // at_agent_limit: `name` is not online and max_agents agents are.
  bool at_agent_limit(const std::string& name) const;
  // announce_key_changes_with: called with a name whose enrolment changed the key its
  // peers hold (the broker passes control_channel::announce_key_change).
  void announce_key_changes_with(std::function<void(const std::string&)> f) { announce_key_change_ = std::move(f); }
  // vouch_without_activation: --insecure-permissive-testing. Evidence that passes
  // the certificate and certification checks is admitted without the credential's
  // activation, as a compromised broker would vouch for it: receivers must catch it
  // (schemas/protocol.md §4.3, §13).
  void vouch_without_activation() { vouch_without_activation_ = true; }
  // authenticate_connections_with: called with the socket of each connection an agent
  // has enrolled over, once per connection (connection_guard::authenticated; the
  // connection record keeps it as connection::transport_fd).
  void authenticate_connections_with(std::function<void(int)> f) { authenticated_fd_ = std::move(f); }
  // check_names_with: a federated broker's check that a name is not online at another
  // broker (federation::may_enrol), after the policy's and the registry's checks.
  void check_names_with(std::function<status(const std::string&)> f) { name_free_ = std::move(f); }

 private:
  struct handshake;
  void refuse(const bytes& route, const std::string& name, const status& why);
  // with_pem: fill candidate::public_key_pem (what PROOF may record), else left empty.
  candidate candidate_of(const session::hello_msg& hello, const crypto::public_key& key, const std::string& fingerprint,
                         const std::string& address, const attestation::attested_key* attested,
                         bool with_pem = false) const;
  void complete(const bytes& route, handshake& p, const bytes& proof_bytes, const session::ecdh_shares& shares,
                const authorisation& auth);

  const broker_config& cfg_;
  const policy& pol_;
  identity_key& identity_;
  registry& reg_;
  enrolment_authority authority_;
  hello_cookies cookies_;
  connections& agents_;
  outbox& out_;
  accounting& acct_;
  submit_fn submit_;
  bool vouch_without_activation_ = false;
  std::map<ec_curve, crypto::public_key> static_keys_;
  std::map<ec_curve, bytes> static_key_der_;  // their DER, as CHALLENGE carries it (encoded once)
  bytes identity_der_;                        // the broker identity's DER, likewise
  std::map<bytes, std::unique_ptr<handshake>> pending_;
  std::uint64_t generations_ = 0;
  std::function<void(const std::string&)> announce_key_change_ = [](const std::string&) {};
  std::function<void(int)> authenticated_fd_ = [](int) {};
  std::function<status(const std::string&)> name_free_ = [](const std::string&) { return status{}; };
};

}  // namespace agentbus::broker
