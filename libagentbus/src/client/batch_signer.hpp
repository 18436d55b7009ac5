// batch_signer.hpp — Merkle batch signing for tpm-batch envelopes (internal).
//
// Callers submit envelope digests with a completion; one signer thread takes
// everything submitted so far (up to max_batch), builds the Merkle tree, has the
// identity (TPM) sign the root once, and completes each envelope with the root
// signature and its inclusion path, in submission order.
// Adaptive by default (window 0): when the signer is idle a submission is signed at
// once (a batch of one, so light load costs one TPM signature of latency); while
// the TPM signs, new submissions accumulate and form the next batch (pipelining),
// so under heavy load batches grow and throughput is no longer bounded by the TPM's
// rate. A window > 0 holds the first envelope of a batch back up to that long for
// company (fewer TPM signatures at moderate load, for a TPM that is slow or shared).
// After a batch's completions ran, batch_end runs once on the signer thread: the
// agent queues the batch's envelopes with one lock and one wake-up (or one wire
// batch) instead of one per envelope.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <atomic>
#include <chrono>
#include <thread>

#include "agentbus/envelope.hpp"
#include "agentbus/identity.hpp"

namespace agentbus::client {

class batch_signer {
 public:
  // completion receives the root signature and the envelope's proof, or the
  // failure (a TPM error fails every envelope of that batch).
  using completion = std::function<void(const result<bytes>& signature, batch_proof proof)>;

  batch_signer(std::shared_ptr<identity_key> key, std::size_t max_batch, std::chrono::microseconds window = {},
               std::function<void()> batch_end = {});
  ~batch_signer();  // signs what was submitted, then stops
  batch_signer(const batch_signer&) = delete;
  batch_signer& operator=(const batch_signer&) = delete;

  void submit(bytes digest, completion done);

  std::uint64_t batches() const noexcept { return batches_; }
  std::uint64_t envelopes() const noexcept { return envelopes_; }
  std::size_t largest_batch() const noexcept { return largest_; }

 private:
  void run();

  std::shared_ptr<identity_key> key_;
  std::size_t max_batch_;
  std::chrono::microseconds window_;
  std::function<void()> batch_end_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct item {
    bytes digest;
    completion done;
    std::chrono::steady_clock::time_point submitted;
  };
  std::deque<item> pending_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> batches_{0}, envelopes_{0};
  std::atomic<std::size_t> largest_{0};
  std::thread thread_;
};

}  // namespace agentbus::client
