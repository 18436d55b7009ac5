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
  std::string broker_fingerprint;          // optional pin of the broker's identity key (hex SHA-256)
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds session_timeout{5'000};  // peer session set-up
  std::chrono::milliseconds max_clock_skew{30'000};
  std::uint64_t rekey_after_messages = 1'000'000;    // per agent↔agent session direction
  std::chrono::seconds rekey_after{3600};
  std::chrono::seconds rekey_grace{30};
  std::size_t max_pending = 10'000;        // envelopes parked while a sender's key is fetched
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

// message is a verified, delivered envelope.
struct message {
  envelope_header header;        // sender, recipient/topic, type, content type, payload, ids
  std::string sender_role;
  assurance level = assurance::tpm;
  protection sender_protection = protection::tpm;
};

// rejection describes an envelope that was refused: by this library at receive
// (where == "receiver") or by the broker at publish (where == "broker", reported
// back to the sender with the envelope's message id).
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
                batched_envelopes = 0;  // envelopes those roots covered
};

using message_handler = std::function<void(const message&)>;
// A request handler returns the reply payload, or nullopt to send no reply.
using request_handler = std::function<std::optional<bytes>(const message&)>;
using rejection_handler = std::function<void(const rejection&)>;

class agent {
 public:
  // Connects and enrols. `key` is the agent's identity (TPM or software); `pol`
  // is the policy the receiver enforces (normally the broker's). Throws
  // enrolment_error when refused or unreachable.
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
  // subscribe registers `handler` for `topic` (exact topic) and waits for the
  // broker's answer: acl_denied if the policy forbids it.
  status subscribe(const std::string& topic, message_handler handler);
  // request sends a request and waits for the reply (or timeout / a refusal).
  result<message> request(const std::string& to, std::string_view content_type, byte_view payload,
                          std::chrono::milliseconds timeout);

  void on_message(message_handler handler);   // direct data envelopes
  void on_request(request_handler handler);
  void on_rejected(rejection_handler handler);

  agent_stats stats() const;

  // raw_access is for tests and the misbehaving example only: it sends envelopes a
  // correct agent never produces, to exercise the broker's and receivers' checks.
  struct raw_access;

  // seal_tweaks alter one envelope while it is sealed (raw_access::send_tweaked).
  struct seal_tweaks {
    std::function<void(envelope_header&)> edit_header;           // before signing
    std::function<void(bytes& signed_part)> edit_after_signing;  // tamper after the signature
    std::function<void(envelope_auth&)> edit_auth;               // before the MACs
    bool omit_hop_mac = false;
    bool omit_e2e_macs = false;
    // Batch mode with wire batching: edits the whole wire batch that carries this
    // envelope, after its MAC (forces a wire batch even for a batch of one).
    std::function<void(std::vector<bytes>& frames)> edit_wire_batch;
  };

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

struct agent::raw_access {
  static status send_tweaked(agent& a, recipient_kind kind, const std::string& to, std::string_view content_type,
                             byte_view payload, const seal_tweaks& tweaks);
  // resend_last sends the exact frames of the last envelope again (a replay).
  static status resend_last(agent& a);
  // send_frames sends arbitrary frames on the agent's broker connection.
  static status send_frames(agent& a, std::vector<bytes> frames);
  // edit_received alters every message the agent receives from the broker (its
  // frames as received, the frame kind first) before any check, as a broker or a
  // path that tampers with what it forwards would. An empty function stops it.
  static void edit_received(agent& a, std::function<void(std::vector<bytes>& frames)> edit);
};

}  // namespace agentbus
