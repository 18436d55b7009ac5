// report.cpp — one run's numbers: the summary (rates, latency percentiles),
// its JSON object (single-mode --json, and each suite row) and the single-mode
// table.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "bench.hpp"

namespace agentbus::bench {
namespace {

// percentile interpolates linearly between the two nearest ranks of `sorted`.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  double pos = q * static_cast<double>(sorted.size() - 1);
  auto lo = static_cast<std::size_t>(pos);
  std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

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

}  // namespace

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

}  // namespace agentbus::bench
