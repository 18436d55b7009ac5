// dispatcher.hpp — the agent's dispatch thread (internal): runs handlers, answers
// session offers and completes acceptances (which sign, so they may wait for the
// TPM), and delivers on_rejected reports, one job at a time, in order.
//
// Flow control instead of drops: the queue holds `capacity` jobs (max_pending). The
// receiver hands it no more than room() deliveries and holds the rest; while it holds
// max_pending, the io thread stops reading from the broker, so what arrives waits in
// ZeroMQ's receive queue, and once that fills the broker refuses further envelopes to
// this agent with `overloaded`, which their senders see. A job is dropped only past a
// hard limit (counted and logged: dropped()): reports pushed by other threads while
// the queue is full, in numbers flow control does not bound.
//
// Thread-safe; its mutex is a leaf (no other lock is taken under it). Jobs run on
// its thread without any lock held.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace agentbus::client {

class dispatcher {
 public:
  // on_room runs (on the dispatch thread) when a full queue has room again: it wakes
  // the io thread so it reads from the broker again.
  dispatcher(std::size_t capacity, std::string agent_name, std::function<void()> on_room);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  void start();
  // stop runs what is queued, then stops the thread (jobs pushed meanwhile run too).
  void stop();

  // push queues a job; false only past the hard limit (counted, logged).
  bool push(std::function<void()> job);
  // push_all queues several with one lock and one wake-up; returns how many were dropped.
  std::size_t push_all(std::vector<std::function<void()>>& jobs);

  bool saturated() const;
  // room: how many more jobs fit below the capacity.
  std::size_t room() const;
  std::uint64_t dropped() const noexcept { return dropped_.load(); }
  // hard_limit: the queue never holds more.
  std::size_t hard_limit() const noexcept { return 2 * capacity_ + 4096; }

 private:
  void run();
  const std::size_t capacity_;
  const std::string name_;
  std::function<void()> on_room_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace agentbus::client
