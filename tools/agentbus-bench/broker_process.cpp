#include "broker_process.hpp"

#include "admin_client.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/testing/local_host.hpp"

#include <signal.h>

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace agentbus::bench {
namespace fs = std::filesystem;
namespace {

std::string tail_file(const fs::path& file, std::size_t lines) {
  std::ifstream f(file);
  std::vector<std::string> all;
  for (std::string l; std::getline(f, l);) all.push_back(l);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "    " + all[i] + "\n";
  return out;
}

}  // namespace

namespace {

// write_config writes o.dir/broker.toml (and the policy copy naming the bench's
// operator, made once); with_federation: its [federation] section too.
void write_config(const broker_process::options& o, bool with_federation, const std::string& endpoint,
                  const std::string& agent_endpoint, const std::string& admin_endpoint) {
  fs::create_directories(o.dir / "broker");
  std::ofstream cfg(o.dir / "broker.toml");
  cfg << "# written by agentbus-bench\n"
      << "[broker]\nname = \"" << (o.federation ? o.federation->name : std::string("bench-broker")) << "\"\n"
      << "endpoints = [\"" << endpoint << "\""
      << (agent_endpoint != endpoint ? ", \"" + agent_endpoint + "\"" : std::string()) << "]\n"
      << "policy = \"" << fs::absolute(o.dir / "policy.toml").string() << "\"\n"
      << "state_dir = \"" << (o.dir / "broker").string() << "\"\n"
      << (admin_endpoint.empty() ? std::string() : "admin_endpoint = \"" + admin_endpoint + "\"\n") << "\n"
      << "[identity]\nkey_dir = \"" << (o.dir / "broker" / "key").string() << "\"\n"
      << "tcti = \"" << o.tcti << "\"\n"
      << "allow_software = " << (o.allow_software ? "true" : "false") << "\n"
      << "suite = \"ecdsa-p256-sha256\"\n\n"
      << "[limits]\nmax_frame_bytes = 1114112\nsend_hwm = " << o.hwm << "\nrecv_hwm = " << o.hwm << "\n"
      << "max_clock_skew_ms = 30000\nmax_agents = 10000\nmax_subscriptions_per_agent = 256\n\n"
      << "[sessions]\nrekey_after_messages = 1000000\nrekey_after_seconds = 3600\nrekey_grace_seconds = 30\n\n"
      << "[transport]\ncurve = " << (o.transport == "tcp" ? "false" : "true") << "\n\n"
      << "[forwarding]\nwire_batches = " << (o.fan_out_wire_batches ? "true" : "false") << "\n\n"
      << "[logging]\nformat = \"text\"\nlevel = \"" << (o.log_level == "off" ? "error" : o.log_level) << "\"\n";
  if (with_federation && o.federation) {
    // Loopback, a NATS server the bench started for this row: no credentials (the
    // broker logs that at critical level); what is measured is the forwarding.
    cfg << "\n[federation]\nservers = [\"" << o.federation->nats_url << "\"]\ninsecure_no_auth = true\nreplicas = 1\n"
        << "\n[federation.brokers]\n";
    for (const auto& [name, fp] : o.federation->brokers) cfg << name << " = \"" << fp << "\"\n";
  }
}

}  // namespace

std::string broker_process::create_identity(const options& o) {
  fs::create_directories(o.dir);
  const std::string ep = "ipc://" + (o.dir / "identity.sock").string();
  {
    // The policy copy is what the broker will run with; here only its suites matter.
    std::ofstream p(o.dir / "policy.toml");
    std::ifstream in(o.policy_file);
    p << in.rdbuf();
  }
  write_config(o, false, ep, ep, "");
  testing::child_spec spec;
  spec.argv = {o.binary, "--config", (o.dir / "broker.toml").string(), "--print-identity"};
  spec.log_file = o.dir / "identity.log";
  testing::child_process proc(spec);
  std::optional<int> status;
  for (int i = 0; i < 600 && !(status = proc.try_wait()); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!status || testing::child_process::exit_code(*status) != 0)
    throw std::runtime_error("agentbus-broker --print-identity failed:\n" + tail_file(spec.log_file, 20));
  std::ifstream log(spec.log_file);
  std::string fp;
  for (std::string line; std::getline(log, line);)
    if (line.size() == 64 && line.find_first_not_of("0123456789abcdef") == std::string::npos) fp = line;
  if (fp.empty()) throw std::runtime_error("agentbus-broker --print-identity printed no fingerprint");
  return fp;
}

broker_process::broker_process(const options& o) {
  if (!fs::exists(o.binary))
    throw std::runtime_error("broker binary " + o.binary + " not found (build the agentbus-broker target, or pass --broker-bin / --broker)");
  fs::create_directories(o.dir / "broker");
  const fs::path sock = o.dir / "broker.sock";
  const fs::path config = o.dir / "broker.toml";
  endpoint_ = "ipc://" + sock.string();
  agent_endpoint_ = endpoint_;
  if (o.transport == "tcp" || o.transport == "curve") agent_endpoint_ = "tcp://127.0.0.1:" + std::to_string(testing::free_loopback_port());
  admin_endpoint_ = "ipc://" + (o.dir / "admin.sock").string();
  log_ = o.dir / "broker.log";
  {
    const policy given = policy::load_file(o.policy_file);
    const std::string role = given.roles().front().name;
    operator_key_ = identity_key::create_software(o.dir / "operator", role, *given.suite_for(role));
    std::ofstream p(o.dir / "policy.toml");
    std::ifstream in(o.policy_file);
    p << in.rdbuf() << "\n# added by agentbus-bench\n[operators." << kOperatorName << "]\nfingerprint = \""
      << operator_key_->public_key().fingerprint_hex() << "\"\n";
  }
  write_config(o, true, endpoint_, agent_endpoint_, admin_endpoint_);

  // Killed with us (SIGTERM, so it shuts down cleanly) if this process dies.
  testing::child_spec spec;
  spec.argv = {o.binary, "--config", config.string()};
  spec.log_file = log_;
  spec.death_signal = SIGTERM;
  proc_ = testing::child_process(spec);

  // Ready when the admin endpoint says the broker's fingerprint (the broker binds
  // after loading its policy and identity).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    if (auto status = proc_.try_wait())
      throw std::runtime_error(fmt::format("the broker exited during start-up ({}); its log:\n{}",
                                           testing::child_process::describe(*status), tail_file(log_, 30)));
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the broker did not bind " + endpoint_ + " within 60 s");
    if (fs::exists(sock) && fs::exists(o.dir / "admin.sock")) {
      try {
        if (auto fp = broker::admin_client(admin_endpoint_, 500).broker_fingerprint()) {
          fingerprint_ = *fp;
          if (o.transport == "curve") {
            auto tk = broker::admin_client(admin_endpoint_, 500).broker_transport_key();
            if (!tk || tk->empty()) throw std::runtime_error("the broker did not say its transport key");
            transport_key_ = *tk;
          }
          break;
        }
      } catch (const broker::admin_unreachable&) {
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void broker_process::stop() { proc_.stop(SIGTERM, std::chrono::seconds(5)); }

}  // namespace agentbus::bench
