#include "identity_worker.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <stdexcept>

namespace agentbus::broker {

identity_worker::identity_worker(std::shared_ptr<identity_key> identity) : identity_(std::move(identity)) {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("eventfd failed");
  thread_ = std::thread([this] { run(); });
}

identity_worker::~identity_worker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

void identity_worker::submit(identity_job job) {
  {
    std::lock_guard lock(mu_);
    auto& queue = job.priority ? priority_jobs_ : jobs_;
    // Jobs of handshakes that went away are skipped when reached; while the other
    // queue keeps the worker busy they would pile up: dropped here instead.
    if (queue.size() >= kPurgeAt)
      std::erase_if(queue, [](const identity_job& j) { return j.cancelled && j.cancelled->load(); });
    queue.push_back(std::move(job));
  }
  cv_.notify_one();
}

std::deque<identity_result> identity_worker::take() {
  std::uint64_t n;
  (void)!::read(fd_, &n, sizeof n);
  std::deque<identity_result> out;
  std::lock_guard lock(mu_);
  out.swap(done_);
  return out;
}

void identity_worker::run() {
  for (;;) {
    identity_job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !priority_jobs_.empty() || !jobs_.empty(); });
      if (stop_) return;
      auto& queue = priority_jobs_.empty() ? jobs_ : priority_jobs_;
      job = std::move(queue.front());
      queue.pop_front();
    }
    identity_result r;
    r.route = std::move(job.route);
    r.generation = job.generation;
    if (job.cancelled && job.cancelled->load()) {
      r.skipped = true;
    } else {
      try {
        r.signature = identity_->sign_message(job.transcript);
        if (job.agent_ephemeral) r.static_share = identity_->static_ecdh(job.curve, *job.agent_ephemeral);
      } catch (const std::exception& e) {
        r.signature = status{status_code::tpm_unavailable, e.what()};
      }
    }
    {
      std::lock_guard lock(mu_);
      done_.push_back(std::move(r));
    }
    std::uint64_t one = 1;
    (void)!::write(fd_, &one, sizeof one);
  }
}

}  // namespace agentbus::broker
