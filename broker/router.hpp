// router.hpp — where an accepted envelope goes (schemas/protocol.md §7): to its
// recipient, or to every subscriber of its topic but the sender; each delivery
// re-MACed for the recipient's hop, each failure a nack to the sender naming the
// recipient. Traffic is counted for the trust graph.
//
// Fan-out as wire batches: the envelopes of one received wire batch are staged in a
// `fanout` that the caller owns and passes to route(), then sent as one wire batch
// per recipient by flush(). Nothing ambient: a route() call without a fanout sends
// at once, whatever happened to an earlier batch.
//
// No sockets of its own (it sends through the outbox), so it runs in a unit test.
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <span>
#include <vector>

#include "accounting.hpp"
#include "connections.hpp"
#include "outbox.hpp"
#include "topics.hpp"

namespace agentbus::broker {

// fanout collects the deliveries of one received wire batch. The envelopes it refers
// to (routed_envelope views) must outlive flush().
class fanout {
 public:
  bool empty() const noexcept { return staged_.empty(); }
  std::size_t size() const noexcept { return staged_.size(); }

 private:
  friend class router;
  struct delivery {
    known_agent* from;
    known_agent* to;
    routed_envelope envelope;
  };
  std::vector<delivery> staged_;
};

// refuse_envelope: the one way an envelope refusal leaves the broker: counted
// (metrics, registry), logged (rate-limited) and nacked to its sender by id.
void refuse_envelope(outbox& out, accounting& acct, known_agent& sender, const bytes& message_id, const status& why,
                     const std::string& recipient, std::optional<std::chrono::nanoseconds> check_time = std::nullopt);

// remote_brokers: where envelopes for agents homed at other brokers of the
// federation go (federation.hpp). Each call's status is what it means for the
// envelope: ok (handed to NATS), not_deliverable (that broker is down or the agent
// offline there), overloaded (the link could not take it).
class remote_brokers {
 public:
  virtual ~remote_brokers() = default;
  virtual status forward_direct(const known_agent& to, const routed_envelope& e) = 0;
  // forward_topic: once per broker with subscribers of the envelope's topic, or with
  // `picks`: its agents picked as queue group members.
  virtual status forward_topic(std::string_view home, const routed_envelope& e, const std::vector<std::string>& picks) = 0;
};

// kMaxPicksPerBroker: queue group members one topic envelope may name for one other
// broker (schemas/federation.md §3: 256).
inline constexpr std::size_t kMaxPicksPerBroker = 256;

class router {
 public:
  router(connections& agents, topics& t, outbox& out, accounting& acct)
      : agents_(agents), topics_(t), out_(out), acct_(acct) {}
  // forward_remote_with: envelopes for agents elsewhere go through `r` (nullptr: a
  // broker alone). An envelope whose sender is homed elsewhere came from its broker
  // and goes to this broker's agents only, never on to a third.
  void forward_remote_with(remote_brokers* r) { remote_ = r; }

  // route sends an accepted envelope from `from` on (staged in `batch` when given).
  // A topic envelope goes to every plain subscriber and to one member of each queue
  // group, picked here when the envelope entered the federation here (`picked`: the
  // members of this broker that the sender's broker picked).
  void route(known_agent& from, const routed_envelope& e, fanout* batch = nullptr,
             std::span<known_agent* const> picked = {});
  // flush sends what `batch` staged: per recipient, in order, at most
  // kWireBatchEnvelopes envelopes and kWireBatchBytes bytes a wire batch (a single
  // envelope as ENV), and accounts for each envelope. `batch` is empty afterwards.
  void flush(fanout& batch);

 private:
  void deliver(known_agent& from, known_agent& to, const routed_envelope& e, fanout* batch);
  void delivered(known_agent& from, const known_agent& to, const envelope_header& h, const status& st);

  connections& agents_;
  topics& topics_;
  outbox& out_;
  accounting& acct_;
  std::vector<known_agent*> recipients_;  // reused per topic envelope
  // Reused per topic envelope: brokers to forward to (with subscribers there or picks),
  // and the queue group members picked.
  std::vector<std::pair<std::string_view, std::vector<std::string>>> homes_;
  std::vector<std::string> picks_;
  remote_brokers* remote_ = nullptr;
};

}  // namespace agentbus::broker
