// log_limiter.hpp — rate-limited logging of refusals (internal).
//
// Hostile or broken peers can make either end refuse thousands of envelopes a
// second; one log line each would flood the journal and cost more than the refusal.
// A limiter lets a burst of lines through per reason and per second, then counts
// what it suppressed and reports the count once the second is over. The broker
// and the receiving library both use it.
//
// Thread-safe (one mutex; the fast path is a map lookup under it).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace agentbus::util {

class log_limiter {
 public:
  // burst: lines allowed per reason per second.
  explicit log_limiter(std::uint64_t burst = 10) : burst_(burst) {}

  // allow returns true when a line for `reason` may be logged now. When a second
  // with suppressed lines ends, the next call for that reason logs (at warn, with
  // `who` as its prefix) how many were suppressed.
  bool allow(std::string_view reason, std::string_view who = {});

 private:
  struct bucket {
    std::chrono::steady_clock::time_point window_start{};
    std::uint64_t count = 0, suppressed = 0;
  };
  const std::uint64_t burst_;
  std::mutex mu_;
  std::map<std::string, bucket, std::less<>> buckets_;
};

}  // namespace agentbus::util
