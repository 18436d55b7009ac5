// process_stats.hpp — CPU time and resident set of processes, read from /proc, for
// the benchmark's "CPU seconds per 100k envelopes" and broker memory figures.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agentbus/testing/local_host.hpp"

namespace agentbus::bench {

// process_cpu_seconds returns user + system CPU seconds that `pid` has used so
// far (/proc/<pid>/stat utime + stime, in clock ticks of sysconf(_SC_CLK_TCK),
// so 10 ms resolution), or nullopt when the process is gone or unreadable.
std::optional<double> process_cpu_seconds(pid_t pid);

// self_cpu_seconds returns user + system CPU seconds of this process, all threads
// (getrusage(RUSAGE_SELF), microsecond resolution).
double self_cpu_seconds();

// resident_kib: VmRSS of `pid` in KiB, or nullopt (agentbus/testing/local_host.hpp).
using testing::resident_kib;

// open_descriptors returns how many file descriptors `pid` has open
// (/proc/<pid>/fd), and thread_count its threads (/proc/<pid>/status Threads).
std::optional<std::uint64_t> open_descriptors(pid_t pid);
std::optional<std::uint64_t> thread_count(pid_t pid);

// cpu_meter sums the CPU time of this process and of the listed child processes
// (the broker, the swtpm processes). sample() reads them all now; the difference
// of two samples is the CPU spent by the whole set between them. A process that
// cannot be read counts as 0 in that sample (and is named by missing()). Not
// thread-safe.
class cpu_meter {
 public:
  void add(pid_t pid, std::string what);
  double sample();
  // scope names what is counted, e.g. "bench + broker + 3 swtpm".
  std::string scope() const;
  const std::vector<std::string>& missing() const noexcept { return missing_; }

 private:
  struct proc {
    pid_t pid;
    std::string what;
  };
  std::vector<proc> procs_;
  std::vector<std::string> missing_;
};

// rss_sampler reads the resident set of `pid` now, then every `interval` on its
// own thread, and once more at finish(), which returns the samples (seconds
// since construction, KiB). Unreadable samples (the process gone) are skipped.
class rss_sampler {
 public:
  struct sample {
    double t_s;
    std::uint64_t kib;
  };
  rss_sampler(pid_t pid, std::chrono::duration<double> interval);
  ~rss_sampler();
  rss_sampler(const rss_sampler&) = delete;
  rss_sampler& operator=(const rss_sampler&) = delete;
  std::vector<sample> finish();

 private:
  void take();
  pid_t pid_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<sample> samples_;
  std::thread thread_;
};

}  // namespace agentbus::bench
