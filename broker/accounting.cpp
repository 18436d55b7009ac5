#include "accounting.hpp"

#include <spdlog/spdlog.h>

#include "admin_protocol.hpp"
#include "session/handshake.hpp"
#include "session/replay_window.hpp"

namespace agentbus::broker {
accounting::accounting(metrics& m, registry& reg)
    : stats_(m),
      reg_(reg),
      accepted_total_(&m.get_counter("envelopes_total", "accepted")),
      accepted_seconds_(&m.get_histogram("publish_check_seconds", "accepted")),
      wire_batches_in_(&m.get_counter("wire_batches_total")) {}

void accounting::refused_envelope(const std::string& agent, const status& why,
                                  std::optional<std::chrono::nanoseconds> check_time) {
  const std::string_view code = status_code_name(why.code());
  stats_.increment("envelopes_total", code);
  if (check_time) stats_.observe("publish_check_seconds", code, *check_time);
  refusal(agent, why);
}

void accounting::refusal(const std::string& agent, const status& why) {
  auto& d = refusals_[{agent, std::string(status_code_name(why.code()))}];
  d.agent = agent;
  d.reason = status_code_name(why.code());
  d.detail = why.detail().substr(0, 256);
  d.count += 1;
  d.at = now_unix_ms();
}

void accounting::seen(known_agent& a) {
  a.seen_ms = now_unix_ms();
  if (!a.seen_dirty) {
    a.seen_dirty = true;
    dirty_.insert(a.name);
  }
}

void accounting::traffic(known_agent& from, std::string_view to) {
  auto it = from.traffic_to.find(to);
  if (it == from.traffic_to.end()) it = from.traffic_to.emplace(std::string(to), 0).first;
  ++it->second;
  if (!from.seen_dirty) seen(from);
}

void accounting::note_session_control(const envelope_header& h, const connections& agents) {
  if (h.content_type == session::kOfferContentType) {
    auto offer = session::decode_offer(h.payload);
    if (!offer) return;
    offers_.offered(h, offer->curve, !offer->rekey_of.empty(), std::chrono::steady_clock::now());
    return;
  }
  if (h.content_type != session::kAcceptContentType) return;
  auto o = offers_.accepted(h);
  if (!o) return;
  const known_agent* i = agents.find(o->initiator);
  const known_agent* r = agents.find(o->responder);
  // A session with an agent homed at another broker is not an edge of this registry
  // (whose edges join its own agents).
  if (i && r && (!i->remote() || i->online()) && (!r->remote() || r->online())) {
    std::string mac = "hmac-" + std::string(hash_name(i->agent_suite.mac_hash));
    if (r->agent_suite.mac_hash != i->agent_suite.mac_hash) mac += "/hmac-" + std::string(hash_name(r->agent_suite.mac_hash));
    try {
      reg_.record_session(o->initiator, o->responder, o->curve, mac, now_unix_ms(), o->rekey);
    } catch (const std::exception& e) {
      stats_.increment("registry_errors_total");
      spdlog::error("registry: cannot record the session {} <-> {}: {}", o->initiator, o->responder, e.what());
    }
  }
}

void accounting::flush(connections& agents) {
  if (dirty_.empty() && refusals_.empty()) return;
  std::vector<registry::traffic_delta> traffic;
  std::vector<registry::refusal_delta> refusals;
  std::vector<registry::seen_delta> seen;
  for (const auto& name : dirty_) {
    const known_agent* a = agents.find(name);
    if (!a) continue;
    // The registry holds this broker's agents; traffic with agents homed at other
    // brokers of the federation is theirs to record (the edges reference agents).
    if (a->remote() && !a->online()) continue;
    for (const auto& [to, n] : a->traffic_to)
      if (const known_agent* t = agents.find(to); t == nullptr || !t->remote() || t->online())
        traffic.push_back({name, to, n});
    if (a->seen_dirty) seen.push_back({name, a->seen_ms});
  }
  for (const auto& [k, d] : refusals_) refusals.push_back(d);
  try {
    reg_.flush(traffic, refusals, seen);
  } catch (const std::exception& e) {
    // Kept for the next attempt; the bus goes on.
    stats_.increment("registry_errors_total");
    spdlog::error("registry flush failed (will retry): {}", e.what());
    return;
  }
  for (const auto& name : dirty_) {
    if (known_agent* a = agents.find(name)) {
      a->traffic_to.clear();
      a->seen_dirty = false;
    }
  }
  dirty_.clear();
  refusals_.clear();
}

}  // namespace agentbus::broker
