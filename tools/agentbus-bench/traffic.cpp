#include "traffic.hpp"

#include <cstring>

namespace agentbus::bench {

void fill_payload(bytes& p, std::uint8_t kind, std::uint64_t index) {
  p[0] = kind;
  std::int64_t ts = now_ns();
  std::memcpy(p.data() + 8, &ts, 8);
  std::memcpy(p.data() + 16, &index, 8);
}

std::uint64_t sender_share(std::uint64_t messages, int senders, int s) {
  const auto n = static_cast<std::uint64_t>(senders);
  return messages / n + (static_cast<std::uint64_t>(s) < messages % n ? 1 : 0);
}

int receiver_index(int sender, std::uint64_t k, int senders, int receivers) {
  return static_cast<int>((static_cast<std::uint64_t>(sender) + k * static_cast<std::uint64_t>(senders)) %
                          static_cast<std::uint64_t>(receivers));
}

steady::time_point run_deadline(const bench_options& o) {
  return steady::now() + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o.timeout));
}

bool wait_for(const std::function<bool()>& done, const std::function<std::uint64_t()>& progress_value, double stall_s,
              steady::time_point deadline) {
  std::uint64_t last = progress_value();
  auto last_change = steady::now();
  while (!done()) {
    auto now = steady::now();
    if (now >= deadline) return false;
    std::uint64_t v = progress_value();
    if (v != last) {
      last = v;
      last_change = now;
    } else if (now - last_change > std::chrono::duration<double>(stall_s)) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

double measured_wall_s(const collector& col, std::int64_t t0) {
  std::int64_t t_end = col.last_receive_ns.load();
  if (t_end < t0) t_end = now_ns();
  return static_cast<double>(t_end - t0) / 1e9;
}

}  // namespace agentbus::bench
