// broker_process.hpp — the agentbus-broker a single-mode or suite run starts:
// a config written into the run's temp dir, its output in broker.log there.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "agentbus/identity.hpp"
#include "agentbus/testing/child_process.hpp"

namespace agentbus::bench {

class broker_process {
 public:
  struct options {
    std::string binary;
    std::filesystem::path dir;          // broker.toml, broker.log, broker.sock and its state go here
    std::filesystem::path policy_file;
    std::string tcti;                   // the broker identity's TPM
    bool allow_software = false;        // agents (and the broker) with software keys are admitted
    int hwm = 10000;                    // send_hwm and recv_hwm
    bool fan_out_wire_batches = true;   // [forwarding] wire_batches
    std::string log_level = "warn";
    std::string transport = "ipc";      // also listen on loopback TCP: "tcp" (plain) or "curve"
    // A broker of a federation (the `federated` row): its name, the NATS server and
    // every broker's identity fingerprint (create_identity says each one's).
    struct federation_options {
      std::string name;
      std::string nats_url;
      std::map<std::string, std::string> brokers;
    };
    std::optional<federation_options> federation;
  };

  // create_identity makes the broker's identity key in o.dir (agentbus-broker
  // --print-identity) and returns its fingerprint, before any broker of a federation
  // starts: each one's configuration names them all.
  static std::string create_identity(const options& o);

  // Starts the broker and waits (up to 60 s) until its admin endpoint answers;
  // throws std::runtime_error with the tail of its log when it exits first. The
  // broker runs a copy of the policy that lists the bench as an operator (a software
  // key in `dir`), so that the bench issues its agents' enrolment tokens.
  explicit broker_process(const options& opts);
  ~broker_process() { stop(); }
  broker_process(const broker_process&) = delete;
  broker_process& operator=(const broker_process&) = delete;

  // stop sends SIGTERM and waits up to 5 s before SIGKILL.
  void stop();
  // endpoint: where the agents connect (the TCP endpoint for transport tcp/curve).
  const std::string& endpoint() const noexcept { return agent_endpoint_; }
  const std::string& transport_key() const noexcept { return transport_key_; }  // curve: the broker's key
  const std::string& admin_endpoint() const noexcept { return admin_endpoint_; }
  const std::string& fingerprint() const noexcept { return fingerprint_; }
  const std::shared_ptr<identity_key>& operator_key() const noexcept { return operator_key_; }
  static constexpr const char* kOperatorName = "bench";
  const std::filesystem::path& log() const noexcept { return log_; }
  pid_t pid() const noexcept { return proc_.pid(); }  // -1 once stopped

 private:
  std::string endpoint_, admin_endpoint_, fingerprint_, agent_endpoint_, transport_key_;
  std::shared_ptr<identity_key> operator_key_;
  std::filesystem::path log_;
  testing::child_process proc_;
};

}  // namespace agentbus::bench
