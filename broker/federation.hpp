// federation.hpp — this broker as one of several sharing a NATS cluster
// (schemas/federation.md, docs/federation.md).
//
// What it keeps: a mirror of the directory — every other broker's agents as
// known_agent records homed there (name, role, key, evidence, subscriptions), the
// liveness of every broker (when its heartbeat last arrived) — and this broker's own
// agents written back to the directory whenever they enrol, subscribe, unsubscribe or
// leave.
//
// What it does with them:
//   - the router sends envelopes for agents homed elsewhere, and topic envelopes for
//     subscribers elsewhere, to their brokers' subjects (forward_direct/forward_topic);
//   - an envelope from another broker is checked again here, in the protocol's one
//     order (publish_intake::on_federated: signature or batch proof, suite, ACL,
//     replay), never on that broker's word, and delivered to local recipients only;
//   - a refusal of an envelope whose sender lives elsewhere goes back to the sender's
//     broker, which nacks the sender (relay_nack);
//   - every envelope forwarded carries a number; the receiving broker confirms the
//     numbers it got (receipts, batched per event-loop turn), and an envelope
//     unconfirmed after kReceiptTimeout is reported to its sender as `timeout`
//     ("may not have been delivered"): NATS core is at-most-once and drops what a
//     lost route or a slow consumer cannot carry, and nothing may vanish unreported;
//   - a remote agent present (its record online, its broker live) counts for member
//     lists and peer lookups as a local one does; a key change in its record is
//     announced to local agents (key_changed), a revocation record revokes it here.
//   - a HELLO for a name online at another live broker is refused
//     `enrolled_elsewhere`; two brokers enrolling one name at once are decided by the
//     directory's compare-and-set, and the loser disconnects its agent.
//
// Owned by the broker's event-loop thread; not thread-safe. The NATS link's threads
// only queue for it (nats_link.hpp).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "accounting.hpp"
#include "agentbus/policy.hpp"
#include "broker_config.hpp"
#include "connections.hpp"
#include "control_channel.hpp"
#include "nats_link.hpp"
#include "outbox.hpp"
#include "publish_intake.hpp"
#include "registry.hpp"
#include "router.hpp"
#include "topics.hpp"
#include "util/log_limiter.hpp"

namespace agentbus::broker {

class federation final : public remote_brokers {
 public:
  static constexpr std::chrono::seconds kReceiptTimeout{3};
  // At most this many envelopes await a receipt from one broker; past it, forwards to
  // it are refused `overloaded` (the budget: about 100 bytes each, 6.5 MB a broker).
  static constexpr std::size_t kMaxUnconfirmed = 65536;
  // How far a heartbeat's writer clock may trail this broker's, beyond
  // stale_after_ms, for the heartbeat to count (brokers' clocks are kept in step, as
  // agents' are for envelope timestamps).
  static constexpr std::uint64_t kClockAllowanceMs = 2000;

  federation(const broker_config& cfg, const policy& pol, connections& agents, topics& t, control_channel& control,
             publish_intake& intake, outbox& out, registry& reg, metrics& m, nats_link& link);
  ~federation();

  int fd() const noexcept { return link_.fd(); }
  // drain handles what the NATS link queued: envelopes and nacks from other brokers,
  // directory updates. The event loop calls flush() after it, every turn.
  void drain();
  // sweep (each second): brokers whose heartbeat stopped are presumed down: their
  // agents leave member lists and are refused as not_deliverable; records of this
  // broker's agents that changed are written.
  void sweep(std::chrono::steady_clock::time_point now);
  // flush writes the records of local agents that changed during this turn.
  void flush();

  // Enrolment: not ok (enrolled_elsewhere) when `name` is online at another live broker.
  status may_enrol(const std::string& name) const;

  // local_opened: `a` enrolled here. A record that was another broker's (that broker
  // is down, or the agent was offline there: may_enrol let it through) becomes this
  // broker's; its directory write may replace that broker's record.
  void local_opened(known_agent& a);
  // What changes a local agent's record: it enrolled (opened), subscribed or
  // unsubscribed, or its connection closed.
  void local_changed(const known_agent& a);
  // An operator revoked `name` here (fingerprint: its key's, "" if unknown).
  void revoked_here(const std::string& name, const std::string& fingerprint, const std::string& reason);

  // remote_brokers (the router)
  status forward_direct(const known_agent& to, const routed_envelope& e) override;
  status forward_topic(std::string_view home, const routed_envelope& e, const std::vector<std::string>& picks) override;
  // The outbox's relay for nacks to agents homed elsewhere.
  void relay_nack(const known_agent& sender, const bytes& message_id, const status& why, const std::string& recipient);

  // view: the brokers and where agents live (the admin `federation` answer,
  // schemas/admin.md).
  nlohmann::json view() const;
  // tamper_with_forwards: --insecure-tamper-federation (tests only).
  void tamper_with_forwards() { tamper_ = true; }

 private:
  // send_forward: numbers `e` for broker `home`, publishes it on `subject` and waits
  // for its receipt (recipient: what a timeout names).
  // send_forward: numbers `e` for broker `home` and adds it to this turn's message on
  // `subject` (published when full, else at flush); it then awaits its receipt
  // (recipient: what a timeout names).
  status send_forward(std::string_view home, const std::string& subject, const routed_envelope& e,
                      const std::string& recipient, const std::vector<std::string>& picks = {});
  // publish_pending sends the message being built for `subject`; a failure nacks the
  // senders of the envelopes in it.
  void publish_pending(std::string subject);
  void on_receipt(const std::string& from_broker, byte_view data);
  void send_receipts();
  void expire_unconfirmed(std::chrono::steady_clock::time_point now);
  void on_inbox(const nats_link::inbox_message& m);
  // on_forwarded: `to_agent`: the recipient an agent subject names ("" on a topic
  // subject).
  void on_forwarded(const std::string& from_broker, byte_view data, bool topic, const std::string& to_agent);
  void on_relayed_nack(const std::string& from_broker, byte_view data);
  void on_directory(const nats_link::directory_update& u);
  void on_agent_record(const federation_wire::agent_record& r, std::uint64_t revision);
  void on_revocation(const federation_wire::revocation_record& r);
  bool live(std::string_view broker) const;
  // set_presence puts a remote agent's subscriptions in the topic table, or takes them
  // out (its record says offline, or its broker is down), telling topic watchers.
  void set_presence(known_agent& a, bool present);
  // forget_remote: what this broker knew of a remote agent no longer holds (revoked,
  // or refused by this broker's policy): out of member lists, its key forgotten, its
  // record forgettable.
  void forget_remote(known_agent& a);
  void nack_to(const std::string& broker, const std::string& sender, const bytes& message_id, const status& why,
               const std::string& recipient);

  const broker_config& cfg_;
  const policy& pol_;
  connections& agents_;
  topics& topics_;
  control_channel& control_;
  publish_intake& intake_;
  outbox& out_;
  registry& reg_;
  metrics& stats_;
  nats_link& link_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> heartbeats_;  // broker → last heartbeat
  std::map<std::string, bool, std::less<>> was_live_;
  std::map<std::string, std::string, std::less<>> take_over_;  // local name → broker it was taken from
  std::set<std::string, std::less<>> changed_;                  // local agents whose record is due
  std::set<std::string, std::less<>> revoked_;                  // "name/fingerprint" revoked in the federation
  std::map<std::string, std::uint64_t, std::less<>> heartbeat_written_;  // broker → written_ms of its last heartbeat
  counter* sent_direct_;
  counter* sent_topic_;
  counter* sent_nack_;
  util::log_limiter limiter_;
  bool tamper_ = false;
  // Receipts. Sent: per destination broker, the next number (from a random start) and
  // what awaits confirmation. Received: per origin broker, the numbers got this turn.
  struct unconfirmed {
    std::string sender, recipient;
    bytes message_id;
    std::chrono::steady_clock::time_point sent;
  };
  struct outgoing {
    std::uint64_t next_seq = 0;
    std::map<std::uint64_t, unconfirmed> waiting;
  };
  std::map<std::string, outgoing, std::less<>> outgoing_;
  std::map<std::string, std::vector<std::uint64_t>, std::less<>> to_confirm_;
  // This turn's messages, per subject: the envelopes forwarded on it together.
  struct pending_message {
    std::string home;
    federation_wire::forwarded_writer writer;
    std::vector<std::uint64_t> seqs;
  };
  std::map<std::string, pending_message, std::less<>> pending_;
};

}  // namespace agentbus::broker
