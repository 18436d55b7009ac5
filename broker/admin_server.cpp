#include "admin_server.hpp"
#include "socket_directory.hpp"

#include <optional>
#include <spdlog/spdlog.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>
#include <set>

namespace agentbus::broker {

// loop_state: the event loop's registry and live connection table; a revocation takes
// effect at once. Runs on the event loop only (admin_server::on_loop).
class admin_server::loop_state final : public registry_admin_state {
 public:
  loop_state(registry& reg, connections& agents, accounting& acct, std::function<void(const std::string&)> on_revoked,
        std::function<void(const std::string&)> on_key_approved, nlohmann::json identity)
      : registry_admin_state(reg),
        agents_(agents),
        acct_(acct),
        on_revoked_(std::move(on_revoked)),
        on_key_approved_(std::move(on_key_approved)),
        identity_(std::move(identity)) {}

  nlohmann::json broker_identity() override { return identity_; }
  status create_token(const token_record& t) override {
    status st = registry_admin_state::create_token(t);
    spdlog::warn("operator {} issued enrolment token {} for {} ({}{}): {}", t.created_by, t.id(), t.name, t.role,
                 t.fingerprint.empty() ? "" : ", key " + t.fingerprint.substr(0, 16), st.to_string());
    return st;
  }
  status revoke_key(const key_revocation& k, const std::string& operator_name) override {
    status st = registry_admin_state::revoke_key(k, operator_name);
    spdlog::warn("operator {} revoked key {}: {}", operator_name, k.fingerprint.substr(0, 16), k.reason);
    return st;
  }
  status reject(const std::string& agent, const std::string& fingerprint, const std::string& operator_name) override {
    status st = registry_admin_state::reject(agent, fingerprint, operator_name);
    spdlog::warn("operator {} rejected key {} for {}: {}", operator_name, fingerprint.substr(0, 16), agent, st.to_string());
    return st;
  }

  bool online(std::string_view agent) override {
    const known_agent* a = agents_.find(agent);
    return a != nullptr && a->online();
  }
  nlohmann::json stats() override { return nlohmann::json::parse(acct_.stats().to_json()); }
  status revoke(const std::string& agent, const std::string& reason, const std::string& operator_name) override {
    status st = registry_admin_state::revoke(agent, reason, operator_name);
    spdlog::warn("operator {} revoked {}: {}", operator_name, agent, reason);
    if (st) on_revoked_(agent);
    return st;
  }
  status approve(const std::string& agent, const std::string& fingerprint, const std::string& operator_name) override {
    status st = registry_admin_state::approve(agent, fingerprint, operator_name);
    spdlog::warn("operator {} approved key {} for {}: {}", operator_name, fingerprint.substr(0, 16), agent,
                 st.to_string());
    if (st) on_key_approved_(agent);
    return st;
  }
  void flush() { acct_.flush(agents_); }
  std::function<nlohmann::json()> federation_view;
  std::shared_ptr<const std::set<std::string, std::less<>>> online_names() {
    auto names = std::make_shared<std::set<std::string, std::less<>>>();
    agents_.for_each_online([&](known_agent& a) { names->insert(a.name); });
    return names;
  }
  status reset_counters(const std::string& agent, const std::string& operator_name) override {
    acct_.flush(agents_);
    spdlog::info("operator {} reset refusal counters{}", operator_name, agent.empty() ? "" : " of " + agent);
    return registry_admin_state::reset_counters(agent, operator_name);
  }

 private:
  connections& agents_;
  accounting& acct_;
  std::function<void(const std::string&)> on_revoked_;
  std::function<void(const std::string&)> on_key_approved_;
  nlohmann::json identity_;
};


// admin_state: what the admin thread's handler sees. Reads come from the admin
// thread's own registry connection; the names online and every change come from the
// event loop (on_loop), so that they see and change what the loop does.
class admin_server::admin_state final : public registry_admin_state {
 public:
  admin_state(registry& own, admin_server& server, nlohmann::json identity)
      : registry_admin_state(own), server_(server), identity_(std::move(identity)) {}

  // begin_request: a new request sees the online names as they are when it asks.
  void begin_request() { online_.reset(); }

  nlohmann::json broker_identity() override { return identity_; }
  nlohmann::json federation() override {
    nlohmann::json view = {{"federated", false}};
    server_.on_loop([&] {
      if (server_.loop_state_->federation_view) view = server_.loop_state_->federation_view();
    });
    return view;
  }
  bool online(std::string_view agent) override {
    if (!online_ && !server_.on_loop([&] { online_ = server_.loop_state_->online_names(); })) return false;
    return online_ && online_->count(agent) != 0;
  }
  nlohmann::json stats() override { return nlohmann::json::parse(server_.acct_.stats().to_json()); }

  status revoke(const std::string& agent, const std::string& reason, const std::string& op) override {
    return change([&] { return server_.loop_state_->revoke(agent, reason, op); });
  }
  status approve(const std::string& agent, const std::string& fingerprint, const std::string& op) override {
    return change([&] { return server_.loop_state_->approve(agent, fingerprint, op); });
  }
  status reset_counters(const std::string& agent, const std::string& op) override {
    return change([&] { return server_.loop_state_->reset_counters(agent, op); });
  }
  status reject(const std::string& agent, const std::string& fingerprint, const std::string& op) override {
    return change([&] { return server_.loop_state_->reject(agent, fingerprint, op); });
  }
  status create_token(const token_record& t) override {
    return change([&] { return server_.loop_state_->create_token(t); });
  }
  status revoke_key(const key_revocation& k, const std::string& op) override {
    return change([&] { return server_.loop_state_->revoke_key(k, op); });
  }
  // The nonces are written by the event loop's connection too: one writer, so the
  // loop's own writes never wait on this thread's transaction.
  std::shared_ptr<nonce_ledger> nonces() override { return std::make_shared<loop_ledger>(server_); }

 private:
  class loop_ledger final : public nonce_ledger {
   public:
    explicit loop_ledger(admin_server& server) : server_(server), ledger_(server.loop_state_->nonces()) {}
    status record(const std::string& nonce, std::int64_t timestamp, std::int64_t now_ms) override {
      status st{status_code::internal, "the broker is stopping"};
      server_.on_loop([&] { st = ledger_->record(nonce, timestamp, now_ms); });
      return st;
    }

   private:
    admin_server& server_;
    std::shared_ptr<nonce_ledger> ledger_;
  };

  template <typename F>
  status change(F&& f) {
    status st{status_code::internal, "the broker is stopping"};
    server_.on_loop([&] {
      try {
        st = f();
      } catch (const std::exception& e) {  // a registry failure: reported, the loop goes on
        st = status{status_code::internal, e.what()};
      }
    });
    online_.reset();  // the change may have closed a connection
    return st;
  }

  admin_server& server_;
  nlohmann::json identity_;
  std::shared_ptr<const std::set<std::string, std::less<>>> online_;
};

admin_server::admin_server(zmq::context_t& ctx, const std::string& endpoint, std::shared_ptr<const policy> pol,
                           registry& reg, connections& agents, accounting& acct,
                           std::function<void(const std::string&)> on_revoked,
                           std::function<void(const std::string&)> on_key_approved, nlohmann::json broker_identity)
    : socket_(ctx, zmq::socket_type::rep),
      acct_(acct),
      loop_state_(std::make_unique<loop_state>(reg, agents, acct, std::move(on_revoked), std::move(on_key_approved),
                                               broker_identity)) {
  socket_.set(zmq::sockopt::linger, 0);
  // Admin requests are small JSON objects: a larger frame drops its connection.
  socket_.set(zmq::sockopt::maxmsgsize, int64_t{kMaxAdminRequestBytes});
  prepare_ipc_endpoint(endpoint);
  socket_.bind(endpoint);
  fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd_ < 0) throw std::runtime_error("admin endpoint: eventfd failed");
  spdlog::info("admin endpoint on {}", endpoint);
  // The socket passes to the admin thread here (its start is the memory barrier ZeroMQ
  // asks for when a socket changes threads); the loop never touches it again.
  thread_ = std::thread([this, pol = std::move(pol), file = reg.file(), id = std::move(broker_identity)]() mutable {
    run(std::move(pol), std::move(file), std::move(id));
  });
}

admin_server::~admin_server() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

bool admin_server::on_loop(std::function<void()> f) {
  auto c = std::make_shared<call>();
  c->f = std::move(f);
  std::unique_lock lock(mu_);
  if (stopping_) return false;
  calls_.push_back(c);
  const std::uint64_t one = 1;
  (void)!::write(fd_, &one, sizeof one);
  cv_.wait(lock, [&] { return c->done || stopping_; });
  return c->done;
}

void admin_server::federation_view_with(std::function<nlohmann::json()> view) {
  loop_state_->federation_view = std::move(view);
}

void admin_server::run_loop_calls() {
  std::uint64_t n;
  (void)!::read(fd_, &n, sizeof n);
  std::deque<std::shared_ptr<call>> todo;
  {
    std::lock_guard lock(mu_);
    todo.swap(calls_);
  }
  for (auto& c : todo) {
    try {
      c->f();
    } catch (const std::exception& e) {
      spdlog::error("admin request: {}", e.what());
    }
    std::lock_guard lock(mu_);
    c->done = true;
  }
  cv_.notify_all();
}

void admin_server::run(std::shared_ptr<const policy> pol, std::filesystem::path registry_file, nlohmann::json identity) {
  try {
    registry own(registry_file);  // this thread's connection (the event loop's is not shared)
    admin_state state(own, *this, std::move(identity));
    std::optional<admin_handler> handler(std::in_place, std::move(pol), state);
    while (!stop_.load()) {
      std::shared_ptr<const policy> reloaded;
      {
        std::lock_guard lock(mu_);
        reloaded = std::move(next_policy_);
      }
      if (reloaded) handler.emplace(std::move(reloaded), state);  // the nonce ledger lives in `state`: replays stay refused
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;  // a signal: the stop flag decides
        throw;
      }
      if (items[0].revents & ZMQ_POLLIN) serve(*handler, state);
    }
  } catch (const std::exception& e) {
    acct_.stats().increment("internal_errors_total");
    spdlog::error("admin endpoint stopped: {}", e.what());
  }
}

void admin_server::serve(admin_handler& handler, admin_state& state) {
  zmq::message_t req;
  if (!socket_.recv(req, zmq::recv_flags::dontwait)) return;
  const std::string cmd = req.to_string();
  std::string reply;
  try {
    state.begin_request();
    on_loop([this] { loop_state_->flush(); });  // answers reflect everything counted so far
    if (cmd == "metrics") reply = acct_.stats().to_prometheus_text();
    else if (cmd == "stats") reply = acct_.stats().to_json();
    else reply = handler.handle(cmd, now_unix_ms());
  } catch (const std::exception& e) {
    // A REP socket must answer every request; the endpoint goes on.
    acct_.stats().increment("internal_errors_total");
    spdlog::error("admin request failed: {}", e.what());
    reply = error_reply({status_code::internal, e.what()}).dump();
  }
  for (;;) {
    try {
      socket_.send(zmq::buffer(reply), zmq::send_flags::none);
      return;
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
  }
}

void admin_server::set_policy(std::shared_ptr<const policy> pol) {
  std::lock_guard lock(mu_);
  next_policy_ = std::move(pol);
}

void admin_server::loop_stopped() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

}  // namespace agentbus::broker
