// bus_fixture.hpp — real broker processes and agents with their own swtpm (tests only).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/testing/agent_access.hpp"
#include "agentbus/testing/child_process.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus::testing {

// broker_process runs build/broker/agentbus-broker with a config written into its
// own directory, its identity in its own swtpm. Stopped (SIGTERM) on destruction.
// The policy it runs is the one given plus an operator (a software key in its
// directory), so that the harness issues enrolment tokens as an operator would.
class broker_process {
 public:
  struct options {
    std::filesystem::path policy_file;  // default: config/policy.toml
    bool permissive = false;            // --insecure-permissive-testing
    std::string extra_limits;           // TOML lines appended to [limits]
    std::string extra_sections;         // whole TOML sections appended to the config
    std::string log_format = "text";    // [logging] format and level
    std::string log_level = "info";
    // tcp: also listen on tcp://127.0.0.1:<a free port> (CurveZMQ unless
    // extra_sections sets [transport] curve = false).
    bool tcp = false;
  };
  explicit broker_process(options opts);
  broker_process() : broker_process(options{}) {}
  ~broker_process();

  void start();
  void stop(int signal_number = SIGTERM);
  bool running() const;
  int wait_exit();  // after stop(): the exit status
  pid_t pid() const noexcept { return proc_.pid(); }  // -1 when not running (e.g. to SIGSTOP/SIGCONT it)
  pid_t tpm_pid() const noexcept { return tpm_.pid(); }  // the broker identity's swtpm

  const std::string& endpoint() const noexcept { return endpoint_; }
  const std::string& admin_endpoint() const noexcept { return admin_endpoint_; }
  const std::string& tcp_endpoint() const noexcept { return tcp_endpoint_; }  // "" without options::tcp
  // transport_key: the broker's CurveZMQ public key ("" when it has none).
  std::string transport_key() const;
  std::string admin(const std::string& command);  // "stats" (JSON) or "metrics"
  // metric: the value of one series of the broker's Prometheus text, named without
  // the agentbus_ prefix and with its labels as exported (`transport_refused_total{reason="unknown_key"}`),
  // or nullopt when the broker exports no such series.
  std::optional<double> metric(const std::string& series);
  std::string log() const;
  const std::filesystem::path& dir() const noexcept { return dir_.path(); }
  // fingerprint: the broker identity's (what agents pin), from its admin endpoint.
  std::string fingerprint() const;
  // issue_token: a one-time enrolment token for `name` in `role` (bound to
  // `key_fingerprint` unless empty), signed by the harness operator.
  std::string issue_token(const std::string& name, const std::string& role, const std::string& key_fingerprint = {}) const;
  // prepare fills what an operator hands an agent's owner: the broker's fingerprint
  // (unless `o` names one or opts out), its transport key for a tcp:// endpoint
  // (unless `o` names one or goes plain) and, when the broker does not know o.name and
  // `o` brings no token, a token for `role` bound to `key`.
  void prepare(agent_options& o, const std::string& role, const identity_key& key) const;
  // knows: the broker's registry holds `name`.
  bool knows(const std::string& name) const;
  identity_key& operator_key() const { return *operator_key_; }
  static constexpr const char* kOperatorName = "harness";

 private:
  options opts_;
  scoped_temp_dir dir_;
  std::shared_ptr<identity_key> operator_key_;
  swtpm_process tpm_;
  std::string endpoint_, admin_endpoint_, tcp_endpoint_;
  child_process proc_;
  int exit_status_ = -1;
};

// test_identity is an agent identity in its own swtpm (or software).
struct test_identity {
  std::unique_ptr<swtpm_process> tpm_process;
  std::shared_ptr<tpm::tpm> tpm;
  std::shared_ptr<identity_key> key;
};

// make_identity creates a key for `role` under `dir` (TPM unless software). With
// `ek_ca_dir`, its swtpm is provisioned with an EK certificate from the local CA
// there (swtpm_process::options::endorsement).
test_identity make_identity(const std::filesystem::path& dir, const std::string& role, bool software = false,
                            const policy& pol = policy::builtin_default(), const std::filesystem::path& ek_ca_dir = {});

// bus_agent bundles an identity and an agent connected to a broker.
struct bus_agent {
  test_identity id;
  std::unique_ptr<agent> client;
  agent* operator->() const { return client.get(); }
};

// connect_agent enrols a new identity as `name` (over tweak.broker_endpoint, else the
// broker's ipc endpoint): it pins the broker's fingerprint
// (unless `tweak` names one or opts out) and, when the broker does not know the
// name yet and `tweak` brings no token, presents a token issued for this key.
bus_agent connect_agent(const broker_process& b, const std::filesystem::path& dir, const std::string& name,
                        const std::string& role, bool software = false, agent_options tweak = {},
                        std::shared_ptr<const policy> pol = nullptr);
// enrol_identity: the same with an identity the test made (an endorsed TPM, a
// claiming_identity).
bus_agent enrol_identity(const broker_process& b, test_identity id, const std::string& name, agent_options tweak = {},
                         std::shared_ptr<const policy> pol = nullptr);

// broker_test: a test that starts a broker (`broker()`), with a temporary directory
// for its agents' keys; the broker's log is printed when the test fails.
class broker_test : public ::testing::Test {
 protected:
  void TearDown() override;
  broker_process& broker(broker_process::options o = {});
  scoped_temp_dir dir_;
  std::unique_ptr<broker_process> broker_;
};

// kResidentSetIsMeaningful: false in an AddressSanitizer build, whose quarantine of
// freed memory and shadow memory make a process's resident set say nothing about a
// memory budget (those runs look for memory errors instead).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kResidentSetIsMeaningful = false;
#else
inline constexpr bool kResidentSetIsMeaningful = true;
#endif

// text: the bytes of a string, as tests write payloads.
inline bytes text(std::string_view s) { return bytes(s.begin(), s.end()); }

// wait_until polls `pred` for up to `timeout` (for asynchronous deliveries).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace agentbus::testing
