#include "session_offers.hpp"

namespace agentbus::broker {

void session_offers::erase(std::map<bytes, offer>::iterator it) {
  auto n = per_offerer_.find(it->second.initiator);
  if (n != per_offerer_.end() && --n->second == 0) per_offerer_.erase(n);
  by_id_.erase(it);
}

void session_offers::forget_old(steady::time_point now) {
  while (!order_.empty()) {
    auto it = by_id_.find(order_.front());
    if (it != by_id_.end() && now - it->second.at < kForgetAfter && by_id_.size() < kMaxInFlight) break;
    if (it != by_id_.end()) erase(it);
    order_.pop_front();
  }
}

status session_offers::may_offer(const std::string& from, const std::string& to, bool forward, steady::time_point now) {
  forget_old(now);
  if (auto n = per_offerer_.find(from); n != per_offerer_.end() && n->second >= kMaxInFlightPerOfferer)
    return {status_code::overloaded, std::to_string(kMaxInFlightPerOfferer) + " session offers of " + from +
                                         " are unanswered: no more until they are answered or a minute old"};
  if (forward) return {};
  const auto key = std::make_pair(from, to);
  auto last = last_reverse_.find(key);
  if (last != last_reverse_.end() && now - last->second < kReverseEvery)
    return {status_code::overloaded, "a session offer to " + to + ", which " + from +
                                         " may not send to, at most one per 2 s (protocol.md §4.4)"};
  if (last_reverse_.size() >= kMaxReversePairs) {
    // Bounded: forget every pair whose last offer is old enough to be allowed again.
    for (auto it = last_reverse_.begin(); it != last_reverse_.end();)
      it = now - it->second >= kReverseEvery ? last_reverse_.erase(it) : std::next(it);
    if (last_reverse_.size() >= kMaxReversePairs)
      return {status_code::overloaded, "too many session offers against the direction of traffic"};
  }
  last_reverse_[key] = now;
  return {};
}

bool session_offers::answers(const envelope_header& accept) const {
  auto it = by_id_.find(accept.correlation_id);
  return it != by_id_.end() && it->second.initiator == accept.to && it->second.responder == accept.sender;
}

void session_offers::offered(const envelope_header& h, std::string curve, bool rekey, steady::time_point now) {
  forget_old(now);
  if (by_id_.count(h.message_id) != 0) return;
  by_id_.emplace(h.message_id, offer{h.sender, h.to, std::move(curve), rekey, now});
  order_.push_back(h.message_id);
  ++per_offerer_[h.sender];
}

std::optional<session_offers::offer> session_offers::accepted(const envelope_header& accept) {
  if (!answers(accept)) return std::nullopt;
  auto it = by_id_.find(accept.correlation_id);
  offer o = it->second;
  erase(it);  // its id stays in order_ until it reaches the front
  return o;
}

}  // namespace agentbus::broker
