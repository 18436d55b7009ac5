// accounting.hpp — what the broker counts and remembers about traffic: metrics,
// refusal counters and traffic per agent pair (flushed to the registry in one
// transaction a second), last-seen times, and the trust edges that session offers
// and acceptances establish (schemas/registry.md §2, schemas/protocol.md §7).
//
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"
#include "connections.hpp"
#include "metrics.hpp"
#include "registry.hpp"
#include "session_offers.hpp"
#include "util/log_limiter.hpp"

namespace agentbus::broker {

class accounting {
 public:
  accounting(metrics& m, registry& reg);

  // refused_envelope counts one envelope refused at publish (check_time: how long its
  // checks took) or undeliverable after them (no check time): envelopes_total{outcome},
  // publish_check_seconds{outcome}, the (agent, reason) registry counter.
  void refused_envelope(const std::string& agent, const status& why,
                        std::optional<std::chrono::nanoseconds> check_time = std::nullopt);
  // passed_checks observes how long an accepted envelope's checks took; accepted
  // counts an envelope routed (envelopes_total{outcome="accepted"}).
  void passed_checks(std::chrono::nanoseconds check_time) { accepted_seconds_->observe(check_time); }
  void accepted() { accepted_total_->increment(); }
  // refusal counts a refusal of `agent` (enrolment, control) in the registry only.
  void refusal(const std::string& agent, const status& why);
  // seen marks `a` as active now; traffic counts one envelope from `a` to `to` (an
  // agent name), to be flushed.
  void seen(known_agent& a);
  void traffic(known_agent& from, std::string_view to);
  // note_session_control records trust edges: an offer is remembered (bounded), the
  // acceptance that answers it records (or rekeys) the edge in the registry.
  void note_session_control(const envelope_header& h, const connections& agents);

  // flush writes the pending deltas in one transaction; on failure they are kept for
  // the next attempt (registry_errors_total counts it) and the bus goes on.
  void flush(connections& agents);

  // log_allowed: whether a refusal line for `reason` may be logged now.
  bool log_allowed(std::string_view reason) { return limiter_.allow(reason); }

  metrics& stats() noexcept { return stats_; }
  // offers: the session offers in flight (publish intake asks it what may pass).
  session_offers& offers() noexcept { return offers_; }
  counter& wire_batches_in() noexcept { return *wire_batches_in_; }

 private:
  metrics& stats_;
  registry& reg_;
  util::log_limiter limiter_;
  std::map<std::pair<std::string, std::string>, registry::refusal_delta> refusals_;
  std::set<std::string, std::less<>> dirty_;  // agents with traffic or a last-seen time to flush
  session_offers offers_;
  // The hottest series, looked up once.
  counter* accepted_total_;
  histogram* accepted_seconds_;
  counter* wire_batches_in_;
};

}  // namespace agentbus::broker
