#include "session/replay_window.hpp"

#include <chrono>
#include <string>

namespace agentbus::session {

status replay_window::check(std::uint64_t seq) const {
  if (!any_ || seq > highest_) return {};
  if (highest_ - seq >= kWidth)
    return {status_code::replayed, "sequence " + std::to_string(seq) + " is older than the replay window"};
  if (seen_.test(seq % kWidth)) return {status_code::replayed, "sequence " + std::to_string(seq) + " already seen"};
  return {};
}

void replay_window::commit(std::uint64_t seq) {
  if (!any_) {
    any_ = true;
    highest_ = seq;
    seen_.reset();
    seen_.set(seq % kWidth);
    return;
  }
  if (seq > highest_) {
    std::uint64_t advance = seq - highest_;
    if (advance >= kWidth) {
      seen_.reset();
    } else {
      for (std::uint64_t s = highest_ + 1; s < seq; ++s) seen_.reset(s % kWidth);
    }
    highest_ = seq;
  }
  seen_.set(seq % kWidth);
}

bool control_sequence::accept(const std::vector<std::uint8_t>& session_id, std::uint64_t seq) {
  for (auto& [sid, high] : highest_) {
    if (sid != session_id) continue;
    if (seq <= high) return false;
    high = seq;
    return true;
  }
  if (highest_.size() >= kSessions) highest_.erase(highest_.begin());
  highest_.emplace_back(session_id, seq);
  return true;
}

status check_timestamp(std::uint64_t ts, std::uint64_t now, std::uint64_t max_skew) {
  std::uint64_t diff = ts > now ? ts - now : now - ts;
  if (diff > max_skew)
    return {status_code::stale, "timestamp is " + std::to_string(diff) + " ms " + (ts > now ? "ahead" : "behind") +
                                    " (limit " + std::to_string(max_skew) + " ms)"};
  return {};
}

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace agentbus::session
