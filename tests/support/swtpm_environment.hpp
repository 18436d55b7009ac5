// swtpm_environment.hpp — a real swtpm per test binary, and helpers (tests only).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"

namespace agentbus::testing {

// swtpm_environment starts one swtpm (own state directory, UNIX sockets) before
// the binary's first test and removes it after the last, also when tests fail.
// Register it with AGENTBUS_USE_SWTPM_ENVIRONMENT() at namespace scope.
class swtpm_environment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
  static swtpm_process& process();
  // shared_tpm is one tpm connection for the whole binary (created lazily).
  static std::shared_ptr<tpm::tpm> shared_tpm();
  // reset_tpm drops the shared connection (before restarting swtpm).
  static void reset_tpm();
};

#define AGENTBUS_USE_SWTPM_ENVIRONMENT()                                                 \
  [[maybe_unused]] static ::testing::Environment* const agentbus_swtpm_environment_ = \
      ::testing::AddGlobalTestEnvironment(new ::agentbus::testing::swtpm_environment)

// scoped_temp_dir is a fresh directory removed on destruction.
class scoped_temp_dir {
 public:
  scoped_temp_dir();
  ~scoped_temp_dir();
  scoped_temp_dir(const scoped_temp_dir&) = delete;
  scoped_temp_dir& operator=(const scoped_temp_dir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// command_result is what a shell command printed (stdout and stderr merged).
struct command_result {
  int exit_code = -1;
  std::string output;
};
command_result run_command(const std::string& command);
std::string shell_quote(const std::string& s);

std::filesystem::path source_dir();  // the repository
std::filesystem::path binary_dir();  // the CMake build directory
std::string read_text(const std::filesystem::path& file);
void write_text(const std::filesystem::path& file, const std::string& text);

}  // namespace agentbus::testing
