// agent.hpp — the client API: connect to a broker with a hardware identity, send,
// publish, subscribe, request/reply.
//
// An `agent` enrols with the broker when constructed (HELLO → CHALLENGE → PROOF →
// WELCOME: it proves possession of its identity key over a transcript with a
// fresh broker nonce and sets up the hop session). Sessions with peers are set up
// on first use through the broker (ECDH on the curve of the two roles, offers and
// acceptances signed by the identity keys). Every envelope it receives is checked
// again here, never trusting the broker: decoding limits, hop MAC, the sender's
// suite against the policy, ACL, replay window and clock skew, signature against
// the sender's pinned key, end-to-end MAC. Rejected envelopes go to the
// on_rejected callback and a counter, never to a handler.
//
// Nothing accepted is lost silently: every envelope send/publish accepted reaches a
// handler at its receiver, or an on_rejected report (and a counter in agent_stats)
// at the side that refused it; a sender is told of refusals it can act on (the
// broker's nacks, a full queue, a failed batch signature). When handlers fall behind,
// the agent stops reading from the broker (flow control) instead of dropping: the
// broker then refuses further envelopes to it with `overloaded`, which their senders
// see.
//
// Thread-safety: every method may be called from any thread. Handlers run on the
// agent's dispatch thread, one at a time; they may call send/publish/request
// (a request from inside a handler waits on the caller only, not the dispatcher).
// Destruction stops the threads; handlers are not called afterwards.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"
#include "agentbus/tpm.hpp"

// The library's own parts, declared before the exported region: they stay hidden.
namespace agentbus::client {
struct agent_runtime;
struct agent_internals;
}  // namespace agentbus::client

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

class identity_key;
class policy;

// enrolment_error is thrown by the agent constructor when the broker refuses the
// agent (code: unknown_role, key_changed, revoked_agent, software_key_refused, ...)
// or cannot be reached (timeout).
class enrolment_error : public std::runtime_error {
 public:
  enrolment_error(status_code code, const std::string& what) : std::runtime_error(what), code_(code) {}
  status_code code() const noexcept { return code_; }

 private:
  status_code code_;
};

struct agent_options {
  std::string name;                        // agent name, e.g. "monitor-1"
  std::string broker_endpoint;             // "tcp://127.0.0.1:5555" or "ipc:///run/agentbus/broker.sock"
  // broker_fingerprint: the broker identity key's fingerprint (hex SHA-256 of its
  // DER public key, either case, as `agentbus-key` and `agentbus-trust broker`
  // print it). Required: an agent enrols only with the broker whose CHALLENGE this key
  // signed, so that its token and its traffic go to no one else.
  std::string broker_fingerprint;
  // insecure_trust_any_broker: enrol with whichever key signs the CHALLENGE when
  // broker_fingerprint is empty (logged at critical level on every enrolment).
  // Anyone on the path can then pose as the broker. Tests of that very case only.
  bool insecure_trust_any_broker = false;
  // enrolment_token: the one-time token an operator issued for this name and role
  // (64 hex digits; `agentbus-trust token create`), needed for the first enrolment of
  // a name in a role with enrolment = "token" and for a new key. It travels sealed
  // for the pinned broker (schemas/protocol.md §3.3). Empty: none.
  std::string enrolment_token;
  // broker_transport_key: the broker's CurveZMQ public key (64 hex digits, as
  // `agentbus-trust broker` prints it and enrolment bundles carry it). Required for a
  // tcp:// endpoint: the hop is then encrypted and the broker proven to hold the key
  // before a byte of the agent's traffic leaves (schemas/protocol.md §1.3). Not used
  // for ipc://, which stays plain behind file permissions.
  std::string broker_transport_key;
  // transport_key_file: where this agent keeps its own CurveZMQ key (64 hex digits,
  // mode 0600; made on first use), used when enrolment_token is empty. The broker
  // admits a client key it knows: the key an enrolment token stands for (the agent
  // uses it whenever enrolment_token is set, spent or not: it becomes the key the
  // agent enrolled over), or the key the agent last enrolled over TCP with. A file
  // key becomes that only through a broker that admits unknown keys
  // (admit_unknown_keys). Empty: a new key each run.
  std::filesystem::path transport_key_file;
  // insecure_plain_tcp: connect to a tcp:// endpoint without CurveZMQ (a broker whose
  // [transport] curve = false): traffic crosses the network in clear and any host
  // on the path can answer as the broker's transport. Loopback tests only.
  bool insecure_plain_tcp = false;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds session_timeout{5'000};  // peer session set-up
  std::chrono::milliseconds max_clock_skew{30'000};
  std::uint64_t rekey_after_messages = 1'000'000;    // per agent↔agent session direction
  std::chrono::seconds rekey_after{3600};
  std::chrono::seconds rekey_grace{30};
  std::size_t max_pending = 10'000;        // envelopes parked while a sender's key is fetched
  // receive_queue: messages ZeroMQ may hold for this agent once it has stopped reading
  // (its handlers are max_pending behind). Past it the broker holds them, up to its
  // per-recipient budget, and then tells their senders `overloaded`.
  int receive_queue = 10'000;
  // heartbeat_interval: ZMTP heartbeats on the broker connection (ZeroMQ's own
  // PING/PONG, which never reach the broker's message queues). A connection silent
  // for 3 intervals is dropped and reconnected; every reconnection makes the agent
  // ping the broker once, and a restarted broker then has it re-enrol
  // (schemas/protocol.md §10). 0 = off; at most one hour (else invalid_argument).
  std::chrono::milliseconds heartbeat_interval{5'000};
  // ping_interval: an application-level ping to the broker this often (0 = off, the
  // default). Not needed to notice a restarted broker; each costs the broker a
  // control message per agent.
  std::chrono::milliseconds ping_interval{0};
  // batch_signing: data envelopes carry assurance tpm-batch: one TPM signature over
  // a Merkle root covers every envelope sealed while the previous root was being
  // signed (adaptive: no timer; at most max_batch per root). send/publish then
  // return once the envelope is queued for signing; a signing failure reaches
  // on_rejected (where == "sender"). TPM identities only.
  bool batch_signing = false;
  std::size_t max_batch = 1024;           // capped by the role's batch_max_leaves in the policy
  std::chrono::microseconds batch_window{0};  // hold a batch open this long for company (0: adaptive);
                                              // capped by the role's batch_max_delay_ms
  // wire_batching (batch mode): a signed batch leaves as one multipart message under
  // one hop MAC, which the broker checks as a unit and fans out envelope by envelope
  // (schemas/envelope.md §7.3). Off: each envelope travels on its own.
  bool wire_batching = true;
};

// enrolment_bundle is what an operator hands an agent's owner (one TOML file written
// by `agentbus-trust token create --out FILE`, mode 0600): the name and role, the
// broker's fingerprint and transport key and, if the operator knew it, its endpoint,
// and the one-time token. load_enrolment_bundle reads it into `options` (name,
// broker_fingerprint, enrolment_token, and broker_endpoint and broker_transport_key
// when the file has them and options has none)
// and returns the role; throws std::runtime_error naming the file and field when it
// cannot be read or is invalid.
std::string load_enrolment_bundle(const std::filesystem::path& file, agent_options& options);

// message is a verified, delivered envelope.
struct message {
  envelope_header header;        // sender, recipient/topic, type, content type, payload, ids
  std::string sender_role;
  assurance level = assurance::tpm;
  protection sender_protection = protection::tpm;
};

// rejection describes an envelope that was refused or could not be sent: by this
// library at receive (where == "receiver"), by the broker at publish or delivery
// (where == "broker", reported back to the sender with the envelope's message id),
// or here before it left (where == "sender": its batch could not be signed, the
// outbound queue was full, a session acceptance could not be queued).
struct rejection {
  std::string where;
  status reason;
  std::string sender;      // who sent it (as claimed), for receiver-side rejections
  std::string recipient;   // recipient/topic, for broker rejections
  bytes message_id;
};

struct agent_stats {
  std::uint64_t sent = 0, received = 0, rejected_at_receive = 0, refused_by_broker = 0, sessions = 0, rekeys = 0,
                reenrolments = 0, hop_rekeys = 0,
                tpm_ecdh_sessions = 0,  // agent↔agent sessions whose keys mix a TPM ECDH_ZGen
                batch_roots = 0,        // TPM signatures over Merkle roots (tpm-batch mode)
                batched_envelopes = 0,  // envelopes those roots covered
                failed_at_sender = 0,   // on_rejected reports with where == "sender"
                // Handshakes (hop or agent↔agent) that went without this identity's static
                // TPM ECDH share because the key could be neither loaded nor created: those
                // sessions rest on ephemeral ECDH alone (the identity logs why).
                static_ecdh_failures = 0,
                // Jobs dropped past the dispatchers' hard limit: on_rejected reports pushed
                // while handlers are far behind (deliveries never are: flow control).
                dispatch_dropped = 0,
                // Topic envelopes that carried no end-to-end MAC for this agent and arrived
                // within 2 s of its subscription: sealed before their publisher knew of it,
                // never addressed to it; dropped, not refused (schemas/protocol.md §8.2). Also
                // topic envelopes that arrive within 2 s after unsubscribe() (forwarded
                // before the broker heard of it): dropped, not refused.
                unaddressed_after_subscribing = 0,
                // Session offers left unanswered because their peer offered faster than
                // the per-peer budget (16 at once, then one a second): each answer costs
                // a signature and a TPM ECDH (reported on_rejected as overloaded).
                offers_refused = 0;
  // The TPM work behind this agent's identity, per operation (sign, ecdh_zgen,
  // key_load, ...): counts, failures and a latency histogram. The tpm object's, so
  // shared with other identities of this process that use the same one; empty for
  // a software identity.
  std::vector<tpm::tpm_op_stats> tpm_operations;
};

using message_handler = std::function<void(const message&)>;
// A request handler returns the reply payload, or nullopt to send no reply.
using request_handler = std::function<std::optional<bytes>(const message&)>;
using rejection_handler = std::function<void(const rejection&)>;

class agent {
 public:
  // Connects and enrols. `key` is the agent's identity (TPM or software); `pol`
  // is the policy the receiver enforces (normally the broker's). Throws
  // enrolment_error when refused or unreachable, std::invalid_argument for options it
  // cannot use (a malformed broker_endpoint, a tcp:// one without broker_transport_key).
  agent(agent_options options, std::shared_ptr<identity_key> key, std::shared_ptr<const policy> pol);
  ~agent();
  agent(const agent&) = delete;
  agent& operator=(const agent&) = delete;

  const std::string& name() const noexcept;

  // send delivers a data envelope to one agent. It returns once the envelope is
  // signed and queued; a broker refusal arrives later through on_rejected.
  status send(const std::string& to, std::string_view content_type, byte_view payload);
  // publish sends to every subscriber of `topic` (one end-to-end MAC each).
  status publish(const std::string& topic, std::string_view content_type, byte_view payload);
  // subscribe registers `handler` for `topic` and waits for the broker's answer:
  // acl_denied if the policy forbids it, invalid_field if it is not a topic. `topic`
  // may be a pattern, NATS-style: "*" matches one segment ("metrics/*/load"), a final
  // ">" one or more ("metrics/>"). An envelope reaches every handler whose topic or
  // pattern matches it, once each. Subscribing again to the same topic replaces its
  // handler.
  status subscribe(const std::string& topic, message_handler handler);
  // queue_subscribe subscribes as a member of the queue group `group` (A-Z a-z 0-9 .
  // _ -, at most 64): of all the agents that subscribe to a topic or pattern matching
  // an envelope's topic in the same group, one gets it (the broker takes them in turn,
  // across the federation); plain subscribers still get every envelope. An agent holds
  // one subscription per topic string: this replaces a plain one to `topic`, or one
  // in another group. unsubscribe ends it.
  status queue_subscribe(const std::string& topic, const std::string& group, message_handler handler);
  // unsubscribe ends the subscription to `topic` (exactly as subscribed: a pattern
  // ends that pattern only). Its handler is not called for envelopes dispatched after
  // it returns. invalid_field if this agent does not subscribe to it.
  status unsubscribe(const std::string& topic);
  // request sends a request and waits for the reply (or timeout / a refusal).
  result<message> request(const std::string& to, std::string_view content_type, byte_view payload,
                          std::chrono::milliseconds timeout);

  void on_message(message_handler handler);   // direct data envelopes
  void on_request(request_handler handler);
  void on_rejected(rejection_handler handler);

  agent_stats stats() const;

 private:
  friend struct client::agent_internals;  // the library's own parts (and agentbus_testing's hooks)
  std::unique_ptr<client::agent_runtime> impl_;
};

}  // namespace agentbus

#pragma GCC visibility pop
