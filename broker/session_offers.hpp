// session_offers.hpp — agent↔agent session offers in flight through the broker, and
// what an agent may make its peers answer (schemas/protocol.md §4.4, issue 12 case 5).
//
// Answering an offer costs the recipient a signature and a TPM ECDH on the thread
// its handlers share, so the broker lets an offer through only
//   - when the offering side may reach the recipient (direct, or a topic it publishes
//     and the recipient follows): `forward`;
//   - or against that direction (a receiver offering a session its sender lost), at
//     most one per kOfferEvery for each (offerer, recipient) pair, answered or not (a
//     receiver spaces its re-offers 2 s apart: a little less here absorbs delays);
// and never while the offerer has unanswered offers to kMaxInFlightPerOfferer
// recipients. One offer per (offerer, recipient) is in flight: a new one replaces it
// (an agent has one outstanding offer per peer), but not within kOfferEvery of it.
// Offers answered at once can follow each other (a rekey right after set-up, a key
// rotation): what that costs the recipient is bounded by its own budget
// (peer_sessions: 16 at once, then one a second). An acceptance goes through only as
// the answer to an offer in flight between the same two agents, the other way
// round. Offers are forgotten when answered, when the broker could not deliver them,
// or after kForgetAfter; with kMaxInFlight in flight new ones are refused (fail
// closed: nobody's offer is pushed out).
//
// Owned by the broker's event-loop thread (accounting); not thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"

namespace agentbus::broker {

class session_offers {
 public:
  using steady = std::chrono::steady_clock;
  static constexpr std::size_t kMaxInFlight = 65'536;
  static constexpr std::size_t kMaxInFlightPerOfferer = 256;
  static constexpr std::size_t kMaxPairs = 65'536;
  static constexpr std::chrono::seconds kForgetAfter{20};
  static constexpr std::chrono::milliseconds kOfferEvery{1500};

  struct offer {
    std::string initiator, responder, curve;
    bool rekey = false;
    steady::time_point at;
    std::multimap<steady::time_point, bytes>::iterator in_order;
  };

  // may_offer: whether `from` may offer `to` a session now (see above); `forward`:
  // from may reach to. Refusals: overloaded (too many in flight, reverse too often).
  status may_offer(const std::string& from, const std::string& to, bool forward, steady::time_point now);
  // answers: `accept` answers an offer in flight from accept.to to accept.sender.
  bool answers(const envelope_header& accept) const;
  // offered records an offer that passed every check and is routed.
  void offered(const envelope_header& h, std::string curve, bool rekey, steady::time_point now);
  // accepted removes and returns the offer `accept` answers, if in flight.
  std::optional<offer> accepted(const envelope_header& accept);
  // undelivered forgets offer `message_id`: the broker could not deliver it.
  void undelivered(const bytes& message_id);

  std::size_t in_flight() const noexcept { return by_id_.size(); }

 private:
  void forget_old(steady::time_point now);
  void erase(std::map<bytes, offer>::iterator it);

  std::map<bytes, offer> by_id_;                       // by offer message id
  std::multimap<steady::time_point, bytes> order_;     // the same ids by arrival
  std::map<std::pair<std::string, std::string>, bytes> by_pair_;  // (offerer, recipient) → its live offer
  std::map<std::string, std::size_t, std::less<>> per_offerer_;
  std::map<std::pair<std::string, std::string>, steady::time_point> last_offer_;  // reverse offers, by (offerer, recipient)
};

}  // namespace agentbus::broker
