#include "admin_server.hpp"
#include "socket_directory.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>

namespace agentbus::broker {

// state: the registry plus the live connection table; a revocation takes effect at once.
class admin_server::state final : public registry_admin_state {
 public:
  state(registry& reg, connections& agents, accounting& acct, std::function<void(const std::string&)> on_revoked,
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

admin_server::admin_server(zmq::context_t& ctx, const std::string& endpoint, std::shared_ptr<const policy> pol,
                           registry& reg, connections& agents, accounting& acct, std::shared_ptr<tpm::tpm> tpm,
                           std::function<void(const std::string&)> on_revoked,
                           std::function<void(const std::string&)> on_key_approved, nlohmann::json broker_identity)
    : socket_(ctx, zmq::socket_type::rep),
      agents_(agents),
      acct_(acct),
      tpm_(std::move(tpm)),
      state_(std::make_unique<state>(reg, agents, acct, std::move(on_revoked), std::move(on_key_approved),
                                     std::move(broker_identity))) {
  handler_ = std::make_unique<admin_handler>(std::move(pol), *state_);
  socket_.set(zmq::sockopt::linger, 0);
  prepare_ipc_endpoint(endpoint);
  socket_.bind(endpoint);
  spdlog::info("admin endpoint on {}", endpoint);
}

admin_server::~admin_server() = default;

void admin_server::refresh_tpm_metrics() {
  if (!tpm_) return;
  metrics& m = acct_.stats();
  for (const auto& op : tpm_->stats()) {
    m.set_gauge("tpm_operations_total", op.operation, static_cast<double>(op.count));
    m.set_gauge("tpm_operation_failures_total", op.operation, static_cast<double>(op.failures));
    m.set_gauge("tpm_operation_mean_ms", op.operation, op.mean_ms);
  }
}

void admin_server::serve() {
  zmq::message_t req;
  if (!socket_.recv(req, zmq::recv_flags::dontwait)) return;
  const std::string cmd = req.to_string();
  refresh_tpm_metrics();
  acct_.flush(agents_);  // answers reflect everything counted so far
  std::string reply;
  if (cmd == "metrics") reply = acct_.stats().to_prometheus_text();
  else if (cmd == "stats") reply = acct_.stats().to_json();
  else reply = handler_->handle(cmd, now_unix_ms());
  socket_.send(zmq::buffer(reply), zmq::send_flags::none);
}

}  // namespace agentbus::broker
