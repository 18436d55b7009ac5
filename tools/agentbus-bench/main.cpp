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
#include "agentbus/swtpm_process.hpp"
#include "agentbus/tpm.hpp"

namespace fs = std::filesystem;
using namespace agentbus;
using steady = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------- options

struct bench_options {
  int agents = 2;
  std::uint64_t messages = 20000;
  std::size_t size = 256;
  std::string mode = "agentbus";
  bool software = false;
  bool batch = false;  // tpm-batch: Merkle batch signing
  std::string broker;          // use a running broker
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
};

// ---------------------------------------------------------------- payload

// Payload layout (little-endian host order; both ends are this process):
//   [0]      kind: 0 warm-up, 1 measured
//   [8..16)  steady_clock nanoseconds just before send
//   [16..24) message index
//   rest     filler
constexpr std::size_t kHeaderBytes = 24;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count();
}

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
void progress(const bench_options& /*o*/, const std::string& text) { fmt::print(stderr, "agentbus-bench: {}\n", text); }

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
                 bool software) {
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
        << "[limits]\nmax_frame_bytes = 1114112\nsend_hwm = 10000\nrecv_hwm = 10000\n"
        << "max_clock_skew_ms = 30000\nmax_agents = 10000\nmax_subscriptions_per_agent = 256\n\n"
        << "[sessions]\nrekey_after_messages = 1000000\nrekey_after_seconds = 3600\nrekey_grace_seconds = 30\n\n"
        << "[logging]\nformat = \"text\"\nlevel = \"warn\"\n";
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

 private:
  pid_t pid_ = -1;
  std::string endpoint_;
  fs::path config_, log_;
};

// ---------------------------------------------------------------- agentbus mode

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
    progress(o, "starting agentbus-broker (" + o.broker_bin + ")");
    broker = std::make_unique<broker_process>(o.broker_bin, tmp, o.policy_file, broker_tcti, o.software);
    endpoint = broker->endpoint();
    res.broker = endpoint + " (started by the bench)";
  } else {
    res.broker = endpoint + " (running broker)";
  }
  res.keys = o.software ? "software (protection=software)" : "tpm (one swtpm per agent)";

  progress(o, fmt::format("creating {} identities ({}, {})", n, res.suite, o.software ? "software" : "swtpm"));
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
  progress(o, fmt::format("enrolling {} agents with {}", n, endpoint));
  for (int i = 0; i < n; ++i) {
    agent_options ao;
    ao.name = fmt::format("bench-{}-{}{}", tag, i < res.senders ? "s" : "r", i);
    ao.broker_endpoint = endpoint;
    ao.connect_timeout = std::chrono::seconds(30);
    ao.max_pending = 100'000;
    ao.batch_signing = o.batch;
    names.push_back(ao.name);
    agents.push_back(std::make_unique<agent>(ao, keys[static_cast<std::size_t>(i)], pol));
    agents.back()->on_rejected([&col](const rejection& r) { col.on_rejection(r); });
    if (i >= res.senders)
      agents.back()->on_message([&col](const message& m) { col.on_payload(m.header.payload.data(), m.header.payload.size()); });
  }
  res.setup_s = std::chrono::duration<double>(steady::now() - t_setup).count();

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
  if (col.rejected.load() > 0) progress(o, fmt::format("warning: {} rejection(s) during the warm-up", col.rejected.load()));
  res.warmup_s = std::chrono::duration<double>(steady::now() - t_warm).count();

  // Measured run.
  auto ops_before = tpm_op_counts(tpms);
  std::uint64_t rejected_before = col.rejected.load();
  std::atomic<std::uint64_t> sent{0}, send_errors{0}, retries{0};
  std::mutex err_mu;
  std::map<std::string, std::uint64_t> err_codes;
  progress(o, fmt::format("sending {} envelopes of {} bytes ({} sender(s), {} receiver(s))", o.messages, o.size,
                          res.senders, res.receivers));
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

  // Tear down in order: agents, broker, TPM connections, swtpm processes.
  agents.clear();
  if (broker) broker->stop();
  keys.clear();
  tpms.clear();
  swtpms.clear();
  return res;
}

// ---------------------------------------------------------------- plain mode

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

// ---------------------------------------------------------------- report

void report(const bench_options& o, const bench_result& r, collector& col) {
  std::vector<double> lat;
  std::map<std::string, std::uint64_t> rejections;
  {
    std::lock_guard lock(col.mu);
    lat = col.latencies_ms;
    rejections = col.rejections;
  }
  std::sort(lat.begin(), lat.end());
  const std::uint64_t delivered = col.received.load();
  const double eps = r.wall_s > 0 ? static_cast<double>(delivered) / r.wall_s : 0;
  const double mean = lat.empty() ? 0 : std::accumulate(lat.begin(), lat.end(), 0.0) / static_cast<double>(lat.size());
  const double p50 = percentile(lat, 0.50), p99 = percentile(lat, 0.99), mx = lat.empty() ? 0 : lat.back();
  const double sig_rate = r.wall_s > 0 ? static_cast<double>(r.tpm_signatures) / r.wall_s : 0;
  std::uint64_t rejected = 0;
  for (auto& [k, v] : rejections) rejected += v;
  const std::uint64_t lost = r.sent > delivered ? r.sent - delivered : 0;

  if (o.json) {
    auto js = [](std::string_view in) {  // a JSON string literal
      std::string out = "\"";
      for (char c : in) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
          continue;
        }
        out += c;
      }
      return out + "\"";
    };
    auto obj = [&](const std::map<std::string, std::uint64_t>& m) {
      std::string s = "{";
      for (auto& [k, v] : m) s += fmt::format("{}{}:{}", s.size() > 1 ? "," : "", js(k), v);
      return s + "}";
    };
    fmt::print(
        "{{\"mode\":{},\"rate\":{},\"agents\":{},\"senders\":{},\"receivers\":{},\"messages\":{},\"size\":{},\"keys\":{},"
        "\"role\":{},\"suite\":{},\"broker\":{},\"sent\":{},\"delivered\":{},\"lost\":{},\"rejected\":{},"
        "\"rejections\":{},\"send_errors\":{},\"send_error_codes\":{},\"overloaded_retries\":{},\"timed_out\":{},"
        "\"setup_s\":{:.3f},\"warmup_s\":{:.3f},\"wall_s\":{:.4f},\"envelopes_per_s\":{:.1f},\"payload_mb_per_s\":{:.3f},"
        "\"latency_ms\":{{\"p50\":{:.4f},\"p99\":{:.4f},\"max\":{:.4f},\"mean\":{:.4f}}},"
        "\"tpm_signatures\":{},\"tpm_signatures_per_s\":{},\"tpm_ops\":{}}}\n",
        js(o.mode), o.rate > 0 ? fmt::format("{:g}", o.rate) : std::string("null"), r.senders + r.receivers, r.senders,
        r.receivers, o.messages, o.size, js(r.keys), js(o.mode != "agentbus" ? "-" : o.role), js(r.suite), js(r.broker), r.sent, delivered, lost, rejected, obj(rejections),
        r.send_errors, obj(r.send_error_codes), r.overloaded_retries, r.timed_out ? "true" : "false", r.setup_s,
        r.warmup_s, r.wall_s, eps, eps * static_cast<double>(o.size) / 1e6, p50, p99, mx, mean,
        r.tpm_counted ? std::to_string(r.tpm_signatures) : "null",
        r.tpm_counted ? fmt::format("{:.1f}", sig_rate) : "null", obj(r.tpm_ops));
    return;
  }
  fmt::print("agentbus-bench  mode={}  agents={} ({} sender{}, {} receiver{})  messages={}  size={} B  rate={}\n", o.mode,
             r.senders + r.receivers, r.senders, r.senders == 1 ? "" : "s", r.receivers, r.receivers == 1 ? "" : "s",
             o.messages, o.size, o.rate > 0 ? fmt::format("{:g}/s", o.rate) : std::string("max"));
  fmt::print("  keys        {}{}{}\n", r.keys, o.batch ? "  assurance tpm-batch" : "", o.mode != "agentbus" ? "" : fmt::format("   role {}  suite {}", o.role, r.suite));
  fmt::print("  broker      {}\n", r.broker);
  fmt::print("  set-up      {:.2f} s (keys, enrolment)   warm-up {:.2f} s (sessions)\n", r.setup_s, r.warmup_s);
  fmt::print("  delivered   {} / {} sent{}{}\n", delivered, r.sent,
             lost ? fmt::format("   LOST {}", lost) : std::string(),
             r.timed_out ? "   (stopped waiting: no progress or --timeout)" : "");
  fmt::print("  wall time   {:.3f} s\n", r.wall_s);
  fmt::print("  throughput  {:.0f} envelopes/s   ({:.2f} MB/s of payload)\n", eps, eps * static_cast<double>(o.size) / 1e6);
  fmt::print("  latency     p50 {:.3f} ms   p99 {:.3f} ms   max {:.3f} ms   (mean {:.3f} ms, end to end)\n", p50, p99, mx, mean);
  std::string rej = rejected ? "" : "none";
  for (auto& [k, v] : rejections) rej += fmt::format("{}{}={}", rej.empty() ? "" : "  ", k, v);
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
               r.tpm_signatures, sig_rate, delivered ? static_cast<double>(r.tpm_signatures) / static_cast<double>(delivered) : 0.0,
               ops.empty() ? "none" : ops);
  } else if (o.mode == "agentbus") {
    fmt::print("  TPM         none (software keys)\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench_options o;
  CLI::App app{"agentbus-bench: envelopes/s, end-to-end latency, rejections and TPM signatures/s through a broker "
               "(or a plain ZeroMQ relay for comparison)"};
  app.add_option("--agents", o.agents, "Agents: N/2 senders, the rest receivers (at least 1 + 1)")
      ->capture_default_str()->check(CLI::Range(2, 256));
  app.add_option("--messages", o.messages, "Envelopes to send in the measured run")->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  app.add_option("--size", o.size, "Payload bytes (at least 24: timestamp and index)")->capture_default_str()
      ->check(CLI::Range(std::size_t{kHeaderBytes}, std::size_t{1u << 20}));
  app.add_option("--mode", o.mode,
                 "agentbus (signed, MACed, through the broker), plain (ZeroMQ relay, no crypto) or curve (the relay "
                 "with CurveZMQ on every hop)")
      ->capture_default_str()->check(CLI::IsMember({"agentbus", "plain", "curve"}));
  app.add_flag("--software", o.software, "Software identity keys instead of one swtpm per agent");
  app.add_flag("--batch", o.batch, "tpm-batch: one TPM signature per Merkle batch of envelopes (TPM keys only)");
  app.add_option("--broker", o.broker, "Endpoint of a running broker (default: start one)");
  app.add_option("--broker-bin", o.broker_bin, "agentbus-broker to start (default: ../broker/agentbus-broker next to this binary)");
  app.add_option("--policy", o.policy_file, "Policy for the agents and the started broker (default: config/policy.toml)");
  app.add_option("--role", o.role, "Role of every bench agent; must be allowed to send to itself (and to use "
                                   "software keys with --software)")->capture_default_str();
  app.add_option("--plain-endpoint", o.plain_endpoint, "Relay endpoint in plain mode (default: ipc in a temp dir)");
  app.add_option("--rate", o.rate, "Offered load in envelopes/s over all senders (0 = as fast as they can: latency "
                                   "then includes queueing behind the whole burst)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--timeout", o.timeout, "Overall time limit in seconds")->capture_default_str();
  app.add_option("--stall", o.stall, "Give up after this many seconds without progress")->capture_default_str();
  app.add_flag("--json", o.json, "Print one JSON object instead of the table");
  app.add_flag("--keep-temp", o.keep_temp, "Keep the temp dir (broker config, log, keys)");
  app.add_option("--log-level", o.log_level, "Library log level on stderr")->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  try {
    app.parse(argc, argv);
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
    collector col;
    bench_result r = o.mode == "agentbus" ? run_agentbus(o, tmp, col) : run_plain(o, tmp, col);
    report(o, r, col);
    std::uint64_t delivered = col.received.load();
    if (delivered < o.messages) {
      fmt::print(stderr, "agentbus-bench: {} of {} envelopes were not delivered\n", o.messages - delivered, o.messages);
      rc = 1;
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
    if (o.keep_temp || (rc == 3 && fs::exists(tmp / "broker.log"))) {
      fmt::print(stderr, "agentbus-bench: temp dir kept: {}\n", tmp.string());
    } else {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    }
  }
  return rc;
}
