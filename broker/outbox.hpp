// outbox.hpp — every message the broker sends, built here once: control answers
// under the recipient's hop key and its control sequence, forwarded envelopes and
// wire batches re-MACed for the recipient's hop, ERR and REFUSED to connections
// that are not (or not yet) enrolled.
//
// A send that finds the recipient gone closes its connection (ROUTER_MANDATORY:
// unreachable), so nobody is routed to a peer that is no longer there; one that
// finds its queue full reports `overloaded`. Nothing is dropped without a status.
//
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <functional>
#include <span>

#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"
#include "connections.hpp"
#include "metrics.hpp"
#include "session/control.hpp"
#include "transport.hpp"
#include "util/log_limiter.hpp"

namespace agentbus::broker {

// routed_envelope: an accepted envelope as the router hands it on: views into what
// the broker received and decoded, valid while it is being routed.
struct routed_envelope {
  const envelope_header* header = nullptr;
  const envelope_auth* auth = nullptr;
  byte_view signed_part;
  byte_view digest;  // under the sender's envelope hash
  byte_view auth_part;  // as received (what another broker of the federation is given)
};

class outbox {
 public:
  // max_queued_bytes: what a forward may leave queued for one recipient
  // (max_queued_bytes_per_agent); past it the sender is told `overloaded`.
  outbox(transport& t, connections& agents, metrics& m, std::uint64_t max_queued_bytes = std::uint64_t{1} << 30)
      : transport_(t),
        agents_(agents),
        stats_(m),
        batches_out_(&m.get_counter("wire_batches_sent_total")),
        max_queued_bytes_(static_cast<std::int64_t>(max_queued_bytes)) {}

  // relay_nacks_with: a nack for an agent homed at another broker goes there
  // (federation::relay_nack) instead of nowhere.
  using nack_relay = std::function<void(known_agent& to, const bytes& message_id, const status& why, const std::string& recipient)>;
  void relay_nacks_with(nack_relay relay) { relay_ = std::move(relay); }

  // control sends a control answer to an online agent (a no-op for an offline one).
  void control(known_agent& to, const session::control::answer& msg);
  // nack tells `to` that its envelope `message_id` (empty if it did not decode) or a
  // control message was refused or could not be delivered to `recipient`.
  void nack(known_agent& to, const bytes& message_id, const status& why, const std::string& recipient);
  // error answers a connection that is not enrolled (ERR, counted in
  // frames_refused_total{reason}).
  void error(const bytes& route, const status& why, const bytes& message_id = {});
  // refused ends an enrolment (REFUSED).
  void refused(const bytes& route, const status& why);
  // handshake sends a CHALLENGE or WELCOME body.
  net::send_outcome handshake(const bytes& route, std::string_view kind, const bytes& body);

  // forward sends one envelope to `to` under its hop key (the signed part byte for
  // byte); forward_batch several as one wire batch. The status is what it means for
  // the envelopes in it: ok, not_deliverable (offline, or found gone: its
  // connection is closed) or overloaded (its queue is full).
  status forward(known_agent& to, const routed_envelope& e);
  status forward_batch(known_agent& to, std::span<const routed_envelope> group);

 private:
  // send_within_budget sends to `to` unless its queued bytes would pass the budget.
  status send_within_budget(known_agent& to, std::span<const byte_view> parts);
  status outcome_for(known_agent& to, net::send_outcome o);
  transport& transport_;
  connections& agents_;
  metrics& stats_;
  counter* batches_out_;
  std::int64_t max_queued_bytes_;
  util::log_limiter limiter_;
  nack_relay relay_;
};

}  // namespace agentbus::broker
