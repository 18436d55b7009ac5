#include "session_offers.hpp"

namespace agentbus::broker {

void session_offers::erase(std::map<bytes, offer>::iterator it) {
  auto n = per_offerer_.find(it->second.initiator);
  if (n != per_offerer_.end() && --n->second == 0) per_offerer_.erase(n);
  auto pair = by_pair_.find({it->second.initiator, it->second.responder});
  if (pair != by_pair_.end() && pair->second == it->first) by_pair_.erase(pair);
  order_.erase(it->second.in_order);
  by_id_.erase(it);
}

void session_offers::forget_old(steady::time_point now) {
  while (!order_.empty() && now - order_.begin()->first >= kForgetAfter) erase(by_id_.find(order_.begin()->second));
}

status session_offers::may_offer(const std::string& from, const std::string& to, bool forward, steady::time_point now) {
  forget_old(now);
  // A new offer to the same peer takes the old one's place (an agent keeps one
  // outstanding offer per peer for its session_timeout; a nack frees it), but not
  // while the old one is younger than kOfferEvery. An answered one frees the pair:
  // what the recipient then answers is its own budget (16 at once, one a second).
  auto live = by_pair_.find({from, to});
  if (live != by_pair_.end()) {
    auto it = by_id_.find(live->second);
    if (it != by_id_.end() && now - it->second.at < kOfferEvery)
      return {status_code::overloaded, "a session offer from " + from + " to " + to + " is in flight since less than 1.5 s"};
  } else {
    if (by_id_.size() >= kMaxInFlight)
      return {status_code::overloaded, "too many session offers in flight at this broker"};
    if (auto n = per_offerer_.find(from); n != per_offerer_.end() && n->second >= kMaxInFlightPerOfferer)
      return {status_code::overloaded, from + " has unanswered session offers to " + std::to_string(kMaxInFlightPerOfferer) +
                                           " agents: no more until some are answered or 20 s old"};
  }
  if (forward) return {};
  // Against the direction of traffic (a receiver recovering a session, §4.5): one per
  // kOfferEvery per pair, answered or not.
  const auto key = std::make_pair(from, to);
  auto last = last_offer_.find(key);
  if (last != last_offer_.end() && now - last->second < kOfferEvery)
    return {status_code::overloaded, "a session offer to " + to + ", which " + from +
                                         " may not send to, at most one per 1.5 s (protocol.md §4.4)"};
  if (last == last_offer_.end() && last_offer_.size() >= kMaxPairs) {
    // Bounded: forget every pair whose last offer is old enough to be allowed again.
    std::erase_if(last_offer_, [&](const auto& e) { return now - e.second >= kOfferEvery; });
    if (last_offer_.size() >= kMaxPairs) return {status_code::overloaded, "too many session offers at this broker"};
  }
  last_offer_[key] = now;
  return {};
}

bool session_offers::answers(const envelope_header& accept) const {
  auto it = by_id_.find(accept.correlation_id);
  return it != by_id_.end() && it->second.initiator == accept.to && it->second.responder == accept.sender;
}

void session_offers::offered(const envelope_header& h, std::string curve, bool rekey, steady::time_point now) {
  forget_old(now);
  if (by_id_.count(h.message_id) != 0) return;
  if (auto old = by_pair_.find({h.sender, h.to}); old != by_pair_.end()) erase(by_id_.find(old->second));
  if (by_id_.size() >= kMaxInFlight) return;  // may_offer refused it already, unless it raced a replacement
  auto at = order_.emplace(now, h.message_id);
  by_id_.emplace(h.message_id, offer{h.sender, h.to, std::move(curve), rekey, now, at});
  by_pair_[{h.sender, h.to}] = h.message_id;
  ++per_offerer_[h.sender];
}

std::optional<session_offers::offer> session_offers::accepted(const envelope_header& accept) {
  if (!answers(accept)) return std::nullopt;
  auto it = by_id_.find(accept.correlation_id);
  offer o = it->second;
  erase(it);
  return o;
}

void session_offers::undelivered(const bytes& message_id) {
  if (auto it = by_id_.find(message_id); it != by_id_.end()) erase(it);
}

}  // namespace agentbus::broker
