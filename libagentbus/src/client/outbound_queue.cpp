#include "client/outbound_queue.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <stdexcept>
#include <thread>

#include "session/handshake.hpp"

namespace agentbus::client {

outbound_queue::outbound_queue(std::size_t capacity) : capacity_(capacity) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
}

outbound_queue::~outbound_queue() { ::close(wake_fd_); }

void outbound_queue::wake() const {
  std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void outbound_queue::drain_wake() const {
  std::uint64_t n;
  (void)!::read(wake_fd_, &n, sizeof n);
}

status outbound_queue::push(net::frames f) {
  std::vector<net::frames> one;
  one.push_back(std::move(f));
  if (push_all(one) > 0) return {status_code::overloaded, "outbound queue full"};
  return {};
}

std::size_t outbound_queue::push_all(std::vector<net::frames>& messages) {
  std::size_t queued = 0;
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    was_empty = queue_.empty();
    for (auto& m : messages) {
      if (queue_.size() >= capacity_) break;
      queue_.push_back(std::move(m));
      ++queued;
    }
  }
  if (was_empty && queued > 0) wake();
  return messages.size() - queued;
}

status outbound_queue::push_built(const std::function<net::frames()>& build) {
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= capacity_) return {status_code::overloaded, "outbound queue full"};
    was_empty = queue_.empty();
    queue_.push_back(build());
  }
  if (was_empty) wake();
  return {};
}

std::deque<net::frames> outbound_queue::take_all() {
  std::deque<net::frames> out;
  if (held()) return out;
  std::lock_guard lock(mu_);
  out.swap(queue_);
  return out;
}

void outbound_queue::put_back(std::deque<net::frames>& unsent) {
  if (unsent.empty()) return;
  std::lock_guard lock(mu_);
  for (auto& f : queue_) unsent.push_back(std::move(f));
  queue_.swap(unsent);
  unsent.clear();
}

bool outbound_queue::empty() const {
  std::lock_guard lock(mu_);
  return queue_.empty();
}

bool outbound_queue::wait_drained(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!empty()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void outbound_queue::record_sent(bool on) { recording_.store(on); }

net::frames outbound_queue::last_sent() const {
  std::lock_guard lock(recorded_mu_);
  return recorded_;
}

void outbound_queue::sent(const net::frames& f) {
  if (!recording_.load(std::memory_order_relaxed) || f.empty()) return;
  const std::string_view kind = net::as_string(f[0]);
  if (kind != session::frame::kEnvelope && kind != session::frame::kWireBatch) return;
  std::lock_guard lock(recorded_mu_);
  recorded_ = f;
}

}  // namespace agentbus::client
