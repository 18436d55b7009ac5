#include "util/log_limiter.hpp"

#include <spdlog/spdlog.h>

namespace agentbus::util {

bool log_limiter::allow(std::string_view reason, std::string_view who) {
  const auto now = std::chrono::steady_clock::now();
  std::uint64_t report = 0;
  bool allowed;
  {
    std::lock_guard lock(mu_);
    auto it = buckets_.find(reason);
    // The set of reasons is fixed (status code names and a few kinds of event), so
    // the map stays small whatever the peers send.
    if (it == buckets_.end()) it = buckets_.emplace(std::string(reason), bucket{}).first;
    bucket& b = it->second;
    if (now - b.window_start > std::chrono::seconds(1)) {
      report = b.suppressed;
      b = {now, 0, 0};
    }
    allowed = ++b.count <= burst_;
    if (!allowed) ++b.suppressed;
  }
  if (report > 0) {
    if (who.empty()) spdlog::warn("{} further '{}' lines not logged in the last second", report, reason);
    else spdlog::warn("[{}] {} further '{}' lines not logged in the last second", who, report, reason);
  }
  return allowed;
}

}  // namespace agentbus::util
