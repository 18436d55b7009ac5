// example_agent.hpp — shared start-up and output for the example agents.
//
// Every example takes the same options (--name --role --key-dir --tcti --broker
// --policy [--software] [--batch] [--seconds]), creates its identity key in --key-dir if
// the directory holds none (in the TPM named by --tcti, or in software), opens it,
// loads the policy, enrols with the broker and installs an on_rejected printer.
//
// Output is one line per event on stdout, in a stable, greppable format that
// scripts/bus-demo.sh checks:
//   [name] READY role=MONITOR suite=ecdsa-p256-sha256 protection=tpm broker=...
//   [name] DELIVERED from <sender> (<ROLE>, <suite>, <assurance>): topic <t>: <payload>
//   [name] DELIVERED from <sender> (<ROLE>, <suite>, <assurance>): direct: <payload>
//   [name] REQUEST from ...: <payload>          (a request this agent answers)
//   [name] REPLY from ...: <payload>            (the answer to this agent's request)
//   [name] SENT to <agent>: <payload> | PUBLISHED on <topic>: <payload> | ...
//   [name] FAILED <what>: <code>: <detail>      (a local call returned an error)
//   [name] REFUSED by broker: <code>: <detail> (to <recipient>, id <hex8>)
//   [name] REJECTED at receive from <sender>: <code>: <detail>
//   [name] STATS sent=.. received=.. rejected_at_receive=.. refused_by_broker=.. sessions=..
//   [name] EXIT <code>
#pragma once

#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agentbus/agent.hpp"
#include "agentbus/bytes.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"

namespace agentbus::examples {

// Exit codes of the examples (scripts test them).
enum exit_code : int {
  kExitOk = 0,
  kExitFailed = 1,      // an operation failed or an expectation was not met
  kExitUsage = 2,       // bad command line
  kExitSetup = 3,       // key, TPM or policy problem before enrolment
  kExitEnrolment = 4,   // the broker refused the agent or did not answer
};

struct example_options {
  std::string name;
  std::string role;
  std::string key_dir;
  std::string tcti;          // --tcti, else $AGENTBUS_TCTI
  std::string broker;  // default: the bundle's endpoint, else tcp://127.0.0.1:5555
  std::string broker_fingerprint;
  std::string broker_transport_key;  // for tcp:// (default: the bundle's)
  std::string enrolment_bundle;   // the operator's bundle (agentbus-trust token create --out)
  bool insecure_any_broker = false;
  std::string policy_file = "config/policy.toml";
  bool software = false;
  bool batch = false;        // --batch: tpm-batch signing (one TPM signature per Merkle batch)
  double seconds = 0;        // run time; 0 = until SIGINT/SIGTERM
  std::string log_level = "warn";
};

// add_options registers the common options on `app`; `default_seconds` is the
// example's run time when --seconds is not given (0 = until a signal).
void add_options(CLI::App& app, example_options& opts, double default_seconds);

// say prints one line "[name] text" to stdout (thread-safe, flushed).
void say(std::string_view name, std::string_view text);

// payload_text renders a payload for a log line: printable text as is (truncated),
// anything else as hex.
std::string payload_text(byte_view payload, std::size_t max = 160);
inline std::string payload_text(const bytes& payload, std::size_t max = 160) {
  return payload_text(byte_view(payload.data(), payload.size()), max);
}

// origin renders "from monitor-1 (MONITOR, ecdsa-p256-sha256, tpm)".
std::string origin(const message& m);

// channel renders "topic metrics/cpu" or "direct".
std::string channel(const message& m);

// short_id renders the first 8 hex digits of a message id ("-" when empty).
std::string short_id(const bytes& id);

// now_ms is the Unix time in milliseconds (for payloads).
std::uint64_t now_ms();

class example_agent {
 public:
  // Creates or opens the identity key, loads the policy and enrols. Throws
  // setup_error (key/TPM/policy) or enrolment_error (the broker refused).
  explicit example_agent(const example_options& opts);
  ~example_agent();
  example_agent(const example_agent&) = delete;
  example_agent& operator=(const example_agent&) = delete;

  agent& bus() noexcept { return *agent_; }
  const std::string& name() const noexcept { return opts_.name; }
  const example_options& options() const noexcept { return opts_; }
  const policy& pol() const noexcept { return *policy_; }
  const identity_key& key() const noexcept { return *key_; }

  void say(std::string_view text) const { examples::say(opts_.name, text); }

  // print_delivery prints "DELIVERED from ...: topic t: payload" (or `verb`).
  void print_delivery(const message& m, std::string_view verb = "DELIVERED") const;
  // check prints "FAILED what: ..." for a non-ok status and counts it.
  bool check(const status& st, std::string_view what);
  int failures() const noexcept { return failures_.load(); }

  // on_rejected replaces the rejection handler with one that prints the line and
  // then calls `extra` (the rogue uses it to match refusals to its attempts).
  void on_rejected(rejection_handler extra);
  // print_rejection prints "REFUSED by broker: ..." or "REJECTED at receive ...".
  void print_rejection(const rejection& r) const;

  // run_for sleeps until --seconds elapsed or SIGINT/SIGTERM, calling `tick`
  // every `period` (if set). Returns false if stopped by a signal.
  bool run_for(std::chrono::milliseconds period = std::chrono::milliseconds(100),
               const std::function<void()>& tick = {});
  // wait_until polls `done` until true, a signal, or `timeout`.
  bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

  void print_stats() const;

 private:
  example_options opts_;
  std::shared_ptr<tpm::tpm> tpm_;
  std::shared_ptr<identity_key> key_;
  std::shared_ptr<const policy> policy_;
  std::unique_ptr<agent> agent_;
  std::atomic<int> failures_{0};
};

// setup_error: something is wrong before enrolment (key dir, TPM, policy).
class setup_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// stop_requested is set by SIGINT/SIGTERM (installed by run_example).
bool stop_requested() noexcept;

// set_identity_wrapper: the rogue's way to enrol with an identity that misrepresents
// itself (it wraps the key the example opened or made, before enrolment). Unset: the
// key as it is.
void set_identity_wrapper(std::function<std::shared_ptr<identity_key>(std::shared_ptr<identity_key>)> wrap);

// run_example parses the command line (the common options plus whatever
// `extra_options` adds), builds the agent and runs `body`. It maps exceptions to
// the exit codes above and prints "[name] EXIT <code>".
int run_example(int argc, char** argv, std::string_view description, std::string_view default_name,
                std::string_view default_role, double default_seconds,
                const std::function<void(CLI::App&)>& extra_options,
                const std::function<int(example_agent&)>& body);

}  // namespace agentbus::examples
