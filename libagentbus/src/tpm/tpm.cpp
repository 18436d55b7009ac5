// tpm.cpp — the TPM worker: one thread owns the ESAPI context; callers queue work
// and wait with a deadline.
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <spdlog/spdlog.h>
#include <thread>
#include <type_traits>

#include "tpm/tpm_device.hpp"

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
  struct counter {
    std::uint64_t count = 0, failures = 0;
    double total_ms = 0;
  };
  std::map<std::string, counter> stats;

  std::thread worker;

  void run(std::promise<void> started) {
    std::unique_ptr<tpm_device> device;
    try {
      device = std::make_unique<tpm_device>(tcti);  // the context is created on this thread
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

  // note_key_traffic turns the device's key cache counters into "key_load" and
  // "key_flush" statistics (what keeping keys loaded saves, and how often the slots
  // force a reload). Called by each job before its caller is answered, so the
  // statistics a caller reads after an operation include it.
  std::uint64_t seen_loads = 0, seen_flushes = 0;  // worker thread only
  double seen_load_ms = 0;
  void note_key_traffic(const tpm_device& d) {
    if (d.key_loads() == seen_loads && d.key_flushes() == seen_flushes) return;
    std::lock_guard lock(stats_mutex);
    stats["key_load"].count += d.key_loads() - seen_loads;
    stats["key_load"].total_ms += d.key_load_ms() - seen_load_ms;
    if (d.key_flushes() != seen_flushes) stats["key_flush"].count += d.key_flushes() - seen_flushes;
    seen_loads = d.key_loads();
    seen_load_ms = d.key_load_ms();
    seen_flushes = d.key_flushes();
  }

  void record(const std::string& op, double ms, bool ok) {
    std::lock_guard lock(stats_mutex);
    auto& c = stats[op];
    ++c.count;
    if (!ok) ++c.failures;
    c.total_ms += ms;
  }

  // call runs `fn` on the worker and waits up to `deadline`.
  template <typename Fn>
  auto call(const char* op, std::chrono::milliseconds deadline, Fn fn) -> decltype(fn(std::declval<tpm_device&>())) {
    using R = decltype(fn(std::declval<tpm_device&>()));
    auto task = std::make_shared<std::packaged_task<R(tpm_device&)>>([this, fn = std::move(fn)](tpm_device& d) mutable {
      if constexpr (std::is_void_v<R>) {
        fn(d);
        note_key_traffic(d);
      } else {
        R r = fn(d);
        note_key_traffic(d);
        return r;
      }
    });
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
      record(op, static_cast<double>(deadline.count()), false);
      spdlog::error("{}", why);
      throw tpm_error(why);
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    try {
      R r = done.get();
      if constexpr (requires { r.ok(); }) record(op, ms, r.ok());
      else record(op, ms, true);
      return r;
    } catch (...) {
      record(op, ms, false);
      throw;
    }
  }
};

tpm::tpm(std::string tcti, tpm_options options) : impl_(std::make_shared<impl>()) {
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
  for (const auto& [op, c] : impl_->stats)
    out.push_back({op, c.count, c.failures, c.count ? c.total_ms / static_cast<double>(c.count) : 0.0});
  return out;
}

}  // namespace agentbus::tpm
