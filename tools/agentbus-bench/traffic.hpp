// traffic.hpp — what both kinds of run (agentbus_mode.cpp, relay_mode.cpp) do the
// same way: the payload header, pacing, each sender's share and receivers, the
// waits for progress and the measured wall time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

#include "bench.hpp"

namespace agentbus::bench {

// fill_payload writes the header (see kHeaderBytes): kind, the send time, the index.
void fill_payload(bytes& p, std::uint8_t kind, std::uint64_t index);

// pacer spaces one sender's envelopes for --rate (a fixed schedule from the
// start, so a slow send is caught up rather than drifting); no-op at rate 0.
struct pacer {
  pacer(double total_rate, int senders) {
    if (total_rate > 0) interval = std::chrono::duration<double>(static_cast<double>(senders) / total_rate);
  }
  void wait(std::uint64_t k) const {
    if (interval.count() <= 0) return;
    std::this_thread::sleep_until(start + std::chrono::duration_cast<steady::duration>(interval * static_cast<double>(k)));
  }
  std::chrono::duration<double> interval{0};
  steady::time_point start = steady::now();
};

// sender_share is how many of `messages` sender `s` of `senders` sends (the
// remainder goes to the first ones).
std::uint64_t sender_share(std::uint64_t messages, int senders, int s);

// receiver_index is the receiver (0-based among the receivers) of sender `s`'s
// k-th envelope: sender s talks to receivers s, s+senders, ... (round robin).
int receiver_index(int sender, std::uint64_t k, int senders, int receivers);

// run_deadline is now + --timeout.
steady::time_point run_deadline(const bench_options& o);

// wait_for polls `done` every 5 ms until true, the stall timeout without
// progress (as measured by `progress_value`), or the overall deadline.
bool wait_for(const std::function<bool()>& done, const std::function<std::uint64_t()>& progress_value, double stall_s,
              steady::time_point deadline);

// measured_wall_s is the time from t0 (ns) to the last delivery (or to now
// when nothing arrived).
double measured_wall_s(const collector& col, std::int64_t t0);

}  // namespace agentbus::bench
