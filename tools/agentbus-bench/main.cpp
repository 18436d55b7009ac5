// agentbus-bench — load generator: envelopes per second, end-to-end latency,
// rejections and TPM signatures per second, through a real broker.
//
//   --mode agentbus  N in-process agents (N/2 senders, the rest receivers), each
//                    with its own identity: one private swtpm per agent (or
//                    --software keys), through an agentbus-broker process it
//                    starts with a temp config (or a running one: --broker)
//                    (agentbus_mode.cpp, broker_process.cpp).
//   --mode plain     the same traffic through a plain ZeroMQ DEALER -> ROUTER ->
//                    DEALER relay in this process, with no crypto: the baseline
//                    (relay_mode.cpp).
//   --mode curve     the same relay with CurveZMQ on every hop (hop encryption
//                    and authentication, no origin signature): the comparison
//                    for what agentbus costs over hop-by-hop security.
//   --batch          agentbus with tpm-batch (one TPM signature per Merkle batch).
//   --suite          all of the above for several payload sizes, one table
//                    (suite.cpp), plus the rate swtpm signs at alone.
//   --idle-agents N  N more enrolled, idle agents; the broker's resident set
//                    before and after they enrol and at the end (idle_agents.cpp).
//   --duration S     R x S envelopes at --rate R, sampling the broker's resident set.
//
// Every run also reports the CPU seconds of all its processes (this one, the
// broker, the swtpms) over the measured window (process_stats.cpp); report.cpp
// prints it. This file is the command line.
//
// Latency: the sender writes a steady_clock timestamp into the payload just
// before send(); the receiver subtracts it when its handler runs (both ends are
// in this process, so the clocks agree). It includes signing, the broker's checks
// and the receiver's verification. A benchmark reports numbers and asserts no
// time: the exit code is 0 when every measured envelope arrived, 1 when some were
// lost or refused, 2 for usage errors, 3 when the set-up failed.
#include <signal.h>
#include <stdlib.h>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "agentbus/identity.hpp"
#include "agentbus/status.hpp"
#include "bench.hpp"

namespace agentbus::bench {
namespace {

std::string exe_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

fs::path make_temp_dir() {
  const char* root = std::getenv("TMPDIR");
  std::string tmpl = std::string(root && *root ? root : "/tmp") + "/agentbus-bench-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  return fs::path(buf.data());
}

}  // namespace
}  // namespace agentbus::bench

int main(int argc, char** argv) {
  using namespace agentbus;
  using namespace agentbus::bench;
  bench_options o;
  CLI::App app{"agentbus-bench: envelopes/s, end-to-end latency, rejections and TPM signatures/s through a broker "
               "(or a plain ZeroMQ relay for comparison); --suite runs every comparison row in one table"};
  app.add_option("--agents", o.agents, "Agents: N/2 senders, the rest receivers (at least 1 + 1)")
      ->capture_default_str()->check(CLI::Range(2, 256));
  app.add_option("--messages", o.messages, "Envelopes to send in the measured run (--suite: per row, default 50000)")
      ->capture_default_str()->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  app.add_option("--size", o.size, "Payload bytes (at least 24: timestamp and index)")->capture_default_str()
      ->check(CLI::Range(std::size_t{kHeaderBytes}, std::size_t{1u << 20}));
  app.add_option("--mode", o.mode,
                 "agentbus (signed, MACed, through the broker), plain (ZeroMQ relay, no crypto) or curve (the relay "
                 "with CurveZMQ on every hop)")
      ->capture_default_str()->check(CLI::IsMember({"agentbus", "plain", "curve"}));
  app.add_flag("--software", o.software, "Software identity keys instead of one swtpm per agent");
  app.add_flag("--batch", o.batch, "tpm-batch: one TPM signature per Merkle batch of envelopes (TPM keys only)");
  app.add_flag("--federated", o.federated,
               "agentbus mode: the senders at one broker and the receivers at another, the two federated over a "
               "nats-server the bench starts on loopback (TPM keys)");
  app.add_option("--wire-batches", o.wire_batches,
                 "With --batch: both (agent->broker and broker fan-out), in (agent->broker only), off")
      ->check(CLI::IsMember({"both", "in", "off"}))
      ->capture_default_str();
  app.add_flag("--suite", o.suite,
               "Run, for each --sizes, the plain relay, the CurveZMQ relay, agentbus with software keys, agentbus tpm "
               "direct and agentbus tpm-batch (swtpm), each with a fresh broker and agents, and print one table");
  app.add_option("--sizes", o.sizes, "--suite: payload sizes, comma-separated")
      ->delimiter(',')->capture_default_str()->check(CLI::Range(std::size_t{kHeaderBytes}, std::size_t{1u << 20}));
  app.add_option("--direct-messages", o.direct_messages,
                 "--suite: envelopes for the tpm direct row (one TPM signature each, so capped)")
      ->capture_default_str()->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  app.add_option("--sign-samples", o.sign_samples, "--suite: signatures in the swtpm-alone signing loop")
      ->capture_default_str()->check(CLI::Range(1, 1'000'000));
  app.add_option("--idle-agents", o.idle_agents,
                 "agentbus mode: enrol this many extra software-key agents that stay connected and idle during the "
                 "run; prints the broker's resident set before, after and at the end")
      ->capture_default_str()->check(CLI::Range(0, 100'000));
  app.add_option("--idle-role", o.idle_role, "Role of the idle agents (must allow software keys)")->capture_default_str();
  app.add_option("--idle-parallel", o.idle_parallel, "Idle agents enrolled at once")->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--idle-settle", o.idle_settle, "Seconds of idle CPU measured after the idle agents enrol")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  app.add_option("--duration", o.duration,
                 "Run for this many seconds at --rate (messages = rate x duration) instead of --messages, sampling the "
                 "broker's resident set every --sample-interval")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sample-interval", o.sample_interval, "Seconds between broker RSS samples")->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  app.add_option("--broker", o.broker, "Endpoint of a running broker (default: start one)");
  app.add_option("--broker-fingerprint", o.broker_fingerprint,
                 "With --broker: its identity's fingerprint (`agentbus-trust broker`); without it the agents enrol with "
                 "any broker (logged)");
  app.add_option("--admin", o.admin, "With --broker: its admin endpoint, to issue the agents' enrolment tokens");
  app.add_option("--operator-key", o.operator_key_dir,
                 "With --admin: an operator's key directory (listed under [operators] in the broker's policy)");
  app.add_option("--operator", o.operator_name, "With --operator-key: the operator's name in the policy");
  app.add_option("--broker-hwm", o.broker_hwm, "send_hwm and recv_hwm of the broker the bench starts (envelopes "
                                               "queued per connection: bounds its memory under a burst)")
      ->capture_default_str()->check(CLI::Range(1, 1'000'000));
  app.add_option("--broker-bin", o.broker_bin, "agentbus-broker to start (default: ../broker/agentbus-broker next to this binary)");
  app.add_option("--policy", o.policy_file, "Policy for the agents and the started broker (default: config/policy.toml)");
  app.add_option("--role", o.role, "Role of every bench agent; must be allowed to send to itself (and to use "
                                   "software keys with --software)")->capture_default_str();
  app.add_option("--transport", o.transport,
                 "agentbus mode: the started broker's endpoint the agents use: ipc, tcp (loopback, plain) or curve "
                 "(loopback, CurveZMQ)")
      ->capture_default_str()->check(CLI::IsMember({"ipc", "tcp", "curve"}));
  app.add_option("--plain-endpoint", o.plain_endpoint, "Relay endpoint in plain mode (default: ipc in a temp dir)");
  app.add_option("--rate", o.rate, "Offered load in envelopes/s over all senders (0 = as fast as they can: latency "
                                   "then includes queueing behind the whole burst)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--timeout", o.timeout, "Overall time limit in seconds (per row with --suite)")->capture_default_str();
  app.add_option("--stall", o.stall, "Give up after this many seconds without progress")->capture_default_str();
  app.add_flag("--json", o.json, "Print one JSON object instead of the table");
  app.add_flag("--keep-temp", o.keep_temp, "Keep the temp dir (broker config, log, keys)");
  app.add_option("--log-level", o.log_level, "Library log level on stderr (and the started broker's, in its log file)")->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  try {
    app.parse(argc, argv);
    if (o.suite) {
      if (o.idle_agents > 0 || o.duration > 0)
        throw CLI::ValidationError("--suite", "--idle-agents and --duration apply to a single-mode run, not --suite");
      if (o.broker.size() || o.software || o.batch || app.count("--mode") || app.count("--size") || app.count("--transport"))
        throw CLI::ValidationError("--suite",
                                   "--suite picks its own rows: drop --mode, --software, --batch, --size, --broker, --transport");
      if (o.sizes.empty()) throw CLI::ValidationError("--sizes", "at least one size");
      if (app.count("--messages") == 0) o.messages = 50'000;
    }
    if (o.duration > 0) {
      if (o.rate <= 0) throw CLI::ValidationError("--duration", "needs --rate (the offered envelopes/s)");
      if (app.count("--messages")) throw CLI::ValidationError("--duration", "replaces --messages: give one of them");
      o.messages = static_cast<std::uint64_t>(std::ceil(o.rate * o.duration));
      // The whole run must fit the overall time limit.
      o.timeout = std::max(o.timeout, o.duration + 120);
    }
    if (o.transport != "ipc" && (o.mode != "agentbus" || o.broker.size() || o.idle_agents > 0))
      throw CLI::ValidationError("--transport", "applies to the broker an agentbus-mode run starts, without --idle-agents");
    if (o.idle_agents > 0 && o.mode != "agentbus")
      throw CLI::ValidationError("--idle-agents", "enrols agentbus agents: use it with --mode agentbus");
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("agentbus-bench"));
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (o.broker_bin.empty()) o.broker_bin = (fs::path(exe_dir()) / ".." / "broker" / "agentbus-broker").lexically_normal().string();
  if (o.policy_file.empty()) {
    fs::path here = "config/policy.toml";
    fs::path source = fs::path(exe_dir()) / ".." / ".." / "config" / "policy.toml";
    o.policy_file = fs::exists(here) ? here.string() : source.lexically_normal().string();
  }
  // A sender blocked on a vanished peer must not kill us with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);

  fs::path tmp;
  int rc = 0;
  try {
    tmp = make_temp_dir();
    if (o.suite) {
      rc = run_suite(o, tmp);
    } else {
      collector col;
      bench_result r = o.mode == "agentbus" ? run_agentbus(o, tmp, col) : run_plain(o, tmp, col);
      report(o, r, col);
      std::uint64_t delivered = col.received.load();
      if (delivered < o.messages) {
        fmt::print(stderr, "agentbus-bench: {} of {} envelopes were not delivered\n", o.messages - delivered, o.messages);
        rc = 1;
      }
    }
  } catch (const enrolment_error& e) {
    fmt::print(stderr, "agentbus-bench: enrolment refused: {}: {}\n", status_code_name(e.code()), e.what());
    rc = 3;
  } catch (const std::exception& e) {
    fmt::print(stderr, "agentbus-bench: {}\n", e.what());
    rc = 3;
  }
  if (!tmp.empty()) {
    // Keep it when asked, or after a failed set-up that left a broker log to read.
    if (o.keep_temp || (rc == 3 && (fs::exists(tmp / "broker.log") || o.suite))) {
      fmt::print(stderr, "agentbus-bench: temp dir kept: {}\n", tmp.string());
    } else {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    }
  }
  return rc;
}
