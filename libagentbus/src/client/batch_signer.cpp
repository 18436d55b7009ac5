#include "client/batch_signer.hpp"

#include <spdlog/spdlog.h>

#include "envelope/merkle.hpp"

namespace agentbus::client {

batch_signer::batch_signer(std::shared_ptr<identity_key> key, std::size_t max_batch, std::chrono::microseconds window,
                           std::function<void()> batch_end)
    : key_(std::move(key)),
      max_batch_(std::max<std::size_t>(1, max_batch)),
      window_(std::max(window, std::chrono::microseconds::zero())),
      batch_end_(std::move(batch_end)),
      thread_([this] { run(); }) {}

batch_signer::~batch_signer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void batch_signer::submit(bytes digest, completion done) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    pending_.push_back({std::move(digest), std::move(done), std::chrono::steady_clock::now()});
    // The signer waits only for a first envelope, or (with a window) for a full batch:
    // other submissions need no wake-up (a futex call per envelope otherwise).
    wake = pending_.size() == 1 || pending_.size() == max_batch_;
  }
  if (wake) cv_.notify_one();
}

void batch_signer::run() {
  const hash_algorithm h = key_->key_suite().envelope_hash;
  for (;;) {
    std::vector<item> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, nothing left to sign
      if (window_.count() > 0) {
        // Wait for company until the oldest envelope has waited `window`, the batch is
        // full, or we are stopping (then what is there is signed at once).
        const auto deadline = pending_.front().submitted + window_;
        cv_.wait_until(lock, deadline, [&] { return stopping_ || pending_.size() >= max_batch_; });
      }
      // Everything that queued while the previous root was being signed forms this batch.
      std::size_t n = std::min(pending_.size(), max_batch_);
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    std::vector<bytes> digests;
    digests.reserve(batch.size());
    for (auto& it : batch) digests.push_back(std::move(it.digest));  // not needed after the tree
    merkle::tree tree = merkle::tree::build(h, std::move(digests));
    result<bytes> signature = status{status_code::internal, "not signed"};
    try {
      signature = key_->sign_digest(tree.root());  // the one TPM signature for the whole batch
    } catch (const std::exception& e) {
      signature = status{status_code::tpm_unavailable, e.what()};
    }
    if (!signature) spdlog::error("batch signature over {} envelopes failed: {}", batch.size(), signature.error().to_string());
    ++batches_;
    envelopes_ += batch.size();
    if (batch.size() > largest_) largest_ = batch.size();
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(signature, tree.proof(static_cast<std::uint32_t>(i)));
    if (batch_end_) batch_end_();
  }
}

}  // namespace agentbus::client
