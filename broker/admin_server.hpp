// admin_server.hpp — the broker's admin endpoint (schemas/admin.md): a REP socket
// answering the text requests `metrics` and `stats` and the JSON admin protocol
// (read-only queries, operator-signed changes).
//
// It runs on a thread of its own, so that no admin request holds up routing (issue
// 12, case 3: reading 170,000 refusal rows on the event loop stopped it for 0.7 s).
// That thread owns the REP socket and a registry connection of its own (SQLite WAL:
// its reads never block the event loop's writes), and answers reads and metrics
// there. What belongs to the event loop it asks the loop for, through loop_calls:
// flushing the counters before a read (answers reflect everything counted), the
// names online, and every operator-signed change (registry writes, closing an
// agent's connection, telling peers), which the loop runs between two messages.
//
// Threads: the constructor, loop_calls_fd and run_loop_calls on the event loop; the
// admin thread does the rest. The destructor (event loop) stops the admin thread and
// fails any call it still waits for.
#pragma once

#include <atomic>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "accounting.hpp"
#include "admin_protocol.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"
#include "connections.hpp"
#include "metrics.hpp"
#include "registry.hpp"

namespace agentbus::broker {

// kMaxAdminRequestBytes bounds one admin request frame (the largest, a signed
// token_create or revoke, is under 2 KiB).
inline constexpr std::int64_t kMaxAdminRequestBytes = 64 * 1024;

class admin_server {
 public:
  // Binds `endpoint` (creating an ipc:// directory). on_revoked runs (event loop)
  // after an operator's revocation is recorded; on_key_approved after an approved key
  // change (the old key's connection closes, peers are told). broker_identity:
  // {"name","fingerprint","suite"} (the `broker` request, and what token_create hands
  // out with a token). `reg` is the event loop's registry; the admin thread opens its
  // own connection to the same file.
  admin_server(zmq::context_t& ctx, const std::string& endpoint, std::shared_ptr<const policy> pol, registry& reg,
               connections& agents, accounting& acct,
               std::function<void(const std::string&)> on_revoked, std::function<void(const std::string&)> on_key_approved,
               nlohmann::json broker_identity);
  ~admin_server();

  // The event loop polls loop_calls_fd and, when it is readable, runs what the admin
  // thread asked of it.
  int loop_calls_fd() const noexcept { return fd_; }
  void run_loop_calls();
  // loop_stopped: the event loop runs no more calls (broker::run returned); admin
  // requests that need it are answered `internal` instead of waiting.
  void loop_stopped();

  class loop_state;   // the registry and connections, as the event loop changes them
  class admin_state;  // what the admin thread's handler sees

  // set_policy hands the admin thread the policy a reload applied (operators, roles):
  // requests from then on are checked against it. Any thread.
  void set_policy(std::shared_ptr<const policy> pol);

  // on_loop runs `f` on the event loop and returns when it has run (admin thread). A
  // broker stopping fails it (false).
  bool on_loop(std::function<void()> f);
  // federation_view_with: what the `federation` request answers, computed on the
  // event loop (set there, before requests that use it).
  void federation_view_with(std::function<nlohmann::json()> view);

 private:
  void run(std::shared_ptr<const policy> pol, std::filesystem::path registry_file, nlohmann::json identity);
  void serve(admin_handler& handler, admin_state& state);

  zmq::socket_t socket_;
  accounting& acct_;
  std::unique_ptr<loop_state> loop_state_;
  int fd_ = -1;  // eventfd: calls wait
  std::mutex mu_;
  std::condition_variable cv_;
  struct call {
    std::function<void()> f;
    bool done = false;
  };
  std::deque<std::shared_ptr<call>> calls_;
  std::shared_ptr<const policy> next_policy_;  // under mu_: set by a reload, taken by the admin thread
  bool stopping_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace agentbus::broker
