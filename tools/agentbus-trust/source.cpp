// source.cpp — the live admin endpoint (ZeroMQ REQ) and the offline registry.
#include "source.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <zmq.hpp>

#include "admin_client.hpp"
#include "admin_protocol.hpp"
#include "broker_config.hpp"
#include "agentbus/policy.hpp"
#include "registry.hpp"

namespace agentbus::trust_tool {

namespace fs = std::filesystem;

std::string broker_config_file(const global_options& global) {
  if (!global.config.empty()) return global.config;
  if (const char* env = std::getenv("AGENTBUS_CONFIG"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  if (fs::exists(AGENTBUS_INSTALLED_CONFIG, ec)) return AGENTBUS_INSTALLED_CONFIG;
  // A build tree: <build>/tools/agentbus-trust, the checkout's config one level above <build>.
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path checkout = (exe.parent_path() / ".." / ".." / "config" / "broker.toml").lexically_normal();
    if (fs::exists(exe.parent_path() / ".." / "CMakeCache.txt", ec) && fs::exists(checkout, ec)) return checkout.string();
  }
  return {};
}

namespace {

using json = nlohmann::json;

std::optional<broker::broker_config> read_broker_config(const global_options& global) {
  const std::string file = broker_config_file(global);
  if (file.empty()) return std::nullopt;
  try {
    return broker::load_broker_config(file);
  } catch (const broker::config_error& e) {
    throw tool_error(kUsage, std::string("cannot read the broker's configuration: ") + e.what() +
                                 " (name the broker with --admin ENDPOINT, or its configuration with --config FILE)");
  }
}

class online_source final : public source {
 public:
  online_source(std::string endpoint, int timeout_ms) : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms) {}
  result<json> request(const json& req) override { return broker_request(endpoint_, req.dump(), timeout_ms_); }
  bool live() const noexcept override { return true; }
  std::string describe() const override { return endpoint_; }

 private:
  std::string endpoint_;
  int timeout_ms_;
};

std::shared_ptr<const policy> load_offline_policy(const global_options& global) {
  const std::string& explicit_file = global.policy_file;
  if (!explicit_file.empty()) {
    try {
      return std::make_shared<const policy>(policy::load_file(explicit_file));
    } catch (const policy_error& e) {
      throw tool_error(kFailure, std::string("policy error: ") + e.what());
    }
  }
  std::optional<broker::broker_config> cfg;
  try {
    cfg = read_broker_config(global);
  } catch (const tool_error& e) {
    spdlog::warn("{}; using the built-in policy for the allowed edges", e.what());
  }
  const fs::path shipped = cfg ? cfg->policy_file : fs::path();
  std::error_code ec;
  if (!shipped.empty() && fs::exists(shipped, ec)) {
    try {
      return std::make_shared<const policy>(policy::load_file(shipped));
    } catch (const policy_error& e) {
      spdlog::warn("ignoring {} ({}); using the built-in policy for the allowed edges", shipped.string(), e.what());
    }
  }
  return std::make_shared<const policy>(policy::builtin_default());
}

// offline_source runs the broker's admin handler over a read-only registry, so
// the JSON is exactly what the live broker would answer (online flags excepted).
class offline_source final : public source {
 public:
  offline_source(broker::registry reg, std::shared_ptr<const policy> pol)
      : reg_(std::move(reg)), state_(reg_), handler_(std::move(pol), state_) {}

  result<json> request(const json& req) override {
    json reply = handler_.handle_json(req.dump(), broker::now_unix_ms());
    auto r = decode_reply(reply);
    if (!r) return status{status_code::internal, "the admin handler answered an unknown shape"};
    if (!r->ok() && r->error().code() == status_code::internal)
      throw tool_error(kDatabaseError, "cannot read " + reg_.file().string() + ": " + r->error().detail());
    return std::move(*r);
  }
  bool live() const noexcept override { return false; }
  std::string describe() const override { return reg_.file().string(); }

 private:
  broker::registry reg_;
  broker::registry_admin_state state_;
  broker::admin_handler handler_;
};

}  // namespace

std::string admin_endpoint(const global_options& global) {
  if (!global.admin.empty()) return global.admin;
  if (const char* env = std::getenv("AGENTBUS_ADMIN"); env != nullptr && *env != '\0') return env;
  const auto cfg = read_broker_config(global);
  if (!cfg)
    throw tool_error(kUsage, std::string("where is the broker? no --admin, no $AGENTBUS_ADMIN, and no broker configuration "
                                         "(--config, $AGENTBUS_CONFIG, " AGENTBUS_INSTALLED_CONFIG ")"));
  if (cfg->admin_endpoint.empty())
    throw tool_error(kUsage, broker_config_file(global) + ": broker.admin_endpoint: not set, so the broker has no admin "
                                                          "endpoint (set it, or use --db FILE to read the registry offline)");
  return cfg->admin_endpoint;
}

std::optional<result<nlohmann::json>> decode_reply(const nlohmann::json& reply) { return broker::decode_admin_reply(reply); }

result<nlohmann::json> broker_request(const std::string& endpoint, const std::string& frame, int timeout_ms) {
  const std::string unreachable = "broker is not answering at " + endpoint;
  // An ipc endpoint without its socket file cannot answer: say so at once rather
  // than after the timeout.
  if (endpoint.rfind("ipc://", 0) == 0) {
    std::error_code ec;
    fs::path sock = endpoint.substr(6);
    if (!fs::exists(sock, ec))
      throw tool_error(kBrokerUnreachable, unreachable + " (no socket " + sock.string() +
                                               "; is agentbus-broker running? use --db FILE to read its registry offline)");
  }
  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::req);
  sock.set(zmq::sockopt::linger, 0);
  sock.set(zmq::sockopt::rcvtimeo, timeout_ms);
  sock.set(zmq::sockopt::sndtimeo, timeout_ms);
  try {
    sock.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw tool_error(kUsage, "invalid admin endpoint '" + endpoint + "': " + e.what());
  }
  if (!sock.send(zmq::buffer(frame), zmq::send_flags::none))
    throw tool_error(kBrokerUnreachable, unreachable + " (request not accepted within " + std::to_string(timeout_ms) + " ms)");
  zmq::message_t reply;
  if (!sock.recv(reply, zmq::recv_flags::none))
    throw tool_error(kBrokerUnreachable, unreachable + " (no reply within " + std::to_string(timeout_ms) + " ms)");
  const std::string text = reply.to_string();
  json j = json::parse(text, nullptr, false);
  auto r = j.is_discarded() ? std::nullopt : decode_reply(j);
  if (!r)
    throw tool_error(kFailure, "the admin endpoint at " + endpoint + " does not speak the JSON admin protocol (it answered '" +
                                   text.substr(0, 80) + "'): is the broker older than this tool?");
  return std::move(*r);
}

std::unique_ptr<source> open_source(const global_options& global) {
  if (global.db.empty()) return std::make_unique<online_source>(admin_endpoint(global), global.timeout_ms);
  std::error_code ec;
  if (!fs::exists(global.db, ec))
    throw tool_error(kDatabaseError, "no registry database at " + global.db + " (the broker's is <state_dir>/registry.db)");
  if (fs::is_directory(global.db, ec)) throw tool_error(kDatabaseError, global.db + " is a directory, not a registry database");
  auto pol = load_offline_policy(global);
  try {
    return std::make_unique<offline_source>(broker::registry::open_readonly(global.db), std::move(pol));
  } catch (const broker::registry_error& e) {
    throw tool_error(kDatabaseError, std::string("cannot read the registry: ") + e.what());
  }
}

}  // namespace agentbus::trust_tool
