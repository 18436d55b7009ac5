// bench.hpp — what agentbus-bench's parts share: the options, the receivers'
// collector, one run's result and its summary, and the run functions
// (agentbus_mode.cpp, relay_mode.cpp) that the single-mode report (report.cpp)
// and the suite (suite.cpp) both drive.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/status.hpp"
#include "process_stats.hpp"

namespace agentbus::bench {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------- options

struct bench_options {
  int agents = 2;
  std::uint64_t messages = 20000;
  std::size_t size = 256;
  std::string mode = "agentbus";
  bool software = false;
  bool batch = false;
  // federated: the senders at one broker, the receivers at another, the two brokers
  // federated over a NATS server the bench starts (the suite's `federated` row).
  bool federated = false;  // tpm-batch: Merkle batch signing
  // agentbus mode: the broker endpoint the agents use: "ipc", "tcp" (loopback, plain)
  // or "curve" (loopback, CurveZMQ as on any tcp:// endpoint by default).
  std::string transport = "ipc";
  // Wire batches with --batch: "both" (agent -> broker and the broker's fan-out),
  // "in" (agent -> broker only; the broker forwards envelope by envelope), "off".
  std::string wire_batches = "both";
  std::string broker;          // use a running broker
  // With --broker: its fingerprint (else agents enrol with any broker, logged), and
  // the operator access that issues tokens (else agents present none).
  std::string broker_fingerprint, admin, operator_key_dir, operator_name;
  int broker_hwm = 10000;      // send_hwm / recv_hwm of a broker we start
  std::string broker_bin;      // default: <dir of this binary>/../broker/agentbus-broker
  std::string policy_file;     // default: config/policy.toml (cwd, then the source tree)
  std::string role = "DEBUGGER";
  std::string plain_endpoint;  // default: ipc://<temp>/plain.sock
  double rate = 0;             // envelopes/s over all senders; 0 = as fast as possible
  double timeout = 600;        // overall seconds
  double stall = 20;           // seconds without progress before giving up
  bool json = false;
  bool keep_temp = false;
  std::string log_level = "warn";

  // --suite: every row for every size in one run (suite.cpp).
  bool suite = false;
  std::vector<std::size_t> sizes{64, 256, 1024, 16384};
  std::uint64_t direct_messages = 3000;  // the tpm direct row (one TPM signature per envelope)
  int sign_samples = 300;                // the swtpm-alone signing loop

  // Memory: idle software-key agents enrolled beside the measured ones, and a
  // timed run (messages = rate × duration) that samples the broker's RSS.
  int idle_agents = 0;
  std::string idle_role = "DEBUGGER";
  int idle_parallel = 4;        // agents enrolled at once
  double idle_settle = 2;       // seconds of idle CPU measured after they enrol
  double duration = 0;          // seconds; 0 = --messages
  double sample_interval = 10;  // seconds between broker RSS samples
};

// ---------------------------------------------------------------- payload

// Payload layout (little-endian host order; both ends are this process):
//   [0]      kind: 0 warm-up, 1 measured
//   [8..16)  steady_clock nanoseconds just before send
//   [16..24) message index
//   rest     filler
constexpr std::size_t kHeaderBytes = 24;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- collector

// collector gathers what the receivers see; every method is thread-safe.
struct collector {
  std::atomic<std::uint64_t> warmups{0};
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::int64_t> last_receive_ns{0};
  std::atomic<std::uint64_t> rejected{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::map<std::string, std::uint64_t> rejections;

  void on_payload(const std::uint8_t* data, std::size_t size) {
    std::int64_t t = now_ns();
    if (size < kHeaderBytes) {
      ++malformed;
      return;
    }
    if (data[0] == 0) {
      ++warmups;
      return;
    }
    std::int64_t ts;
    std::memcpy(&ts, data + 8, 8);
    {
      std::lock_guard lock(mu);
      latencies_ms.push_back(static_cast<double>(t - ts) / 1e6);
    }
    std::int64_t prev = last_receive_ns.load();
    while (prev < t && !last_receive_ns.compare_exchange_weak(prev, t)) {
    }
    ++received;
  }
  void on_rejection(const rejection& r) {
    std::lock_guard lock(mu);
    ++rejections[fmt::format("{}:{}", r.where, status_code_name(r.reason.code()))];
    ++rejected;
  }
};

// ---------------------------------------------------------------- result

// memory_report is the broker's resident set around the idle agents and during
// the measured window; only filled when the bench started the broker (its pid).
struct memory_report {
  bool measured = false;
  int idle_agents = 0;
  double idle_enrol_s = 0;
  std::optional<std::uint64_t> before_idle_kib, after_idle_kib, end_kib;
  // CPU the idle agents cost while nothing else runs (idle_settle seconds), in
  // percent of one core: this process (where they live) and the broker.
  double idle_cpu_bench_pct = 0, idle_cpu_broker_pct = 0;
  // This process's threads and descriptors before and after enrolling them.
  std::optional<std::uint64_t> threads_before, threads_after, fds_before, fds_after;
  std::uint64_t idle_reenrolments = 0;  // times the broker forgot an idle agent and it enrolled again
  std::vector<rss_sampler::sample> samples;  // start of the measured window, every sample_interval, end
};

struct bench_result {
  std::string keys;        // "tpm (swtpm per agent)", "software", "none"
  std::string suite;
  std::string broker;      // endpoint, and whether we started it
  int senders = 0, receivers = 0;
  std::uint64_t attempted = 0, sent = 0, send_errors = 0, overloaded_retries = 0;
  std::map<std::string, std::uint64_t> send_error_codes;
  double setup_s = 0, warmup_s = 0, wall_s = 0;
  std::uint64_t tpm_signatures = 0;
  std::map<std::string, std::uint64_t> tpm_ops;  // during the measured window
  bool tpm_counted = false;
  bool timed_out = false;
  // CPU seconds (user + system) over the measured window, of every process the
  // run involves: this one, the broker it started, the swtpm processes.
  double cpu_s = 0;
  bool cpu_counted = false;
  std::string cpu_scope;  // e.g. "bench + broker + 3 swtpm"
  memory_report memory;
};

// run_summary is what a report prints about one run, computed from its result
// and what the receivers collected.
struct run_summary {
  std::uint64_t delivered = 0, lost = 0, rejected = 0;
  std::map<std::string, std::uint64_t> rejections;
  double eps = 0;                              // delivered envelopes per second of wall time
  double p50 = 0, p99 = 0, max = 0, mean = 0;  // end-to-end latency, ms
  double tpm_sig_rate = 0;                     // TPM signatures per second of wall time
  double cpu_per_100k = 0;                     // CPU seconds per 100 000 delivered envelopes
};

run_summary summarize(const bench_result& r, collector& col);

// run_to_json is one run as the JSON object single-mode --json prints (and each
// suite row extends); memory_to_json the broker memory part of it.
nlohmann::ordered_json run_to_json(const bench_options& o, const bench_result& r, const run_summary& sm);
nlohmann::ordered_json memory_to_json(const memory_report& m);

// round_to rounds for printing (JSON keeps every digit otherwise).
double round_to(double v, int decimals);

// report prints one single-mode run: the table, or with o.json one JSON object
// (report.cpp).
void report(const bench_options& o, const bench_result& r, collector& col);

// ---------------------------------------------------------------- runs

// run_agentbus runs o.messages envelopes through an agentbus broker (started in
// `tmp` unless o.broker names one) with fresh agents; run_plain through the
// in-process ZeroMQ relay (o.mode "plain" or "curve"). Both throw
// std::runtime_error (or enrolment_error) when the set-up fails.
bench_result run_agentbus(const bench_options& o, const fs::path& tmp, collector& col);
bench_result run_plain(const bench_options& o, const fs::path& tmp, collector& col);

// run_suite runs every suite row for every size in o.sizes, each in a fresh
// sub-directory of `tmp`, prints one table (or one JSON object) and returns the
// exit code: 0 all delivered, 1 some lost or refused, 3 a row could not be set up.
int run_suite(const bench_options& o, const fs::path& tmp);

// progress goes to stderr, so that --json leaves stdout with one object.
void progress(const std::string& text);

}  // namespace agentbus::bench
