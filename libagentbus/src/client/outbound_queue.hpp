// outbound_queue.hpp — messages on their way to the broker (internal).
//
// Callers, the dispatch thread, the batch signer and the broker link push sealed
// messages; the io thread takes the whole queue at each wake-up and sends it. Bounded
// by max_pending: a push that does not fit is refused (overloaded) to whoever pushed,
// never dropped later. Only the push onto an empty queue writes the eventfd (one
// wake-up per burst, not per envelope).
//
// Thread-safe; its mutex is taken after the peer-sessions lock and before the hop
// lock (lock order: client/agent_runtime.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "agentbus/status.hpp"
#include "net/zmq_util.hpp"

namespace agentbus::client {

class outbound_queue {
 public:
  explicit outbound_queue(std::size_t capacity);
  ~outbound_queue();
  outbound_queue(const outbound_queue&) = delete;
  outbound_queue& operator=(const outbound_queue&) = delete;

  // push queues one message; overloaded when full.
  status push(net::frames f);
  // push_all queues several under one lock with one wake-up; returns how many did
  // not fit (the last ones).
  std::size_t push_all(std::vector<net::frames>& messages);
  // push_built queues the message `build` makes, built under the queue's lock, so
  // that whatever it numbers (control sequence numbers) is numbered in queue order.
  status push_built(const std::function<net::frames()>& build);

  // take_all hands the io thread everything queued; put_back returns what the socket
  // refused (at its high-water mark) to the front, in order.
  std::deque<net::frames> take_all();
  void put_back(std::deque<net::frames>& unsent);
  bool empty() const;
  // wait_drained waits (briefly, polling) until the io thread took everything.
  bool wait_drained(std::chrono::milliseconds timeout) const;

  // The io thread polls this fd; a push onto an empty queue makes it readable.
  int wake_fd() const noexcept { return wake_fd_; }
  void wake() const;
  void drain_wake() const;

  // Testing (agentbus_testing only): hold stops the io thread from taking messages
  // (they stay queued, so the queue can be filled); record_sent keeps a copy of the
  // last envelope or wire batch the io thread sent (off: nothing is kept).
  void hold(bool on) noexcept { held_.store(on); }
  bool held() const noexcept { return held_.load(std::memory_order_relaxed); }
  void record_sent(bool on);
  net::frames last_sent() const;
  // sent: the io thread sent `f`.
  void sent(const net::frames& f);

 private:
  const std::size_t capacity_;
  int wake_fd_ = -1;
  mutable std::mutex mu_;
  std::deque<net::frames> queue_;
  std::atomic<bool> held_{false};
  std::atomic<bool> recording_{false};
  mutable std::mutex recorded_mu_;
  net::frames recorded_;
};

}  // namespace agentbus::client
