// tpm.cpp — the TPM worker: one thread owns the ESAPI context; callers queue work
// and wait with a deadline.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <spdlog/spdlog.h>
#include <thread>

#include "tpm/tpm_device.hpp"
#include "tpm/tss_log.hpp"

namespace agentbus::tpm {

hash_algorithm scheme_hash_for(hash_algorithm digest_hash) noexcept {
  switch (digest_hash) {
    case hash_algorithm::sha3_256: return hash_algorithm::sha256;
    case hash_algorithm::sha3_384: return hash_algorithm::sha384;
    case hash_algorithm::sha3_512: return hash_algorithm::sha512;
    default: return digest_hash;
  }
}

// impl is shared between the tpm object and its worker thread, so that a worker
// stuck in a blocking ESAPI call can be abandoned (detached) without dangling.
struct tpm::impl {
  std::string tcti;
  tpm_options options;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::function<void(tpm_device&)>> queue;
  bool stopping = false;
  std::string broken;  // non-empty once a deadline was missed: fail closed from then on

  mutable std::mutex stats_mutex;
  std::map<std::string, tpm_op_stats, std::less<>> stats;  // by operation

  std::thread worker;

  void run(std::promise<void> started) {
    std::unique_ptr<tpm_device> device;
    try {
      device = std::make_unique<tpm_device>(tcti);  // the context is created on this thread
      device->observe_key_traffic([this](const char* op, std::chrono::nanoseconds took, bool ok) { record(op, took, ok); });
      started.set_value();
    } catch (...) {
      started.set_exception(std::current_exception());
      return;
    }
    for (;;) {
      std::function<void(tpm_device&)> job;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping and drained
        job = std::move(queue.front());
        queue.pop_front();
      }
      job(*device);
    }
  }

  void record(std::string_view op, std::chrono::nanoseconds took, bool ok) {
    const auto bucket = static_cast<std::size_t>(
        std::lower_bound(tpm_latency_bounds.begin(), tpm_latency_bounds.end(), took,
                         [](std::chrono::microseconds bound, std::chrono::nanoseconds t) { return bound < t; }) -
        tpm_latency_bounds.begin());
    std::lock_guard lock(stats_mutex);
    auto it = stats.find(op);
    if (it == stats.end()) it = stats.emplace(std::string(op), tpm_op_stats{std::string(op)}).first;
    tpm_op_stats& s = it->second;
    ++s.count;
    if (!ok) ++s.failures;
    s.total_time += took;
    ++s.latency_buckets[bucket];
  }

  // call runs `fn` on the worker and waits up to `deadline`.
  template <typename Fn>
  auto call(const char* op, std::chrono::milliseconds deadline, Fn fn) -> decltype(fn(std::declval<tpm_device&>())) {
    using R = decltype(fn(std::declval<tpm_device&>()));
    auto task = std::make_shared<std::packaged_task<R(tpm_device&)>>(std::move(fn));
    std::future<R> done = task->get_future();
    {
      std::lock_guard lock(mutex);
      if (!broken.empty()) throw tpm_error(broken);
      queue.emplace_back([task](tpm_device& d) { (*task)(d); });
    }
    wake.notify_one();
    auto start = std::chrono::steady_clock::now();
    if (done.wait_for(deadline) != std::future_status::ready) {
      std::string why = "TPM at " + tcti + " did not answer " + op + " within " + std::to_string(deadline.count()) +
                        " ms; refusing further TPM use in this process";
      {
        std::lock_guard lock(mutex);
        broken = why;
      }
      record(op, deadline, false);
      drain_tss_log();
      spdlog::error("{}", why);
      throw tpm_error(why);
    }
    const std::chrono::nanoseconds took = std::chrono::steady_clock::now() - start;
    try {
      R r = done.get();
      if constexpr (requires { r.ok(); }) record(op, took, r.ok());
      else record(op, took, true);
      return r;
    } catch (...) {
      record(op, took, false);
      drain_tss_log();  // the lines that explain it come before the caller's report
      throw;
    }
  }
};

tpm::tpm(std::string tcti, tpm_options options) : impl_(std::make_shared<impl>()) {
  route_tss_log();  // before the first ESAPI context: tpm2-tss reads TSS2_LOGFILE once
  impl_->tcti = std::move(tcti);
  impl_->options = options;
  std::promise<void> started;
  auto ready = started.get_future();
  impl_->worker = std::thread([state = impl_, p = std::move(started)]() mutable { state->run(std::move(p)); });
  if (ready.wait_for(options.deadline) != std::future_status::ready) {
    // A TCTI that accepts the connection and then never answers: abandon the
    // worker (it owns a reference to the state) and fail.
    {
      std::lock_guard lock(impl_->mutex);
      impl_->stopping = true;  // should it ever return, the worker exits at once
    }
    impl_->worker.detach();
    throw tpm_error("TPM at " + impl_->tcti + " did not answer within " + std::to_string(options.deadline.count()) + " ms");
  }
  try {
    ready.get();
  } catch (...) {
    impl_->worker.join();
    drain_tss_log();
    throw;
  }
}

tpm::~tpm() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (!impl_->worker.joinable()) return;
  bool stuck;
  {
    std::lock_guard lock(impl_->mutex);
    stuck = !impl_->broken.empty();
  }
  // A worker blocked inside ESAPI may never return: detach it rather than hang
  // the process on shutdown. It holds its own reference to the shared state.
  if (stuck) impl_->worker.detach();
  else impl_->worker.join();
}

const std::string& tpm::tcti() const noexcept { return impl_->tcti; }

tpm_info tpm::info() {
  return impl_->call("info", impl_->options.deadline, [](tpm_device& d) { return d.info(); });
}

status tpm::check_key_type(const key_type& type) {
  return impl_->call("test_parms", impl_->options.deadline, [type](tpm_device& d) { return d.check_key_type(type); });
}

result<key_blob> tpm::create_signing_key(const key_type& type, hash_algorithm digest_hash) {
  return impl_->call("create_key", impl_->options.create_deadline,
                     [type, digest_hash](tpm_device& d) { return d.create_signing_key(type, digest_hash); });
}

result<key_blob> tpm::create_ecdh_key(ec_curve curve) {
  return impl_->call("create_key", impl_->options.create_deadline,
                     [curve](tpm_device& d) { return d.create_ecdh_key(curve); });
}

result<bytes> tpm::sign_digest(const key_blob& key, byte_view digest) {
  // The job runs on the worker while this thread waits, so borrowing is safe —
  // unless the deadline passes, after which the worker may still read them: copy.
  return impl_->call("sign", impl_->options.deadline, [key, d = bytes(digest.begin(), digest.end())](tpm_device& dev) {
    return dev.sign_digest(key, d);
  });
}

result<secret_bytes> tpm::ecdh_zgen(const key_blob& key, const crypto::public_key& peer) {
  return impl_->call("ecdh_zgen", impl_->options.deadline,
                     [key, peer](tpm_device& d) { return d.ecdh_zgen(key, peer); });
}

result<endorsement> tpm::read_endorsement() {
  return impl_->call("read_endorsement", impl_->options.deadline, [](tpm_device& d) { return d.read_endorsement(); });
}

result<key_blob> tpm::create_attestation_key() {
  return impl_->call("create_key", impl_->options.create_deadline, [](tpm_device& d) { return d.create_attestation_key(); });
}

result<certification> tpm::certify(const key_blob& key, const key_blob& ak, byte_view qualifying_data) {
  return impl_->call("certify", impl_->options.deadline,
                     [key, ak, q = bytes(qualifying_data.begin(), qualifying_data.end())](tpm_device& d) {
                       return d.certify(key, ak, q);
                     });
}

result<secret_bytes> tpm::activate_credential(const key_blob& ak, byte_view id_object, byte_view encrypted_secret) {
  return impl_->call("activate_credential", impl_->options.deadline,
                     [ak, id = bytes(id_object.begin(), id_object.end()),
                      enc = bytes(encrypted_secret.begin(), encrypted_secret.end())](tpm_device& d) {
                       return d.activate_credential(ak, id, enc);
                     });
}

void tpm::pcr_extend(unsigned index, hash_algorithm bank, byte_view digest) {
  impl_->call("pcr_extend", impl_->options.deadline, [index, bank, d = bytes(digest.begin(), digest.end())](tpm_device& dev) {
    dev.pcr_extend(index, bank, d);
    return true;
  });
}

bytes tpm::pcr_read(unsigned index, hash_algorithm bank) {
  return impl_->call("pcr_read", impl_->options.deadline, [index, bank](tpm_device& d) { return d.pcr_read(index, bank); });
}

bytes tpm::storage_key_name() {
  return impl_->call("get_name", impl_->options.deadline, [](tpm_device& d) { return d.storage_key_name(); });
}

std::vector<tpm_op_stats> tpm::stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  std::vector<tpm_op_stats> out;
  out.reserve(impl_->stats.size());
  for (const auto& [op, s] : impl_->stats) out.push_back(s);
  return out;
}

}  // namespace agentbus::tpm
