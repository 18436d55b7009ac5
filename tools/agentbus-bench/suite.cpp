// suite.cpp — agentbus-bench --suite: issue 5's comparison in one run and one
// table. For every payload size, five rows, each with a fresh relay or broker and
// fresh agents (run_plain / run_agentbus, as single-mode runs use them):
//
//   plain      ZeroMQ DEALER -> ROUTER -> DEALER relay, no crypto (the baseline)
//   curve      the same relay with CurveZMQ on every hop
//   software   agentbus, software identity keys
//   tpm        agentbus, one swtpm signature per envelope (--direct-messages)
//   tpm-batch  agentbus, one swtpm signature per Merkle batch
//   tcp-batch  tpm-batch with the agents on the broker's tcp:// endpoint, plain
//   curve-batch tpm-batch with the agents on tcp://, CurveZMQ (the default on TCP)
//   federated  tpm-batch with the senders at one broker and the receivers at another,
//              the two federated over a nats-server on loopback (a cross-broker hop)
//
// (the agentbus rows above tcp-batch use the broker's ipc:// endpoint)
// and, once, the rate at which swtpm alone signs with the role's identity key
// (no bus), which the tpm row is compared with (target: within 20%).
#include <sys/utsname.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"
#include "bench.hpp"
#include "process_stats.hpp"
#include "tpm_counters.hpp"

namespace agentbus::bench {
namespace {

using testing::swtpm_process;

using json = nlohmann::ordered_json;

struct row_spec {
  const char* name;
  const char* what;
  const char* mode;
  bool software;
  bool batch;
  bool direct;  // one TPM signature per envelope: --direct-messages
  const char* transport = "ipc";  // agentbus rows: ipc, tcp (plain) or curve
  bool federated = false;         // senders and receivers at two brokers over NATS
};

constexpr row_spec kRows[] = {
    {"plain", "ZeroMQ relay, no crypto", "plain", false, false, false},
    {"curve", "ZeroMQ relay, CurveZMQ on every hop", "curve", false, false, false},
    {"software", "agentbus, software keys", "agentbus", true, false, false},
    {"tpm", "agentbus tpm direct, swtpm (one signature per envelope)", "agentbus", false, false, true},
    {"tpm-batch", "agentbus tpm-batch, swtpm (one signature per Merkle batch)", "agentbus", false, true, false},
    {"tcp-batch", "agentbus tpm-batch over plain TCP (loopback)", "agentbus", false, true, false, "tcp"},
    {"curve-batch", "agentbus tpm-batch over CurveZMQ TCP (loopback)", "agentbus", false, true, false, "curve"},
    {"federated", "agentbus tpm-batch, senders and receivers at two brokers federated over NATS (loopback)", "agentbus",
     false, true, false, "ipc", true},
};

struct row_result {
  const row_spec* spec = nullptr;
  std::size_t size = 0;
  std::uint64_t messages = 0;
  bench_result result;
  run_summary summary;
  std::string error;  // set-up failed: no numbers
  bool complete() const {
    return error.empty() && !result.timed_out && summary.delivered >= messages && summary.rejected == 0 &&
           result.send_errors == 0;
  }
};

// ---------------------------------------------------------------- swtpm alone

struct sign_loop {
  int signatures = 0;
  double seconds = 0, per_s = 0, mean_ms = 0;
  double cpu_s = 0;                               // this process + swtpm over the loop
  std::map<std::string, std::uint64_t> tpm_ops;  // during the loop
};

struct sign_rate : sign_loop {
  std::string suite;
  // The same signatures over kReloadKeys keys in turn: the TPM layer keeps at most 2
  // keys loaded (swtpm holds 3 objects, one is the storage key), so every signature
  // needs a Load (and the eviction a flush) first: what keeping keys loaded saves.
  sign_loop reloading;
};
constexpr int kReloadKeys = 3;

// measure_sign_rate creates the role's identity keys on a private swtpm and signs
// o.sign_samples distinct 256-byte messages in a tight loop, through the same
// identity_key::sign_message the agents seal with, but no bus: first with one key
// (it stays loaded), then with kReloadKeys keys in turn (each signature reloads one).
sign_rate measure_sign_rate(const bench_options& o, const fs::path& dir) {
  auto pol = policy::load_file(o.policy_file);
  auto role_suite = pol.suite_for(o.role);
  if (!role_suite) throw std::runtime_error("role " + o.role + ": " + role_suite.error().to_string());
  swtpm_process sw;
  auto t = std::make_shared<tpm::tpm>(sw.tcti());
  std::vector<std::shared_ptr<identity_key>> keys;
  for (int k = 0; k < kReloadKeys; ++k) {
    auto key = identity_key::create_tpm(dir / fmt::format("key-{}", k), o.role, *role_suite, t);
    if (!key) throw std::runtime_error("creating a TPM key: " + key.error().to_string());
    keys.push_back(std::move(key).value());
  }
  bytes msg(256, 0x5a);
  auto sign_one = [&](int i, identity_key& key) {
    std::memcpy(msg.data(), &i, sizeof i);
    auto sig = key.sign_message(msg);
    if (!sig) throw std::runtime_error("swtpm signing loop: " + sig.error().to_string());
  };
  auto timed_loop = [&](int key_count) {
    for (int i = 0; i < 5; ++i) sign_one(-1 - i, *keys[static_cast<std::size_t>(i % key_count)]);  // warm
    sign_loop r;
    r.signatures = o.sign_samples;
    cpu_meter cpu;
    cpu.add(sw.pid(), "swtpm");
    const auto ops_before = tpm_op_counts({t});
    const double cpu_before = cpu.sample();
    auto t0 = steady::now();
    for (int i = 0; i < o.sign_samples; ++i) sign_one(i, *keys[static_cast<std::size_t>(i % key_count)]);
    r.seconds = std::chrono::duration<double>(steady::now() - t0).count();
    r.cpu_s = cpu.sample() - cpu_before;
    r.tpm_ops = tpm_ops_since(ops_before, tpm_op_counts({t}));
    r.per_s = r.seconds > 0 ? r.signatures / r.seconds : 0;
    r.mean_ms = r.signatures > 0 ? 1e3 * r.seconds / r.signatures : 0;
    return r;
  };
  sign_rate r;
  static_cast<sign_loop&>(r) = timed_loop(1);
  r.suite = role_suite->name;
  r.reloading = timed_loop(kReloadKeys);
  return r;
}

// ---------------------------------------------------------------- machine

std::string first_value(const char* file, const std::string& key) {
  std::ifstream f(file);
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(key, 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return {};
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string one, five, fifteen;
  f >> one >> five >> fifteen;
  return one.empty() ? std::string("?") : one + " " + five + " " + fifteen;
}

std::string command_output(const char* cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd, "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

json machine_info(const std::string& load_start, const std::string& load_end) {
  json m;
  utsname u{};
  ::uname(&u);
  m["hostname"] = u.nodename;
  m["kernel"] = fmt::format("{} {} {}", u.sysname, u.release, u.machine);
  m["cpus_online"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  m["cpu_model"] = first_value("/proc/cpuinfo", "model name");
  m["mem_total"] = first_value("/proc/meminfo", "MemTotal");
  std::string sw = command_output("swtpm --version 2>&1");
  m["swtpm"] = sw.substr(0, sw.find('\n'));
  m["loadavg_start"] = load_start;
  m["loadavg_end"] = load_end;
  return m;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ---------------------------------------------------------------- one row

row_result run_row(const bench_options& base, const row_spec& spec, std::size_t size, const fs::path& tmp) {
  bench_options o = base;
  o.mode = spec.mode;
  o.software = spec.software;
  o.batch = spec.batch;
  o.transport = spec.transport;
  o.federated = spec.federated;
  o.size = size;
  o.messages = spec.direct ? base.direct_messages : base.messages;
  o.json = false;
  row_result row;
  row.spec = &spec;
  row.size = size;
  row.messages = o.messages;
  fs::path dir = tmp / fmt::format("{}-{}", spec.name, size);
  fs::create_directories(dir);
  collector col;
  try {
    row.result = o.mode == "agentbus" ? run_agentbus(o, dir, col) : run_plain(o, dir, col);
    row.summary = summarize(row.result, col);
  } catch (const enrolment_error& e) {
    row.error = fmt::format("enrolment refused: {}: {}", status_code_name(e.code()), e.what());
  } catch (const std::exception& e) {
    row.error = e.what();
  }
  // Keep a failed row's directory (broker config and log) for the report.
  if (row.error.empty() && !base.keep_temp) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return row;
}

const row_result* find_row(const std::vector<row_result>& rows, const char* name, std::size_t size) {
  for (const auto& r : rows)
    if (r.size == size && std::string_view(r.spec->name) == name && r.error.empty()) return &r;
  return nullptr;
}

std::optional<double> ratio_to_plain(const std::vector<row_result>& rows, const row_result& r) {
  const row_result* plain = find_row(rows, "plain", r.size);
  if (!r.error.empty() || !plain || plain->summary.eps <= 0) return std::nullopt;
  return r.summary.eps / plain->summary.eps;
}

// ---------------------------------------------------------------- output

void print_table(const bench_options& o, const std::vector<row_result>& rows, const std::optional<sign_rate>& sr,
                 const std::string& sign_error, const std::string& suite_name, const std::string& load_start) {
  const int senders = std::max(1, o.agents / 2), receivers = std::max(1, o.agents - senders);
  fmt::print("agentbus-bench --suite   role {} ({})   {} sender{} -> {} receiver{}   rate {}   load avg at start {}\n",
             o.role, suite_name, senders, senders == 1 ? "" : "s", receivers, receivers == 1 ? "" : "s",
             o.rate > 0 ? fmt::format("{:g}/s", o.rate) : std::string("max"), load_start);
  fmt::print("  envelopes per row {} (tpm direct {}); each row a fresh relay/broker and fresh agents\n", o.messages,
             o.direct_messages);
  if (sr) {
    auto ops_of = [](const sign_loop& l) {
      std::string ops;
      for (auto& [op, n] : l.tpm_ops)
        ops += fmt::format("{}{} {:.2f}", ops.empty() ? "" : ", ", op, static_cast<double>(n) / l.signatures);
      return ops.empty() ? std::string("none") : ops;
    };
    fmt::print("  swtpm alone: {} signatures with the role's identity key in {:.3f} s = {:.0f} signatures/s "
               "({:.3f} ms each; TPM ops per signature: {}), no bus\n",
               sr->signatures, sr->seconds, sr->per_s, sr->mean_ms, ops_of(*sr));
    const sign_loop& re = sr->reloading;
    fmt::print("  swtpm alone, {} keys in turn (each signature reloads its key): {:.0f} signatures/s ({:.3f} ms each; "
               "TPM ops per signature: {}): keeping the key loaded saves {:.3f} ms a signature\n",
               kReloadKeys, re.per_s, re.mean_ms, ops_of(re), re.mean_ms - sr->mean_ms);
  } else {
    fmt::print("  swtpm alone: not measured: {}\n", sign_error);
  }
  fmt::print("\n{:<11} {:>6} {:>12} {:>9} {:>9} {:>9} {:>11} {:>10} {:>8}\n", "row", "size", "envelopes/s", "p50 ms",
             "p99 ms", "max ms", "CPU s/100k", "TPM sig/s", "x plain");
  std::size_t last_size = 0;
  for (const auto& r : rows) {
    if (last_size != 0 && r.size != last_size) fmt::print("\n");
    last_size = r.size;
    if (!r.error.empty()) {
      fmt::print("{:<11} {:>6}   FAILED: {}\n", r.spec->name, r.size, r.error.substr(0, r.error.find('\n')));
      continue;
    }
    const auto& s = r.summary;
    auto ratio = ratio_to_plain(rows, r);
    fmt::print("{:<11} {:>6} {:>12.0f} {:>9.3f} {:>9.3f} {:>9.3f} {:>11.3f} {:>10} {:>8}{}\n", r.spec->name, r.size, s.eps,
               s.p50, s.p99, s.max, s.cpu_per_100k, r.result.tpm_counted ? fmt::format("{:.0f}", s.tpm_sig_rate) : "-",
               ratio ? fmt::format("{:.3f}", *ratio) : "-", r.complete() ? "" : "  INCOMPLETE");
  }

  fmt::print("\n");
  if (sr && sr->per_s > 0) {
    std::string line;
    for (const auto& r : rows)
      if (r.error.empty() && r.spec->direct)
        line += fmt::format("{}{} B {:.2f}x", line.empty() ? "" : ", ", r.size, r.summary.eps / sr->per_s);
    if (!line.empty()) fmt::print("tpm direct / swtpm alone (target >= 0.80x): {}\n", line);
  }
  // What each row's CPU figure counts, once per kind of row.
  std::set<std::string> seen;
  for (const auto& r : rows) {
    if (!r.error.empty() || !seen.insert(r.spec->name).second) continue;
    fmt::print("CPU {:<12} {}{}\n", std::string(r.spec->name) + ":", r.result.cpu_scope,
               r.result.cpu_counted ? "" : " (some processes could not be read)");
  }
  if (o.rate <= 0)
    fmt::print("Latency at rate max includes queueing behind the whole burst (see --rate for per-envelope latency).\n");
  for (const auto& r : rows) {
    if (!r.error.empty() || r.complete()) continue;
    std::string rej;
    for (auto& [k, v] : r.summary.rejections) rej += fmt::format(" {}={}", k, v);
    std::string errs;
    for (auto& [k, v] : r.result.send_error_codes) errs += fmt::format(" {}={}", k, v);
    fmt::print("{} {} B: delivered {} of {} (sent {}), rejected {}{}, send errors {}{}{}\n", r.spec->name, r.size,
               r.summary.delivered, r.messages, r.result.sent, r.summary.rejected, rej, r.result.send_errors, errs,
               r.result.timed_out ? ", stopped waiting (no progress or --timeout)" : "");
  }
}

json suite_json(const bench_options& o, const std::vector<row_result>& rows, const std::optional<sign_rate>& sr,
                const std::string& sign_error, const std::string& suite_name, const std::string& started,
                const std::string& load_start, double total_s) {
  json j;
  j["bench"] = "agentbus-bench --suite";
  j["format"] = 1;
  j["started_utc"] = started;
  j["total_s"] = round_to(total_s, 2);
  j["machine"] = machine_info(load_start, loadavg());
  const int senders = std::max(1, o.agents / 2), receivers = std::max(1, o.agents - senders);
  j["parameters"] = {{"sizes", o.sizes},
                     {"messages", o.messages},
                     {"direct_messages", o.direct_messages},
                     {"sign_samples", o.sign_samples},
                     {"agents", senders + receivers},
                     {"senders", senders},
                     {"receivers", receivers},
                     {"role", o.role},
                     {"suite", suite_name},
                     {"rate", o.rate > 0 ? json(o.rate) : json()},
                     {"policy", o.policy_file}};
  if (sr) {
    auto loop_json = [](const sign_loop& l) {
      return json{{"signatures", l.signatures},    {"seconds", round_to(l.seconds, 4)}, {"per_s", round_to(l.per_s, 1)},
                  {"mean_ms", round_to(l.mean_ms, 4)}, {"cpu_s", round_to(l.cpu_s, 3)},    {"tpm_ops", l.tpm_ops}};
    };
    j["swtpm_sign"] = loop_json(*sr);
    j["swtpm_sign"]["suite"] = sr->suite;
    j["swtpm_sign"]["reloading"] = loop_json(sr->reloading);
    j["swtpm_sign"]["reloading"]["keys"] = kReloadKeys;
  } else {
    j["swtpm_sign"] = {{"error", sign_error}};
  }
  json arr = json::array();
  bool all_complete = true;
  for (const auto& r : rows) {
    json row;
    row["row"] = r.spec->name;
    row["transport"] = std::string_view(r.spec->mode) == "agentbus" ? r.spec->transport : "ipc";
    row["description"] = r.spec->what;
    row["size"] = r.size;
    row["complete"] = r.complete();
    all_complete = all_complete && r.complete();
    if (!r.error.empty()) {
      row["messages"] = r.messages;
      row["error"] = r.error;
      arr.push_back(std::move(row));
      continue;
    }
    bench_options ro = o;
    ro.mode = r.spec->mode;
    ro.size = r.size;
    ro.messages = r.messages;
    row.update(run_to_json(ro, r.result, r.summary));
    auto ratio = ratio_to_plain(rows, r);
    row["ratio_to_plain"] = ratio ? json(round_to(*ratio, 4)) : json();
    if (r.spec->direct)
      row["ratio_to_swtpm_sign"] = sr && sr->per_s > 0 ? json(round_to(r.summary.eps / sr->per_s, 4)) : json();
    arr.push_back(std::move(row));
  }
  j["rows"] = std::move(arr);
  j["complete"] = all_complete;
  return j;
}

}  // namespace

int run_suite(const bench_options& o, const fs::path& tmp) {
  const std::string started = utc_now();
  const std::string load_start = loadavg();
  auto t_start = steady::now();
  std::string suite_name = "?";
  try {
    auto pol = policy::load_file(o.policy_file);
    if (auto s = pol.suite_for(o.role)) suite_name = s->name;
  } catch (const std::exception& e) {
    throw std::runtime_error("policy " + o.policy_file + ": " + e.what());
  }

  std::optional<sign_rate> sr;
  std::string sign_error;
  progress(fmt::format("swtpm alone: {} signatures with a {} identity key", o.sign_samples, o.role));
  try {
    fs::path dir = tmp / "sign-rate";
    sr = measure_sign_rate(o, dir);
    std::error_code ec;
    if (!o.keep_temp) fs::remove_all(dir, ec);
  } catch (const std::exception& e) {
    sign_error = e.what();
  }

  std::vector<row_result> rows;
  const std::size_t total = o.sizes.size() * std::size(kRows);
  for (std::size_t size : o.sizes) {
    for (const auto& spec : kRows) {
      progress(fmt::format("[{}/{}] {} {} B", rows.size() + 1, total, spec.name, size));
      rows.push_back(run_row(o, spec, size, tmp));
      const auto& r = rows.back();
      if (!r.error.empty()) progress(fmt::format("{} {} B failed: {}", spec.name, size, r.error));
    }
  }
  const double total_s = std::chrono::duration<double>(steady::now() - t_start).count();

  if (o.json) {
    fmt::print("{}\n", suite_json(o, rows, sr, sign_error, suite_name, started, load_start, total_s).dump(2));
  } else {
    print_table(o, rows, sr, sign_error, suite_name, load_start);
    fmt::print("Suite took {:.1f} s.\n", total_s);
  }

  bool failed = !sr;
  bool incomplete = false;
  for (const auto& r : rows) {
    failed = failed || !r.error.empty();
    incomplete = incomplete || !r.complete();
  }
  return failed ? 3 : incomplete ? 1 : 0;
}

}  // namespace agentbus::bench
