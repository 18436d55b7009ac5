// process_stats.cpp — /proc readers for CPU time and resident set.
#include "process_stats.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace agentbus::bench {

std::optional<double> process_cpu_seconds(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(f, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces or ')':
  // fields are counted from the last ')'. After it come field 3 (state) onwards;
  // utime and stime are fields 14 and 15.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(line.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  if (!in) return std::nullopt;
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100);
}

double self_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

std::optional<std::uint64_t> open_descriptors(pid_t pid) {
  std::error_code ec;
  std::uint64_t n = 0;
  for (std::filesystem::directory_iterator it(fmt::format("/proc/{}/fd", pid), ec), end; !ec && it != end; it.increment(ec))
    ++n;
  if (ec) return std::nullopt;
  return n;
}

std::optional<std::uint64_t> thread_count(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("Threads:", 0) != 0) continue;
    std::istringstream in(line.substr(8));
    std::uint64_t n = 0;
    if (in >> n) return n;
    return std::nullopt;
  }
  return std::nullopt;
}

void cpu_meter::add(pid_t pid, std::string what) {
  if (pid > 0) procs_.push_back({pid, std::move(what)});
}

double cpu_meter::sample() {
  double total = self_cpu_seconds();
  for (const auto& p : procs_) {
    auto s = process_cpu_seconds(p.pid);
    if (s) {
      total += *s;
    } else {
      missing_.push_back(p.what);
    }
  }
  return total;
}

std::string cpu_meter::scope() const {
  // "bench + broker + 3 swtpm": count processes by what they are, in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, int> count;
  for (const auto& p : procs_)
    if (count[p.what]++ == 0) order.push_back(p.what);
  std::string out = "bench";
  for (const auto& w : order) out += count[w] == 1 ? " + " + w : fmt::format(" + {} {}", count[w], w);
  return out;
}

rss_sampler::rss_sampler(pid_t pid, std::chrono::duration<double> interval) : pid_(pid) {
  take();
  thread_ = std::thread([this, interval] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, interval, [this] { return stop_; })) {
      lock.unlock();
      take();
      lock.lock();
    }
  });
}

rss_sampler::~rss_sampler() { (void)finish(); }

std::vector<rss_sampler::sample> rss_sampler::finish() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return samples_;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  take();
  std::lock_guard lock(mu_);
  return samples_;
}

void rss_sampler::take() {
  auto kib = resident_kib(pid_);
  if (!kib) return;
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::lock_guard lock(mu_);
  samples_.push_back({t, *kib});
}

}  // namespace agentbus::bench
