// identity_worker.hpp — the broker's own TPM work on a thread of its own: signing an
// enrolment CHALLENGE's transcript and the TPM ECDH share of the hop key schedule.
// A TPM call blocks (tens of milliseconds on a chip; as long as a stopped swtpm is
// stopped), so none of it ever runs on the event loop: jobs go in here, results come
// back through an eventfd the event loop polls.
//
// A job whose handshake is gone before the worker reaches it (expired, replaced, its
// connection closed) is skipped: its cancel flag is set by the enrolment that owned
// it, so a flood of abandoned handshakes does not queue TPM time.
//
// Two queues: a credentialed handshake's job (its agent proved a pinned key or a
// token, schemas/protocol.md §3.7) runs before any job of the open pool, so that a
// flood of first-use handshakes in an open role never delays a known agent's.
//
// Threads: submit/take/fd on the event loop; the work on the worker thread. The
// queue and results are under one mutex.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "agentbus/crypto.hpp"
#include "agentbus/identity.hpp"

namespace agentbus::broker {

struct identity_job {
  bytes route;
  std::uint64_t generation = 0;
  bytes transcript;                                   // signed with the broker's identity
  std::optional<crypto::public_key> agent_ephemeral;  // for the broker's static (TPM) ECDH share
  ec_curve curve = ec_curve::p256;
  std::shared_ptr<const std::atomic<bool>> cancelled;
  bool priority = false;  // a credentialed handshake's: before every open-pool job
};

struct identity_result {
  bytes route;
  std::uint64_t generation = 0;
  result<bytes> signature = status{status_code::internal, "not run"};
  std::optional<result<secret_bytes>> static_share;  // set iff the job asked for it
  bool skipped = false;                               // cancelled before it ran
};

class identity_worker {
 public:
  // A queue this long is purged of cancelled jobs before it grows (each queue then
  // holds at most its pool's pending handshakes plus this many).
  static constexpr std::size_t kPurgeAt = 512;
  explicit identity_worker(std::shared_ptr<identity_key> identity);
  ~identity_worker();  // stops after the job in progress
  identity_worker(const identity_worker&) = delete;
  identity_worker& operator=(const identity_worker&) = delete;

  void submit(identity_job job);
  // fd is readable while results wait; take() returns them (and drains the fd).
  int fd() const noexcept { return fd_; }
  std::deque<identity_result> take();

 private:
  void run();
  std::shared_ptr<identity_key> identity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<identity_job> priority_jobs_, jobs_;
  std::deque<identity_result> done_;
  bool stop_ = false;
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace agentbus::broker
