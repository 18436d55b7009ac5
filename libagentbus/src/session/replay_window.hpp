// replay_window.hpp — per-sender sequence window and timestamp skew (internal).
//
// Sequence numbers are per sender and strictly increasing; an agent starts its
// sequence at its start time in microseconds, so a restarted agent continues
// above everything it sent before without storing a counter. The window accepts
// reordering within kWidth and refuses anything seen or older.
// "Check early, commit late": check() has no side effect; commit() is called only
// after the MAC and signature verified, so a forged envelope cannot advance it.
#pragma once

#include <bitset>
#include <cstdint>
#include <utility>
#include <vector>

#include "agentbus/status.hpp"

namespace agentbus::session {

class replay_window {
 public:
  static constexpr std::uint64_t kWidth = 1024;

  status check(std::uint64_t sequence) const;
  void commit(std::uint64_t sequence);
  std::uint64_t highest() const noexcept { return highest_; }

 private:
  bool any_ = false;
  std::uint64_t highest_ = 0;
  std::bitset<kWidth> seen_;  // bit (seq % kWidth) for seq in (highest_-kWidth, highest_]
};

// control_sequence tracks the highest control-message sequence number per
// session id (a control message names its session), so messages sent under the
// previous key during a rekey's grace window are neither lost nor replayable.
class control_sequence {
 public:
  // accept returns true and records `seq` if it is above everything seen in
  // `session_id`. At most kSessions sessions are remembered (oldest forgotten).
  bool accept(const std::vector<std::uint8_t>& session_id, std::uint64_t seq);
  static constexpr std::size_t kSessions = 4;

 private:
  std::vector<std::pair<std::vector<std::uint8_t>, std::uint64_t>> highest_;
};

// check_timestamp refuses an envelope whose timestamp is further than max_skew_ms
// from now (stale, or from a clock running ahead).
status check_timestamp(std::uint64_t timestamp_ms, std::uint64_t now_ms, std::uint64_t max_skew_ms);

// now_ms is the Unix time in milliseconds.
std::uint64_t now_ms();

}  // namespace agentbus::session
