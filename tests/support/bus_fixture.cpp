#include "support/bus_fixture.hpp"

#include <fstream>
#include <iostream>
#include <thread>
#include <zmq.hpp>

#include "admin_client.hpp"
#include "agentbus/testing/local_host.hpp"

namespace agentbus::testing {
namespace fs = std::filesystem;

broker_process::broker_process(options opts) : opts_(std::move(opts)) {
  if (opts_.policy_file.empty()) opts_.policy_file = source_dir() / "config" / "policy.toml";
  const policy given = policy::load_file(opts_.policy_file);
  const std::string op_role = given.roles().front().name;
  operator_key_ = identity_key::create_software(dir_.path() / "operator", op_role, *given.suite_for(op_role));
  const fs::path policy_file = dir_.path() / "policy.toml";
  endpoint_ = "ipc://" + (dir_.path() / "broker.sock").string();
  admin_endpoint_ = "ipc://" + (dir_.path() / "admin.sock").string();
  std::ofstream cfg(dir_.path() / "broker.toml");
  if (opts_.tcp) tcp_endpoint_ = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  cfg << "[broker]\nname = \"test-broker\"\nendpoints = [\"" << endpoint_ << "\""
      << (opts_.tcp ? ", \"" + tcp_endpoint_ + "\"" : std::string()) << "]\n"
      << "policy = \"" << policy_file.string() << "\"\nstate_dir = \"state\"\nadmin_endpoint = \"" << admin_endpoint_
      << "\"\n[identity]\nkey_dir = \"key\"\ntcti = \"" << tpm_.tcti() << "\"\nsuite = \"ecdsa-p256-sha256\"\n"
      << "[limits]\n" << opts_.extra_limits << "\n[logging]\nlevel = \"" << opts_.log_level << "\"\nformat = \""
      << opts_.log_format << "\"\n" << opts_.extra_sections << "\n";
  cfg.close();
  start();
}

broker_process::~broker_process() { stop(); }

void broker_process::start() {
  if (running()) return;
  {
    // Written at every start: a test may change its policy file between runs.
    std::ofstream p(dir_.path() / "policy.toml");
    p << read_text(opts_.policy_file) << "\n[operators." << kOperatorName << "]\nfingerprint = \""
      << operator_key_->public_key().fingerprint_hex() << "\"\n";
  }
  std::error_code ec;
  fs::remove(dir_.path() / "broker.sock", ec);
  std::vector<std::string> args{(binary_dir() / "broker" / "agentbus-broker").string(), "--config",
                                (dir_.path() / "broker.toml").string()};
  if (opts_.permissive) args.push_back("--insecure-permissive-testing");
  child_spec spec;
  spec.argv = std::move(args);
  spec.log_file = dir_.path() / "broker.log";
  spec.append_log = true;  // a restarted broker keeps the earlier log
  proc_ = child_process(spec);
  // Ready when the admin endpoint answers.
  for (int i = 0; i < 200; ++i) {
    if (auto status = proc_.try_wait())
      throw std::runtime_error("agentbus-broker exited during start-up (" + child_process::describe(*status) + "):\n" +
                               this->log());
    if (fs::exists(dir_.path() / "admin.sock") && fs::exists(dir_.path() / "broker.sock")) {
      try {
        if (!admin("stats").empty()) return;
      } catch (const std::exception&) {
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("agentbus-broker did not become ready:\n" + this->log());
}

void broker_process::stop(int signal_number) {
  if (auto status = proc_.stop(signal_number, std::chrono::seconds(5))) exit_status_ = child_process::exit_code(*status);
}

bool broker_process::running() const { return proc_.running(); }
int broker_process::wait_exit() { return exit_status_; }

std::string broker_process::admin(const std::string& command) {
  zmq::context_t ctx(1);
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, 2000);
  req.set(zmq::sockopt::sndtimeo, 2000);
  req.connect(admin_endpoint_);
  req.send(zmq::buffer(command), zmq::send_flags::none);
  zmq::message_t reply;
  if (!req.recv(reply)) throw std::runtime_error("broker admin endpoint did not answer");
  return reply.to_string();
}

std::optional<double> broker_process::metric(const std::string& series) {
  const std::string all = admin("metrics");
  const std::string prefix = "agentbus_" + series + " ";
  for (std::size_t at = 0; at < all.size();) {
    std::size_t eol = all.find('\n', at);
    if (eol == std::string::npos) eol = all.size();
    if (all.compare(at, prefix.size(), prefix) == 0) return std::stod(all.substr(at + prefix.size(), eol - at - prefix.size()));
    at = eol + 1;
  }
  return std::nullopt;
}

std::string broker_process::fingerprint() const {
  auto fp = broker::admin_client(admin_endpoint_).broker_fingerprint();
  if (!fp) throw std::runtime_error("broker fingerprint: " + fp.error().to_string());
  return *fp;
}

std::string broker_process::issue_token(const std::string& name, const std::string& role,
                                        const std::string& key_fingerprint) const {
  auto t = broker::admin_client(admin_endpoint_).issue_token(*operator_key_, kOperatorName, name, role, key_fingerprint);
  if (!t) throw std::runtime_error("enrolment token for " + name + ": " + t.error().to_string());
  return *t;
}

void broker_process::prepare(agent_options& o, const std::string& role, const identity_key& key) const {
  if (o.broker_fingerprint.empty() && !o.insecure_trust_any_broker) o.broker_fingerprint = fingerprint();
  if (o.broker_endpoint.starts_with("tcp://") && o.broker_transport_key.empty() && !o.insecure_plain_tcp)
    o.broker_transport_key = transport_key();
  if (!o.enrolment_token.empty() || knows(o.name)) return;
  auto t = broker::admin_client(admin_endpoint_).issue_token(*operator_key_, kOperatorName, o.name, role,
                                                             key.public_key().fingerprint_hex());
  // A role the broker's policy lacks gets no token: the broker is to refuse it unknown_role.
  if (!t && t.error().code() != status_code::unknown_role)
    throw std::runtime_error("enrolment token for " + o.name + ": " + t.error().to_string());
  if (t) o.enrolment_token = *t;
}

std::string broker_process::transport_key() const {
  auto k = broker::admin_client(admin_endpoint_).broker_transport_key();
  if (!k) throw std::runtime_error("broker transport key: " + k.error().to_string());
  return *k;
}

bool broker_process::knows(const std::string& name) const {
  auto r = broker::admin_client(admin_endpoint_).request({{"op", "show"}, {"agent", name}});
  if (!r && r.error().code() != status_code::unknown_agent) throw std::runtime_error("show " + name + ": " + r.error().to_string());
  return r.ok();
}

std::string broker_process::log() const {
  try {
    return read_text(dir_.path() / "broker.log");
  } catch (...) {
    return "(no log)";
  }
}

test_identity make_identity(const fs::path& dir, const std::string& role, bool software, const policy& pol,
                            const fs::path& ek_ca_dir) {
  test_identity id;
  suite s = *pol.suite_for(role);
  if (software) {
    id.key = identity_key::create_software(dir, role, s);
    return id;
  }
  swtpm_process::options o;
  o.endorsement = !ek_ca_dir.empty();
  o.ek_ca_dir = ek_ca_dir;
  id.tpm_process = std::make_unique<swtpm_process>(o);
  id.tpm = std::make_shared<tpm::tpm>(id.tpm_process->tcti());
  auto created = identity_key::create_tpm(dir, role, s, id.tpm);
  if (!created) throw std::runtime_error(created.error().to_string());
  id.key = std::move(created).value();
  return id;
}

bus_agent connect_agent(const broker_process& b, const fs::path& dir, const std::string& name, const std::string& role,
                        bool software, agent_options tweak, std::shared_ptr<const policy> pol) {
  if (!pol) pol = std::make_shared<policy>(policy::load_file(source_dir() / "config" / "policy.toml"));
  return enrol_identity(b, make_identity(dir / name, role, software, *pol), name, std::move(tweak), pol);
}

bus_agent enrol_identity(const broker_process& b, test_identity id, const std::string& name, agent_options tweak,
                         std::shared_ptr<const policy> pol) {
  if (!pol) pol = std::make_shared<policy>(policy::load_file(source_dir() / "config" / "policy.toml"));
  const std::string role = id.key->metadata().role;
  bus_agent a;
  a.id = std::move(id);
  agent_options opts = std::move(tweak);
  opts.name = name;
  if (opts.broker_endpoint.empty()) opts.broker_endpoint = b.endpoint();
  b.prepare(opts, role, *a.id.key);
  a.client = std::make_unique<agent>(opts, a.id.key, pol);
  agent_access::record_sent(*a.client);  // so that a test can replay what an agent sent
  return a;
}

void broker_test::TearDown() {
  if (HasFailure() && broker_) std::cerr << "---- broker log ----\n" << broker_->log();
}

broker_process& broker_test::broker(broker_process::options o) {
  broker_ = std::make_unique<broker_process>(std::move(o));
  return *broker_;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace agentbus::testing
