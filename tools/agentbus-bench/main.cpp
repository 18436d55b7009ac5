// agentbus-bench — load generator: envelopes per second, end-to-end latency,
// rejections and TPM signatures per second, through a real broker.
//
//   --mode agentbus  N in-process agents (N/2 senders, the rest receivers), each
//                    with its own identity: one private swtpm per agent (or
//                    --software keys), through an agentbus-broker process it
//                    starts with a temp config (or a running one: --broker).
//   --mode plain     the same traffic through a plain ZeroMQ DEALER -> ROUTER ->
//                    DEALER relay in this process, with no crypto: the baseline.
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
// broker, the swtpms) over the measured window (process_stats.cpp).
//
// Latency: the sender writes a steady_clock timestamp into the payload just
// before send(); the receiver subtracts it when its handler runs (both ends are
// in this process, so the clocks agree). It includes signing, the broker's checks
// and the receiver's verification. A benchmark reports numbers and asserts no
// time: the exit code is 0 when every measured envelope arrived, 1 when some were
// lost or refused, 2 for usage errors, 3 when the set-up failed.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"
#include "bench.hpp"
#include "idle_agents.hpp"
#include "process_stats.hpp"

namespace agentbus::bench {
namespace {

using testing::swtpm_process;

// ---------------------------------------------------------------- payload

void fill_payload(bytes& p, std::uint8_t kind, std::uint64_t index) {
  p[0] = kind;
  std::int64_t ts = now_ns();
  std::memcpy(p.data() + 8, &ts, 8);
  std::memcpy(p.data() + 16, &index, 8);
}

// pacer spaces one sender's envelopes for --rate (a fixed schedule from the
// start, so a slow send is caught up rather than drifting); no-op at rate 0.
struct pacer {
  pacer(double total_rate, int senders) {
    if (total_rate > 0) interval = std::chrono::duration<double>(static_cast<double>(senders) / total_rate);
  }
  void wait(std::uint64_t k) const {
    if (interval.count() <= 0) return;
    std::this_thread::sleep_until(start + std::chrono::duration_cast<steady::duration>(interval * static_cast<double>(k)));
  }
  std::chrono::duration<double> interval{0};
  steady::time_point start = steady::now();
};

// ---------------------------------------------------------------- helpers

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

std::string tail_file(const fs::path& file, std::size_t lines) {
  std::ifstream f(file);
  std::vector<std::string> all;
  for (std::string l; std::getline(f, l);) all.push_back(l);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "    " + all[i] + "\n";
  return out;
}

// progress goes to stderr, so that --json leaves stdout with one object.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  double pos = q * static_cast<double>(sorted.size() - 1);
  auto lo = static_cast<std::size_t>(pos);
  std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

// wait_for polls `done` every 5 ms until true, the stall timeout without
// progress (as measured by `progress_value`), or the overall deadline.
bool wait_for(const std::function<bool()>& done, const std::function<std::uint64_t()>& progress_value, double stall_s,
              steady::time_point deadline) {
  std::uint64_t last = progress_value();
  auto last_change = steady::now();
  while (!done()) {
    auto now = steady::now();
    if (now >= deadline) return false;
    std::uint64_t v = progress_value();
    if (v != last) {
      last = v;
      last_change = now;
    } else if (now - last_change > std::chrono::duration<double>(stall_s)) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// ---------------------------------------------------------------- broker process

// broker_process runs agentbus-broker with a config written into the temp dir,
// killed with us (PR_SET_PDEATHSIG) and stopped with SIGTERM on destruction.
class broker_process {
 public:
  broker_process(const std::string& bin, const fs::path& dir, const fs::path& policy_file, const std::string& tcti,
                 bool software, int hwm, bool fan_out_wire_batches, const std::string& log_level) {
    if (!fs::exists(bin))
      throw std::runtime_error("broker binary " + bin + " not found (build the agentbus-broker target, or pass --broker-bin / --broker)");
    fs::create_directories(dir / "broker");
    endpoint_ = "ipc://" + (dir / "broker.sock").string();
    config_ = dir / "broker.toml";
    log_ = dir / "broker.log";
    std::ofstream cfg(config_);
    cfg << "# written by agentbus-bench\n"
        << "[broker]\nname = \"bench-broker\"\n"
        << "endpoints = [\"" << endpoint_ << "\"]\n"
        << "policy = \"" << fs::absolute(policy_file).string() << "\"\n"
        << "state_dir = \"" << (dir / "broker").string() << "\"\n\n"
        << "[identity]\nkey_dir = \"" << (dir / "broker" / "key").string() << "\"\n"
        << "tcti = \"" << tcti << "\"\n"
        << "allow_software = " << (software ? "true" : "false") << "\n"
        << "suite = \"ecdsa-p256-sha256\"\n\n"
        << "[limits]\nmax_frame_bytes = 1114112\nsend_hwm = " << hwm << "\nrecv_hwm = " << hwm << "\n"
        << "max_clock_skew_ms = 30000\nmax_agents = 10000\nmax_subscriptions_per_agent = 256\n\n"
        << "[sessions]\nrekey_after_messages = 1000000\nrekey_after_seconds = 3600\nrekey_grace_seconds = 30\n\n"
        << "[forwarding]\nwire_batches = " << (fan_out_wire_batches ? "true" : "false") << "\n\n"
        << "[logging]\nformat = \"text\"\nlevel = \"" << (log_level == "off" ? "error" : log_level) << "\"\n";
    cfg.close();

    std::vector<std::string> args{bin, "--config", config_.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) throw std::runtime_error("cannot open " + log_.string());
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      ::close(log_fd);
      throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid_ == 0) {
      // Child: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);

    // Ready when the ipc socket exists (the broker binds after loading its
    // policy and identity).
    fs::path sock = dir / "broker.sock";
    auto deadline = steady::now() + std::chrono::seconds(60);
    while (!fs::exists(sock)) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(fmt::format("the broker exited during start-up ({}); its log:\n{}",
                                             WIFEXITED(st) ? "exit " + std::to_string(WEXITSTATUS(st))
                                                           : "signal " + std::to_string(WTERMSIG(st)),
                                             tail_file(log_, 30)));
      }
      if (steady::now() > deadline) throw std::runtime_error("the broker did not bind " + endpoint_ + " within 60 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~broker_process() { stop(); }
  broker_process(const broker_process&) = delete;
  broker_process& operator=(const broker_process&) = delete;

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  const std::string& endpoint() const noexcept { return endpoint_; }
  const fs::path& log() const noexcept { return log_; }
  pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string endpoint_;
  fs::path config_, log_;
};

// ---------------------------------------------------------------- TPM counters

std::map<std::string, std::uint64_t> tpm_op_counts(const std::vector<std::shared_ptr<tpm::tpm>>& tpms) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& t : tpms)
    if (t)
      for (const auto& s : t->stats()) out[s.operation] += s.count;
  return out;
}

std::uint64_t signatures_in(const std::map<std::string, std::uint64_t>& ops) {
  std::uint64_t n = 0;
  for (const auto& [op, count] : ops)
    if (op.rfind("sign", 0) == 0) n += count;
  return n;
}

// ---------------------------------------------------------------- plain-mode helpers

void set_hwm(zmq::socket_t& s) {
  s.set(zmq::sockopt::sndhwm, 10000);
  s.set(zmq::sockopt::rcvhwm, 10000);
  s.set(zmq::sockopt::linger, 0);
}

// curve_keys is a CurveZMQ key pair in Z85 text (zmq_curve_keypair).
struct curve_keys {
  std::array<char, 41> public_key{}, secret_key{};
};
curve_keys make_curve_keys() {
  curve_keys k;
  if (zmq_curve_keypair(k.public_key.data(), k.secret_key.data()) != 0)
    throw std::runtime_error("zmq_curve_keypair failed: libzmq has no CURVE support");
  return k;
}

}  // namespace

// ---------------------------------------------------------------- agentbus mode

bench_result run_agentbus(const bench_options& o, const fs::path& tmp, collector& col) {
  bench_result res;
  auto t_setup = steady::now();
  auto pol = std::make_shared<const policy>(policy::load_file(o.policy_file));
  auto role_suite = pol->suite_for(o.role);
  if (!role_suite) throw std::runtime_error("role " + o.role + ": " + role_suite.error().to_string());
  if (status st = pol->check_send(o.role, o.role); !st.ok())
    throw std::runtime_error(fmt::format("role {} may not send to its own role ({}); pick another --role", o.role, st.to_string()));
  if (o.software) {
    const role_policy* rp = pol->find_role(o.role);
    if (rp && !rp->allow_software)
      throw std::runtime_error("role " + o.role + " refuses software keys in " + pol->source() + "; use --role DEBUGGER or a TPM");
  }
  res.suite = role_suite->name;
  res.senders = std::max(1, o.agents / 2);
  res.receivers = std::max(1, o.agents - res.senders);
  const int n = res.senders + res.receivers;

  // One private swtpm per identity (broker included), as if each ran on its own host.
  std::vector<std::unique_ptr<swtpm_process>> swtpms;
  std::vector<std::shared_ptr<tpm::tpm>> tpms(static_cast<std::size_t>(n));
  std::unique_ptr<broker_process> broker;
  std::string endpoint = o.broker;
  if (endpoint.empty()) {
    std::string broker_tcti;
    if (!o.software) {
      swtpms.push_back(std::make_unique<swtpm_process>());
      broker_tcti = swtpms.back()->tcti();
    }
    progress("starting agentbus-broker (" + o.broker_bin + ")");
    // Idle agents have software keys: the broker must admit those (their role's
    // policy must too; idle_agents checks).
    broker = std::make_unique<broker_process>(o.broker_bin, tmp, o.policy_file, broker_tcti,
                                              o.software || o.idle_agents > 0, o.broker_hwm,
                                              o.wire_batches == "both", o.log_level);
    endpoint = broker->endpoint();
    res.broker = endpoint + " (started by the bench)";
  } else {
    res.broker = endpoint + " (running broker)";
  }
  res.keys = o.software ? "software (protection=software)" : "tpm (one swtpm per agent)";

  progress(fmt::format("creating {} identities ({}, {})", n, res.suite, o.software ? "software" : "swtpm"));
  std::vector<std::shared_ptr<identity_key>> keys;
  for (int i = 0; i < n; ++i) {
    fs::path dir = tmp / "keys" / fmt::format("agent-{}", i);
    if (o.software) {
      keys.push_back(identity_key::create_software(dir, o.role, *role_suite));
    } else {
      swtpms.push_back(std::make_unique<swtpm_process>());
      tpms[static_cast<std::size_t>(i)] = std::make_shared<tpm::tpm>(swtpms.back()->tcti());
      auto k = identity_key::create_tpm(dir, o.role, *role_suite, tpms[static_cast<std::size_t>(i)]);
      if (!k) throw std::runtime_error("creating a TPM key: " + k.error().to_string());
      keys.push_back(std::move(k).value());
    }
  }

  // Agents: names are unique per run, so a running broker's TOFU pins never clash.
  std::string tag = fmt::format("{:x}", static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(now_ns()));
  std::vector<std::unique_ptr<agent>> agents;
  std::vector<std::string> names;
  progress(fmt::format("enrolling {} agents with {}", n, endpoint));
  for (int i = 0; i < n; ++i) {
    agent_options ao;
    ao.name = fmt::format("bench-{}-{}{}", tag, i < res.senders ? "s" : "r", i);
    ao.broker_endpoint = endpoint;
    ao.connect_timeout = std::chrono::seconds(30);
    ao.max_pending = 100'000;
    ao.batch_signing = o.batch;
    ao.wire_batching = o.wire_batches != "off";
    names.push_back(ao.name);
    agents.push_back(std::make_unique<agent>(ao, keys[static_cast<std::size_t>(i)], pol));
    agents.back()->on_rejected([&col](const rejection& r) { col.on_rejection(r); });
    if (i >= res.senders)
      agents.back()->on_message([&col](const message& m) { col.on_payload(m.header.payload.data(), m.header.payload.size()); });
  }
  res.setup_s = std::chrono::duration<double>(steady::now() - t_setup).count();

  // Idle agents: the broker's resident set before and after they enrol, and what
  // they cost in CPU while nothing else happens.
  const pid_t broker_pid = broker ? broker->pid() : -1;
  std::unique_ptr<idle_agents> idle;
  if (o.idle_agents > 0) {
    memory_report& m = res.memory;
    m.idle_agents = o.idle_agents;
    m.threads_before = thread_count(::getpid());
    m.fds_before = open_descriptors(::getpid());
    if (broker_pid > 0) m.before_idle_kib = resident_kib(broker_pid);
    progress(fmt::format("enrolling {} idle {} agents (software keys, {} at a time)", o.idle_agents, o.idle_role,
                         o.idle_parallel));
    auto t_idle = steady::now();
    {
      // The library warns once per software key it creates: the progress line above
      // says it once instead of N times.
      const auto level = spdlog::get_level();
      spdlog::set_level(std::max(level, spdlog::level::err));
      struct restore_level {
        spdlog::level::level_enum l;
        ~restore_level() { spdlog::set_level(l); }
      } restore{level};
      idle = std::make_unique<idle_agents>(idle_agents::options{.endpoint = endpoint,
                                                                .role = o.idle_role,
                                                                .name_prefix = fmt::format("bench-{}-idle", tag),
                                                                .key_dir = tmp / "keys",
                                                                .count = o.idle_agents,
                                                                .parallel = o.idle_parallel},
                                           pol);
    }
    m.idle_enrol_s = std::chrono::duration<double>(steady::now() - t_idle).count();
    m.threads_after = thread_count(::getpid());
    m.fds_after = open_descriptors(::getpid());
    if (o.idle_settle > 0) {
      double self_before = self_cpu_seconds();
      auto broker_before = broker_pid > 0 ? process_cpu_seconds(broker_pid) : std::nullopt;
      auto t_settle = steady::now();
      std::this_thread::sleep_for(std::chrono::duration<double>(o.idle_settle));
      double secs = std::chrono::duration<double>(steady::now() - t_settle).count();
      m.idle_cpu_bench_pct = 100.0 * (self_cpu_seconds() - self_before) / secs;
      auto broker_after = broker_pid > 0 ? process_cpu_seconds(broker_pid) : std::nullopt;
      if (broker_before && broker_after) m.idle_cpu_broker_pct = 100.0 * (*broker_after - *broker_before) / secs;
    }
    if (broker_pid > 0) m.after_idle_kib = resident_kib(broker_pid);
  }

  auto receiver_of = [&](int sender, std::uint64_t k) {
    // Sender s talks to receivers s, s+senders, ... (round robin over its share).
    int r = static_cast<int>((static_cast<std::uint64_t>(sender) + k * static_cast<std::uint64_t>(res.senders)) %
                             static_cast<std::uint64_t>(res.receivers));
    return res.senders + r;
  };

  // Warm-up: one envelope on every sender→receiver pair, so that sessions are set
  // up before the clock starts.
  auto t_warm = steady::now();
  std::uint64_t warm_expected = 0;
  bytes payload(o.size, 0xab);
  for (int s = 0; s < res.senders; ++s) {
    std::set<int> targets;  // every receiver this sender will use
    for (int k = 0; k < res.receivers; ++k) targets.insert(receiver_of(s, static_cast<std::uint64_t>(k)));
    for (int r : targets) {
      fill_payload(payload, 0, 0);
      status st = agents[static_cast<std::size_t>(s)]->send(names[static_cast<std::size_t>(r)], "application/octet-stream", payload);
      if (!st.ok()) throw std::runtime_error("warm-up send failed: " + st.to_string());
      ++warm_expected;
    }
  }
  auto deadline = steady::now() + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o.timeout));
  if (!wait_for([&] { return col.warmups.load() + col.rejected.load() >= warm_expected; },
                [&] { return col.warmups.load(); }, o.stall, deadline))
    throw std::runtime_error(fmt::format("warm-up: {}/{} envelopes arrived", col.warmups.load(), warm_expected));
  if (col.rejected.load() > 0) progress(fmt::format("warning: {} rejection(s) during the warm-up", col.rejected.load()));
  res.warmup_s = std::chrono::duration<double>(steady::now() - t_warm).count();

  // Measured run.
  auto ops_before = tpm_op_counts(tpms);
  std::uint64_t rejected_before = col.rejected.load();
  std::atomic<std::uint64_t> sent{0}, send_errors{0}, retries{0};
  std::mutex err_mu;
  std::map<std::string, std::uint64_t> err_codes;
  progress(fmt::format("sending {} envelopes of {} bytes ({} sender(s), {} receiver(s))", o.messages, o.size,
                       res.senders, res.receivers));
  // CPU of every process in the run: this one (agents, idle agents), the broker, the swtpms.
  cpu_meter cpu;
  cpu.add(broker_pid, "broker");
  for (const auto& sw : swtpms) cpu.add(sw->pid(), "swtpm");
  std::optional<rss_sampler> rss;
  if (broker_pid > 0) rss.emplace(broker_pid, std::chrono::duration<double>(o.sample_interval));
  const double cpu_before = cpu.sample();
  const std::int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int s = 0; s < res.senders; ++s) {
    std::uint64_t share = o.messages / static_cast<std::uint64_t>(res.senders) +
                          (static_cast<std::uint64_t>(s) < o.messages % static_cast<std::uint64_t>(res.senders) ? 1 : 0);
    threads.emplace_back([&, s, share] {
      bytes p(o.size, 0x5a);
      agent& a = *agents[static_cast<std::size_t>(s)];
      pacer pace(o.rate, res.senders);
      for (std::uint64_t k = 0; k < share; ++k) {
        const std::string& to = names[static_cast<std::size_t>(receiver_of(s, k))];
        pace.wait(k);
        for (;;) {
          fill_payload(p, 1, k);
          status st = a.send(to, "application/octet-stream", p);
          if (st.ok()) {
            ++sent;
            break;
          }
          if (st.code() == status_code::overloaded) {
            ++retries;
            std::this_thread::sleep_for(std::chrono::microseconds(500));
            if (steady::now() < deadline) continue;
          }
          ++send_errors;
          std::lock_guard lock(err_mu);
          ++err_codes[std::string(status_code_name(st.code()))];
          break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  bool complete = wait_for(
      [&] { return col.received.load() + (col.rejected.load() - rejected_before) >= sent.load(); },
      [&] { return col.received.load() + col.rejected.load(); }, o.stall, deadline);
  res.cpu_s = cpu.sample() - cpu_before;
  res.cpu_scope = cpu.scope();
  res.cpu_counted = cpu.missing().empty();
  if (rss) {
    res.memory.measured = true;
    res.memory.samples = rss->finish();
    res.memory.end_kib = resident_kib(broker_pid);
  }
  std::int64_t t_end = col.last_receive_ns.load();
  if (t_end < t0) t_end = now_ns();
  res.wall_s = static_cast<double>(t_end - t0) / 1e9;
  res.timed_out = !complete;
  res.attempted = o.messages;
  res.sent = sent.load();
  res.send_errors = send_errors.load();
  res.overloaded_retries = retries.load();
  res.send_error_codes = err_codes;

  if (!o.software) {
    auto ops_after = tpm_op_counts(tpms);
    for (auto& [op, count] : ops_after) {
      std::uint64_t before = ops_before.count(op) ? ops_before[op] : 0;
      if (count > before) res.tpm_ops[op] = count - before;
    }
    res.tpm_signatures = signatures_in(res.tpm_ops);
    res.tpm_counted = true;
  }

  if (idle) res.memory.idle_reenrolments = idle->reenrolments();

  // Tear down in order: agents, broker, TPM connections, swtpm processes.
  agents.clear();
  idle.reset();
  if (broker) broker->stop();
  keys.clear();
  tpms.clear();
  swtpms.clear();
  return res;
}

// ---------------------------------------------------------------- plain mode

// run_plain relays through a ZeroMQ ROUTER with no agentbus crypto; with `curve`
// every hop is a CurveZMQ connection (encrypted and authenticated per hop, no
// origin signature), the comparison issue 5 asks for. No ZAP handler: any client
// key is accepted, which costs nothing on the data path.
bench_result run_plain(const bench_options& o, const fs::path& tmp, collector& col) {
  const bool curve = o.mode == "curve";
  bench_result res;
  res.keys = curve ? "CurveZMQ per hop (no signatures, no MACs)" : "none (no signatures, no MACs)";
  const curve_keys server = curve ? make_curve_keys() : curve_keys{};
  auto secure_client = [&](zmq::socket_t& sock) {
    if (!curve) return;
    curve_keys mine = make_curve_keys();
    sock.set(zmq::sockopt::curve_serverkey, std::string(server.public_key.data()));
    sock.set(zmq::sockopt::curve_publickey, std::string(mine.public_key.data()));
    sock.set(zmq::sockopt::curve_secretkey, std::string(mine.secret_key.data()));
  };
  res.suite = "-";
  res.senders = std::max(1, o.agents / 2);
  res.receivers = std::max(1, o.agents - res.senders);
  std::string endpoint = o.plain_endpoint.empty() ? "ipc://" + (tmp / "plain.sock").string() : o.plain_endpoint;
  res.broker = endpoint + " (in-process ROUTER relay)";
  auto t_setup = steady::now();

  zmq::context_t ctx(1);
  std::atomic<bool> stop{false};
  std::atomic<int> registered{0};
  std::atomic<std::uint64_t> relay_drops{0};

  zmq::socket_t router(ctx, zmq::socket_type::router);
  set_hwm(router);
  router.set(zmq::sockopt::router_mandatory, 1);
  if (curve) {
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey, std::string(server.secret_key.data()));
  }
  router.bind(endpoint);

  std::thread relay([&] {
    std::vector<zmq::message_t> parts;
    while (!stop.load()) {
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      // Drain what is ready.
      for (;;) {
        parts.clear();
        auto got = zmq::recv_multipart(router, std::back_inserter(parts), zmq::recv_flags::dontwait);
        if (!got) break;
        if (parts.size() == 2) {  // [from, "hello"]: a receiver registers
          ++registered;
          continue;
        }
        if (parts.size() != 3) continue;
        // [from, to, payload] -> [to, from, payload]
        std::swap(parts[0], parts[1]);
        try {
          zmq::send_multipart(router, parts);
        } catch (const zmq::error_t&) {
          ++relay_drops;  // EHOSTUNREACH: unknown receiver
        }
      }
    }
  });

  std::vector<std::thread> receivers;
  for (int r = 0; r < res.receivers; ++r) {
    receivers.emplace_back([&, r] {
      zmq::socket_t s(ctx, zmq::socket_type::dealer);
      set_hwm(s);
      s.set(zmq::sockopt::routing_id, fmt::format("r{}", r));
      secure_client(s);
      s.connect(endpoint);
      s.send(zmq::str_buffer("hello"), zmq::send_flags::none);
      std::vector<zmq::message_t> parts;
      while (!stop.load()) {
        zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(100));
        if (!(item.revents & ZMQ_POLLIN)) continue;
        for (;;) {
          parts.clear();
          auto got = zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait);
          if (!got) break;
          if (parts.size() == 2) col.on_payload(static_cast<const std::uint8_t*>(parts[1].data()), parts[1].size());
        }
      }
    });
  }
  auto deadline = steady::now() + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o.timeout));
  if (!wait_for([&] { return registered.load() >= res.receivers; }, [&] { return static_cast<std::uint64_t>(registered.load()); },
                o.stall, deadline)) {
    stop = true;
    for (auto& t : receivers) t.join();
    relay.join();
    throw std::runtime_error("plain relay: receivers did not register");
  }

  auto receiver_of = [&](int sender, std::uint64_t k) {
    return static_cast<int>((static_cast<std::uint64_t>(sender) + k * static_cast<std::uint64_t>(res.senders)) %
                            static_cast<std::uint64_t>(res.receivers));
  };

  // Sender sockets are made and connected (and warmed up) before the clock starts.
  std::vector<zmq::socket_t> sockets;
  for (int s = 0; s < res.senders; ++s) {
    sockets.emplace_back(ctx, zmq::socket_type::dealer);
    set_hwm(sockets.back());
    sockets.back().set(zmq::sockopt::routing_id, fmt::format("s{}", s));
    secure_client(sockets.back());
    sockets.back().connect(endpoint);
  }
  res.setup_s = std::chrono::duration<double>(steady::now() - t_setup).count();
  auto t_warm = steady::now();
  bytes payload(o.size, 0xab);
  std::uint64_t warm_expected = 0;
  for (int s = 0; s < res.senders; ++s)
    for (int r = 0; r < res.receivers; ++r) {
      fill_payload(payload, 0, 0);
      std::string to = fmt::format("r{}", r);
      sockets[static_cast<std::size_t>(s)].send(zmq::buffer(to), zmq::send_flags::sndmore);
      sockets[static_cast<std::size_t>(s)].send(zmq::buffer(payload.data(), payload.size()), zmq::send_flags::none);
      ++warm_expected;
    }
  wait_for([&] { return col.warmups.load() >= warm_expected; }, [&] { return col.warmups.load(); }, o.stall, deadline);
  res.warmup_s = std::chrono::duration<double>(steady::now() - t_warm).count();

  std::atomic<std::uint64_t> sent{0};
  cpu_meter cpu;  // the relay, senders and receivers are all this process
  const double cpu_before = cpu.sample();
  const std::int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int s = 0; s < res.senders; ++s) {
    std::uint64_t share = o.messages / static_cast<std::uint64_t>(res.senders) +
                          (static_cast<std::uint64_t>(s) < o.messages % static_cast<std::uint64_t>(res.senders) ? 1 : 0);
    threads.emplace_back([&, s, share] {
      zmq::socket_t& sock = sockets[static_cast<std::size_t>(s)];  // used by this thread only from now on
      bytes p(o.size, 0x5a);
      pacer pace(o.rate, res.senders);
      for (std::uint64_t k = 0; k < share; ++k) {
        std::string to = fmt::format("r{}", receiver_of(s, k));
        pace.wait(k);
        fill_payload(p, 1, k);
        sock.send(zmq::buffer(to), zmq::send_flags::sndmore);
        sock.send(zmq::buffer(p.data(), p.size()), zmq::send_flags::none);
        ++sent;
      }
    });
  }
  for (auto& t : threads) t.join();
  bool complete = wait_for([&] { return col.received.load() >= sent.load(); }, [&] { return col.received.load(); }, o.stall,
                           deadline);
  res.cpu_s = cpu.sample() - cpu_before;
  res.cpu_scope = cpu.scope();
  res.cpu_counted = true;
  std::int64_t t_end = col.last_receive_ns.load();
  if (t_end < t0) t_end = now_ns();
  res.wall_s = static_cast<double>(t_end - t0) / 1e9;
  res.timed_out = !complete;
  res.attempted = o.messages;
  res.sent = sent.load();
  if (relay_drops.load() > 0) res.send_error_codes["relay_unreachable"] = relay_drops.load();

  stop = true;
  for (auto& t : receivers) t.join();
  relay.join();
  sockets.clear();
  router.close();
  return res;
}

// ---------------------------------------------------------------- summary

void progress(const std::string& text) { fmt::print(stderr, "agentbus-bench: {}\n", text); }

run_summary summarize(const bench_result& r, collector& col) {
  run_summary s;
  std::vector<double> lat;
  {
    std::lock_guard lock(col.mu);
    lat = col.latencies_ms;
    s.rejections = col.rejections;
  }
  std::sort(lat.begin(), lat.end());
  s.delivered = col.received.load();
  s.eps = r.wall_s > 0 ? static_cast<double>(s.delivered) / r.wall_s : 0;
  s.mean = lat.empty() ? 0 : std::accumulate(lat.begin(), lat.end(), 0.0) / static_cast<double>(lat.size());
  s.p50 = percentile(lat, 0.50);
  s.p99 = percentile(lat, 0.99);
  s.max = lat.empty() ? 0 : lat.back();
  s.tpm_sig_rate = r.wall_s > 0 ? static_cast<double>(r.tpm_signatures) / r.wall_s : 0;
  for (auto& [k, v] : s.rejections) s.rejected += v;
  s.lost = r.sent > s.delivered ? r.sent - s.delivered : 0;
  s.cpu_per_100k = s.delivered > 0 ? r.cpu_s * 1e5 / static_cast<double>(s.delivered) : 0;
  return s;
}

double round_to(double v, int decimals) {
  double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

nlohmann::ordered_json memory_to_json(const memory_report& m) {
  auto opt = [](const std::optional<std::uint64_t>& v) { return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(); };
  nlohmann::ordered_json j;
  j["idle_agents"] = m.idle_agents;
  if (m.idle_agents > 0) {
    j["idle_enrol_s"] = round_to(m.idle_enrol_s, 3);
    j["idle_reenrolments"] = m.idle_reenrolments;
    j["idle_cpu_pct"] = {{"bench", round_to(m.idle_cpu_bench_pct, 2)}, {"broker", round_to(m.idle_cpu_broker_pct, 2)}};
    j["bench_threads"] = {{"before", opt(m.threads_before)}, {"after", opt(m.threads_after)}};
    j["bench_descriptors"] = {{"before", opt(m.fds_before)}, {"after", opt(m.fds_after)}};
  }
  j["broker_rss_kib"] = {{"before_idle", opt(m.before_idle_kib)}, {"after_idle", opt(m.after_idle_kib)}, {"end", opt(m.end_kib)}};
  nlohmann::ordered_json samples = nlohmann::ordered_json::array();
  for (const auto& smp : m.samples) samples.push_back({{"t_s", round_to(smp.t_s, 2)}, {"kib", smp.kib}});
  j["broker_rss_samples"] = std::move(samples);
  if (m.samples.size() >= 2) j["broker_rss_growth_kib"] = static_cast<std::int64_t>(m.samples.back().kib) - static_cast<std::int64_t>(m.samples.front().kib);
  return j;
}

nlohmann::ordered_json run_to_json(const bench_options& o, const bench_result& r, const run_summary& sm) {
  nlohmann::ordered_json j;
  j["mode"] = o.mode;
  j["rate"] = o.rate > 0 ? nlohmann::ordered_json(o.rate) : nlohmann::ordered_json();
  j["agents"] = r.senders + r.receivers;
  j["senders"] = r.senders;
  j["receivers"] = r.receivers;
  j["messages"] = o.messages;
  j["size"] = o.size;
  j["keys"] = r.keys;
  j["role"] = o.mode != "agentbus" ? "-" : o.role;
  j["suite"] = r.suite;
  j["wire_batches"] = o.batch ? nlohmann::ordered_json(o.wire_batches) : nlohmann::ordered_json();
  j["broker"] = r.broker;
  j["sent"] = r.sent;
  j["delivered"] = sm.delivered;
  j["lost"] = sm.lost;
  j["rejected"] = sm.rejected;
  j["rejections"] = sm.rejections;
  j["send_errors"] = r.send_errors;
  j["send_error_codes"] = r.send_error_codes;
  j["overloaded_retries"] = r.overloaded_retries;
  j["timed_out"] = r.timed_out;
  j["setup_s"] = round_to(r.setup_s, 3);
  j["warmup_s"] = round_to(r.warmup_s, 3);
  j["wall_s"] = round_to(r.wall_s, 4);
  j["envelopes_per_s"] = round_to(sm.eps, 1);
  j["payload_mb_per_s"] = round_to(sm.eps * static_cast<double>(o.size) / 1e6, 3);
  j["latency_ms"] = {{"p50", round_to(sm.p50, 4)}, {"p99", round_to(sm.p99, 4)}, {"max", round_to(sm.max, 4)},
                     {"mean", round_to(sm.mean, 4)}};
  j["tpm_signatures"] = r.tpm_counted ? nlohmann::ordered_json(r.tpm_signatures) : nlohmann::ordered_json();
  j["tpm_signatures_per_s"] = r.tpm_counted ? nlohmann::ordered_json(round_to(sm.tpm_sig_rate, 1)) : nlohmann::ordered_json();
  j["tpm_ops"] = r.tpm_ops;
  j["cpu_s"] = round_to(r.cpu_s, 3);
  j["cpu_s_per_100k"] = round_to(sm.cpu_per_100k, 3);
  j["cpu_scope"] = r.cpu_scope;
  j["cpu_complete"] = r.cpu_counted;
  if (o.duration > 0) j["duration_s"] = o.duration;
  if (r.memory.measured || r.memory.idle_agents > 0) j["memory"] = memory_to_json(r.memory);
  return j;
}

namespace {

// ---------------------------------------------------------------- report

void print_memory(const memory_report& m) {
  auto mib = [](const std::optional<std::uint64_t>& kib) {
    return kib ? fmt::format("{:.1f} MiB", static_cast<double>(*kib) / 1024.0) : std::string("unknown");
  };
  auto num = [](const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : std::string("?"); };
  if (m.idle_agents > 0) {
    fmt::print("  idle agents {} enrolled in {:.1f} s (software keys); this process: threads {} -> {}, descriptors {} -> {}\n",
               m.idle_agents, m.idle_enrol_s, num(m.threads_before), num(m.threads_after), num(m.fds_before),
               num(m.fds_after));
    fmt::print("              idle CPU: this process {:.1f}% of a core, broker {:.1f}%   re-enrolments during the run {}\n",
               m.idle_cpu_bench_pct, m.idle_cpu_broker_pct, m.idle_reenrolments);
  }
  if (!m.measured && !m.before_idle_kib) {
    if (m.idle_agents > 0) fmt::print("  broker RSS  unknown (not started by the bench)\n");
    return;
  }
  if (m.idle_agents > 0) {
    std::string per;
    if (m.before_idle_kib && m.after_idle_kib)
      per = fmt::format("   (+{:.1f} KiB per idle agent)",
                        (static_cast<double>(*m.after_idle_kib) - static_cast<double>(*m.before_idle_kib)) / m.idle_agents);
    fmt::print("  broker RSS  before idle agents {}   after {}   end of run {}{}\n", mib(m.before_idle_kib),
               mib(m.after_idle_kib), mib(m.end_kib), per);
  } else {
    fmt::print("  broker RSS  end of run {}\n", mib(m.end_kib));
  }
  if (m.samples.size() > 2) {
    std::string line;
    for (const auto& smp : m.samples) line += fmt::format("{}{:.0f}s {:.1f}", line.empty() ? "" : ", ", smp.t_s, smp.kib / 1024.0);
    const auto& first = m.samples.front();
    const auto& last = m.samples.back();
    double growth = static_cast<double>(last.kib) - static_cast<double>(first.kib);
    fmt::print("  RSS samples {} (MiB)\n", line);
    fmt::print("  RSS growth  {:+.1f} MiB first -> last over {:.0f} s ({:+.1f}%)\n", growth / 1024.0, last.t_s - first.t_s,
               first.kib ? 100.0 * growth / static_cast<double>(first.kib) : 0.0);
  }
}

void report(const bench_options& o, const bench_result& r, collector& col) {
  const run_summary sm = summarize(r, col);
  if (o.json) {
    fmt::print("{}\n", run_to_json(o, r, sm).dump());
    return;
  }
  fmt::print("agentbus-bench  mode={}  agents={} ({} sender{}, {} receiver{})  messages={}  size={} B  rate={}{}\n", o.mode,
             r.senders + r.receivers, r.senders, r.senders == 1 ? "" : "s", r.receivers, r.receivers == 1 ? "" : "s",
             o.messages, o.size, o.rate > 0 ? fmt::format("{:g}/s", o.rate) : std::string("max"),
             o.duration > 0 ? fmt::format("  duration={:g} s", o.duration) : std::string());
  fmt::print("  keys        {}{}{}\n", r.keys, o.batch ? "  assurance tpm-batch, wire batches " + o.wire_batches : "", o.mode != "agentbus" ? "" : fmt::format("   role {}  suite {}", o.role, r.suite));
  fmt::print("  broker      {}\n", r.broker);
  fmt::print("  set-up      {:.2f} s (keys, enrolment)   warm-up {:.2f} s (sessions)\n", r.setup_s, r.warmup_s);
  fmt::print("  delivered   {} / {} sent{}{}\n", sm.delivered, r.sent,
             sm.lost ? fmt::format("   LOST {}", sm.lost) : std::string(),
             r.timed_out ? "   (stopped waiting: no progress or --timeout)" : "");
  fmt::print("  wall time   {:.3f} s\n", r.wall_s);
  fmt::print("  throughput  {:.0f} envelopes/s   ({:.2f} MB/s of payload)\n", sm.eps, sm.eps * static_cast<double>(o.size) / 1e6);
  fmt::print("  latency     p50 {:.3f} ms   p99 {:.3f} ms   max {:.3f} ms   (mean {:.3f} ms, end to end)\n", sm.p50, sm.p99,
             sm.max, sm.mean);
  fmt::print("  CPU         {:.2f} s in the measured window ({}{}) = {:.2f} s per 100k envelopes\n", r.cpu_s, r.cpu_scope,
             r.cpu_counted ? "" : "; some processes could not be read", sm.cpu_per_100k);
  std::string rej = sm.rejected ? "" : "none";
  for (auto& [k, v] : sm.rejections) rej += fmt::format("{}{}={}", rej.empty() ? "" : "  ", k, v);
  fmt::print("  rejections  {}\n", rej);
  if (r.send_errors || !r.send_error_codes.empty() || r.overloaded_retries) {
    std::string e;
    for (auto& [k, v] : r.send_error_codes) e += fmt::format("  {}={}", k, v);
    fmt::print("  send errors {}{}   overloaded retries {}\n", r.send_errors, e, r.overloaded_retries);
  }
  if (r.tpm_counted) {
    std::string ops;
    for (auto& [k, v] : r.tpm_ops) ops += fmt::format("{}{}={}", ops.empty() ? "" : " ", k, v);
    fmt::print("  TPM         {} signatures in the run = {:.1f} signatures/s ({:.3f} per envelope)   ops: {}\n",
               r.tpm_signatures, sm.tpm_sig_rate,
               sm.delivered ? static_cast<double>(r.tpm_signatures) / static_cast<double>(sm.delivered) : 0.0,
               ops.empty() ? "none" : ops);
  } else if (o.mode == "agentbus") {
    fmt::print("  TPM         none (software keys)\n");
  }
  print_memory(r.memory);
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
  app.add_option("--broker-hwm", o.broker_hwm, "send_hwm and recv_hwm of the broker the bench starts (envelopes "
                                               "queued per connection: bounds its memory under a burst)")
      ->capture_default_str()->check(CLI::Range(1, 1'000'000));
  app.add_option("--broker-bin", o.broker_bin, "agentbus-broker to start (default: ../broker/agentbus-broker next to this binary)");
  app.add_option("--policy", o.policy_file, "Policy for the agents and the started broker (default: config/policy.toml)");
  app.add_option("--role", o.role, "Role of every bench agent; must be allowed to send to itself (and to use "
                                   "software keys with --software)")->capture_default_str();
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
      if (o.broker.size() || o.software || o.batch || app.count("--mode") || app.count("--size"))
        throw CLI::ValidationError("--suite", "--suite picks its own rows: drop --mode, --software, --batch, --size, --broker");
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
