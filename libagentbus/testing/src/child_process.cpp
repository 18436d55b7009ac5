#include "agentbus/testing/child_process.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>

namespace agentbus::testing {

child_process::child_process(const child_spec& spec) {
  if (spec.argv.empty()) throw std::invalid_argument("child_process: empty argv");
  // Everything the child needs is built here, before fork (see the header).
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = -1;
  if (!spec.log_file.empty()) {
    const int mode = O_WRONLY | O_CREAT | O_CLOEXEC | (spec.append_log ? O_APPEND : O_TRUNC);
    log_fd = ::open(spec.log_file.c_str(), mode, 0600);
    if (log_fd < 0)
      throw std::runtime_error("cannot open " + spec.log_file.string() + " for " + args[0] + ": " + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  const int death_signal = spec.death_signal;
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    if (log_fd >= 0) ::close(log_fd);
    throw std::runtime_error("cannot start " + args[0] + ": fork: " + std::strerror(err));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only, until exec.
    ::prctl(PR_SET_PDEATHSIG, death_signal);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copies
      ::dup2(log_fd, STDERR_FILENO);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  pid_ = pid;
}

child_process::child_process(child_process&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

std::optional<int> child_process::try_wait() {
  if (!running()) return std::nullopt;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  pid_ = -1;
  return status;
}

std::optional<int> child_process::stop(int signal_number, std::chrono::milliseconds grace) {
  if (!running()) return std::nullopt;
  ::kill(pid_, signal_number);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  do {
    if (auto status = try_wait()) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } while (std::chrono::steady_clock::now() < deadline);
  if (auto status = try_wait()) return status;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

int child_process::exit_code(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

std::string child_process::describe(int wait_status) {
  return WIFEXITED(wait_status) ? "exit " + std::to_string(WEXITSTATUS(wait_status))
                                : "signal " + std::to_string(WTERMSIG(wait_status));
}

}  // namespace agentbus::testing
