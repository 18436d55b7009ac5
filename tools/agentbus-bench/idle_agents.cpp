// idle_agents.cpp — enrol and hold many software-key agents.
#include "idle_agents.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"

namespace agentbus::bench {

namespace {

// for_each_index runs fn(i) for i in [0, count) on `parallel` threads; the first
// exception stops the others from taking more work and is rethrown.
template <typename Fn>
void for_each_index(int count, int parallel, Fn fn) {
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first;
  std::mutex mu;
  std::vector<std::thread> workers;
  for (int w = 0; w < std::max(1, std::min(parallel, count)); ++w) {
    workers.emplace_back([&] {
      for (int i = next++; i < count && !failed.load(); i = next++) {
        try {
          fn(i);
        } catch (...) {
          std::lock_guard lock(mu);
          if (!first) first = std::current_exception();
          failed = true;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace

idle_agents::idle_agents(const options& opts, std::shared_ptr<const policy> pol) : parallel_(opts.parallel) {
  auto role_suite = pol->suite_for(opts.role);
  if (!role_suite) throw std::runtime_error("idle agents: role " + opts.role + ": " + role_suite.error().to_string());
  const role_policy* rp = pol->find_role(opts.role);
  if (rp && !rp->allow_software)
    throw std::runtime_error("idle agents: role " + opts.role + " refuses software keys in " + pol->source());
  // Each slot is written by exactly one worker; the vector is not resized meanwhile.
  agents_.resize(static_cast<std::size_t>(opts.count));
  try {
    for_each_index(opts.count, opts.parallel, [&](int i) {
      std::shared_ptr<identity_key> key =
          identity_key::create_software(opts.key_dir / fmt::format("idle-{}", i), opts.role, *role_suite);
      agent_options ao;
      ao.name = fmt::format("{}{}", opts.name_prefix, i);
      ao.broker_endpoint = opts.endpoint;
      ao.connect_timeout = std::chrono::seconds(60);
      opts.access->prepare(ao, opts.role, *key);
      agents_[static_cast<std::size_t>(i)] = std::make_unique<agent>(ao, key, pol);
    });
  } catch (...) {
    disconnect_all(opts.parallel);
    throw;
  }
}

std::uint64_t idle_agents::reenrolments() const {
  std::uint64_t n = 0;
  for (const auto& a : agents_)
    if (a) n += a->stats().reenrolments;
  return n;
}

idle_agents::~idle_agents() { disconnect_all(parallel_); }

void idle_agents::disconnect_all(int parallel) {
  // Each destructor says "bye" and joins two threads: in parallel, 1,000 of them
  // take a second or two instead of ten or more (each waits up to
  // one 100 ms poll of its io thread).
  int n = static_cast<int>(agents_.size());
  try {
    for_each_index(n, std::max(parallel, 64), [&](int i) { agents_[static_cast<std::size_t>(i)].reset(); });
  } catch (...) {
    // An agent destructor does not throw; nothing to report from a destructor path.
  }
  agents_.clear();
}

}  // namespace agentbus::bench
