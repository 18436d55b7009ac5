#include "tpm/tss_log.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace agentbus::tpm {
namespace {

constexpr std::string_view kLoggerName = "tss2";
// Names the process that pointed TSS2_LOGFILE at its pipe (children inherit both).
constexpr const char* kSetByVariable = "AGENTBUS_TSS2_LOGFILE_PID";
std::atomic<bool> g_warned_debug{false};
std::atomic<int> g_read_fd{-1};
std::atomic<bool> g_reading{false};  // the reader is between read() and its last line's log call

void read_lines(int fd) {
  std::string pending;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the write end is never closed: only on an error
    g_reading.store(true);
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    // Nothing may end this thread: tpm2-tss would then block on a full pipe in the
    // middle of a TPM call. A line that cannot be logged is lost, not the reader.
    auto forward = [](std::string_view line) {
      try {
        forward_tss_line(line);
      } catch (...) {
      }
    };
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
      forward(std::string_view(pending).substr(start, nl - start));
    pending.erase(0, start);
    // A line longer than this is cut, so that nothing grows without bound.
    if (pending.size() > 64 * 1024) {
      forward(pending);
      pending.clear();
    }
    g_reading.store(false);
  }
}

}  // namespace

void forward_tss_line(std::string_view line) {
  if (line.empty()) return;
  const std::size_t colon = line.find(':');
  const std::string_view level_text = colon == std::string_view::npos ? std::string_view() : line.substr(0, colon);
  spdlog::level::level_enum level;
  if (level_text == "ERROR") level = spdlog::level::err;
  else if (level_text == "WARNING") level = spdlog::level::warn;
  else if (level_text == "info") level = spdlog::level::info;
  else {
    // debug and trace lines, and the lines without a level: the hex lines of a buffer
    // dump (tpm2-tss's LOGBLOB_DEBUG/TRACE write "0000: 8001..." under their header).
    if (!g_warned_debug.exchange(true))
      spdlog::warn("TSS2_LOG asks tpm2-tss for debug or trace lines: they are dropped, because at those levels "
                   "tpm2-tss dumps TPM command and response buffers (session keys, ECDH secrets)");
    return;
  }
  std::string_view text = colon == std::string_view::npos ? line : line.substr(colon + 1);
  // The default logger's sinks and format under the name "tss2"; the module ("tcti",
  // "esys") stays in the text.
  if (auto logger = spdlog::default_logger()) logger->clone(std::string(kLoggerName))->log(level, "{}", text);
}

void route_tss_log() {
  static std::once_flag once;
  std::call_once(once, [] {
    // The operator's own TSS2_LOGFILE is kept. One a parent agentbus process set for
    // itself (inherited with the environment; its pipe is not ours) is replaced.
    const char* set_by = std::getenv(kSetByVariable);
    const bool inherited = set_by != nullptr && std::to_string(::getpid()) != set_by;
    if (std::getenv("TSS2_LOGFILE") != nullptr && !inherited) return;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      spdlog::warn("cannot route tpm2-tss's log (pipe: {}); it writes to stderr", std::strerror(errno));
      return;
    }
    // tpm2-tss fopen()s this path ("a+") on its first line, in each of its libraries.
    // By pid, not /proc/self: in a child that inherits the variable (tpm2-tools run by
    // an agent), /proc/self/fd/N would be whatever the child has open as N.
    const std::string path = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fds[1]);
    ::setenv("TSS2_LOGFILE", path.c_str(), 1);
    ::setenv(kSetByVariable, std::to_string(::getpid()).c_str(), 1);
    g_read_fd.store(fds[0]);
    std::thread(read_lines, fds[0]).detach();
  });
}

void drain_tss_log() {
  const int fd = g_read_fd.load();
  if (fd < 0) return;
  for (int waited_ms = 0; waited_ms < 200; ++waited_ms) {
    int unread = 0;
    if (::ioctl(fd, FIONREAD, &unread) != 0) return;
    if (unread == 0 && !g_reading.load()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace agentbus::tpm
