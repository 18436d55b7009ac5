// child_process.hpp — one helper process (swtpm, an agentbus-broker) started by
// the tests, the demo and the benchmark (agentbus_testing: the product never
// links it).
//
// Every argument, the argv array and the log descriptor are prepared before
// fork(): the child of a multithreaded process may only make async-signal-safe
// calls until exec, so it only sets its death signal, redirects its output and
// execs. The child is sent `death_signal` when the thread that started it exits
// (PR_SET_PDEATHSIG), so a killed test run leaves no process behind. Not
// thread-safe: one owner.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace agentbus::testing {

struct child_spec {
  std::vector<std::string> argv;    // argv[0] is searched in PATH when it has no '/'
  std::filesystem::path log_file;   // stdout and stderr go here; empty: inherited
  bool append_log = false;          // false: the log is truncated
  int death_signal = SIGKILL;
};

class child_process {
 public:
  child_process() = default;
  // Starts the child; throws std::runtime_error when the log cannot be opened or
  // fork fails (a failed exec shows as exit status 127).
  explicit child_process(const child_spec& spec);
  ~child_process() { stop(); }
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;  // stops the child it held
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return pid_; }  // -1 when not running
  bool running() const noexcept { return pid_ > 0; }

  // try_wait reaps the child if it has exited: its wait status, after which it
  // is no longer running; nullopt while it runs (or when there is none).
  std::optional<int> try_wait();

  // stop sends `signal_number`, waits up to `grace` for the child to exit, then
  // SIGKILLs it: its wait status, or nullopt when nothing was running.
  std::optional<int> stop(int signal_number = SIGTERM, std::chrono::milliseconds grace = std::chrono::seconds(2));

  // exit_code is the shell's convention: the exit status, or 128 + the signal.
  static int exit_code(int wait_status);
  // describe is "exit 3" or "signal 9", for error messages.
  static std::string describe(int wait_status);

 private:
  pid_t pid_ = -1;
};

}  // namespace agentbus::testing
