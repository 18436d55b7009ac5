// agentbus_mode.cpp — agentbus-bench --mode agentbus: N agents (N/2 senders,
// the rest receivers), each with its own identity (one private swtpm per agent,
// or --software keys), through an agentbus-broker it starts (or --broker), with
// the optional idle agents and the broker's memory around them.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"
#include "agentbus/testing/child_process.hpp"
#include "agentbus/testing/local_host.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"
#include "bench.hpp"
#include "broker_process.hpp"
#include "enrolment.hpp"
#include "idle_agents.hpp"
#include "process_stats.hpp"
#include "tpm_counters.hpp"
#include "traffic.hpp"

namespace agentbus::bench {

using testing::swtpm_process;

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
  // federated: `broker` is where the senders are; `far` where the receivers are.
  std::unique_ptr<broker_process> far;
  testing::child_process nats;
  if (o.federated) {
    if (!endpoint.empty() || o.software || o.idle_agents > 0)
      throw std::runtime_error("the federated row starts its own brokers, with TPM keys and no idle agents");
    const int port = testing::free_loopback_port();
    fs::create_directories(tmp / "nats");
    testing::child_spec ns;
    ns.argv = {"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port), "-js", "-sd", (tmp / "nats").string()};
    ns.log_file = tmp / "nats.log";
    ns.death_signal = SIGTERM;
    progress("starting nats-server on 127.0.0.1:" + std::to_string(port));
    nats = testing::child_process(ns);
    broker_process::options near_o;
    near_o.binary = o.broker_bin;
    near_o.dir = tmp / "near";
    near_o.policy_file = o.policy_file;
    near_o.hwm = o.broker_hwm;
    near_o.fan_out_wire_batches = o.wire_batches == "both";
    near_o.log_level = o.log_level;
    broker_process::options far_o = near_o;
    far_o.dir = tmp / "far";
    swtpms.push_back(std::make_unique<swtpm_process>());
    near_o.tcti = swtpms.back()->tcti();
    swtpms.push_back(std::make_unique<swtpm_process>());
    far_o.tcti = swtpms.back()->tcti();
    broker_process::options::federation_options fed{"near", "nats://127.0.0.1:" + std::to_string(port), {}};
    near_o.federation = fed;
    fed.brokers["near"] = broker_process::create_identity(near_o);
    far_o.federation = fed;
    fed.brokers["far"] = broker_process::create_identity(far_o);
    fed.name = "near";
    near_o.federation = fed;
    fed.name = "far";
    far_o.federation = fed;
    progress("starting two federated agentbus-brokers");
    broker = std::make_unique<broker_process>(near_o);
    far = std::make_unique<broker_process>(far_o);
    endpoint = broker->endpoint();
    res.broker = endpoint + " -> NATS -> " + far->endpoint() + " (started by the bench)";
  } else if (endpoint.empty()) {
    std::string broker_tcti;
    if (!o.software) {
      swtpms.push_back(std::make_unique<swtpm_process>());
      broker_tcti = swtpms.back()->tcti();
    }
    progress("starting agentbus-broker (" + o.broker_bin + ")");
    // Idle agents have software keys: the broker must admit those (their role's
    // policy must too; idle_agents checks).
    broker = std::make_unique<broker_process>(broker_process::options{.binary = o.broker_bin,
                                                                      .dir = tmp,
                                                                      .policy_file = o.policy_file,
                                                                      .tcti = broker_tcti,
                                                                      .allow_software = o.software || o.idle_agents > 0,
                                                                      .hwm = o.broker_hwm,
                                                                      .fan_out_wire_batches = o.wire_batches == "both",
                                                                      .log_level = o.log_level,
                                                                      .transport = o.transport,
                                                                      .federation = std::nullopt});
    endpoint = broker->endpoint();
    res.broker = endpoint + " (started by the bench" + (o.transport == "curve" ? ", CurveZMQ" : "") + ")";
  } else {
    res.broker = endpoint + " (running broker)";
  }
  const enrolment_access access = [&] {
    if (broker)
      return enrolment_access(broker->fingerprint(), broker::admin_client(broker->admin_endpoint()), broker->operator_key(),
                              broker_process::kOperatorName);
    std::optional<broker::admin_client> admin;
    std::shared_ptr<identity_key> op_key;
    if (!o.admin.empty() && !o.operator_key_dir.empty()) {
      admin.emplace(o.admin);
      op_key = identity_key::open(o.operator_key_dir, nullptr);  // software operator keys only here
    }
    return enrolment_access(o.broker_fingerprint, std::move(admin), std::move(op_key), o.operator_name);
  }();
  std::optional<enrolment_access> far_access;
  if (far)
    far_access.emplace(far->fingerprint(), broker::admin_client(far->admin_endpoint()), far->operator_key(),
                       broker_process::kOperatorName);
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
    const bool at_far = far && i >= res.senders;  // federated: receivers at the other broker
    ao.broker_endpoint = at_far ? far->endpoint() : endpoint;
    ao.connect_timeout = std::chrono::seconds(30);
    ao.max_pending = 100'000;
    ao.batch_signing = o.batch;
    ao.wire_batching = o.wire_batches != "off";
    (at_far ? *far_access : access).prepare(ao, o.role, *keys[static_cast<std::size_t>(i)]);
    if (broker) {
      ao.broker_transport_key = broker->transport_key();
      ao.insecure_plain_tcp = o.transport == "tcp";  // the bench's own loopback broker, curve = false
    }
    names.push_back(ao.name);
    agents.push_back(std::make_unique<agent>(ao, keys[static_cast<std::size_t>(i)], pol));
    agents.back()->on_rejected([&col](const rejection& r) { col.on_rejection(r); });
    if (i >= res.senders)
      agents.back()->on_message([&col](const message& m) { col.on_payload(m.header.payload.data(), m.header.payload.size()); });
  }
  if (far) {
    // The senders' broker must know where the receivers live (the directory) before
    // the warm-up sends to them.
    progress("waiting for the receivers in the federation's directory");
    const broker::admin_client near_admin(broker->admin_endpoint());
    const auto until = steady::now() + std::chrono::seconds(30);
    for (;;) {
      std::size_t seen = 0;
      if (auto v = near_admin.request({{"op", "federation"}}))
        for (const auto& a : (*v)["agents"])
          if (a.value("home", "") == "far" && a.value("reachable", false)) ++seen;
      if (seen >= static_cast<std::size_t>(res.receivers)) break;
      if (steady::now() > until) throw std::runtime_error("the receivers did not appear at the senders' broker within 30 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
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
                                                                .parallel = o.idle_parallel,
                                                                .access = &access},
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

  // Agents [0, senders) send; receiver r is agent senders + r.
  auto receiver_of = [&](int sender, std::uint64_t k) {
    return res.senders + receiver_index(sender, k, res.senders, res.receivers);
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
  const auto deadline = run_deadline(o);
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
  if (far) {
    cpu.add(far->pid(), "far broker");
    cpu.add(nats.pid(), "nats-server");
  }
  for (const auto& sw : swtpms) cpu.add(sw->pid(), "swtpm");
  std::optional<rss_sampler> rss;
  if (broker_pid > 0) rss.emplace(broker_pid, std::chrono::duration<double>(o.sample_interval));
  const double cpu_before = cpu.sample();
  const std::int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int s = 0; s < res.senders; ++s) {
    const std::uint64_t share = sender_share(o.messages, res.senders, s);
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
  res.wall_s = measured_wall_s(col, t0);
  res.timed_out = !complete;
  res.attempted = o.messages;
  res.sent = sent.load();
  res.send_errors = send_errors.load();
  res.overloaded_retries = retries.load();
  res.send_error_codes = err_codes;

  if (!o.software) {
    res.tpm_ops = tpm_ops_since(ops_before, tpm_op_counts(tpms));
    res.tpm_signatures = signatures_in(res.tpm_ops);
    res.tpm_counted = true;
  }

  if (idle) res.memory.idle_reenrolments = idle->reenrolments();

  // Tear down in order: agents, broker, TPM connections, swtpm processes.
  agents.clear();
  idle.reset();
  if (broker) broker->stop();
  if (far) far->stop();
  nats.stop();
  keys.clear();
  tpms.clear();
  swtpms.clear();
  return res;
}

}  // namespace agentbus::bench
