#include "support/swtpm_environment.hpp"

#include <mutex>

namespace agentbus::testing {
namespace {
std::unique_ptr<swtpm_process> g_process;
std::shared_ptr<tpm::tpm> g_tpm;
std::mutex g_mutex;
}  // namespace

void swtpm_environment::SetUp() { g_process = std::make_unique<swtpm_process>(); }

void swtpm_environment::TearDown() {
  g_tpm.reset();
  g_process.reset();
}

swtpm_process& swtpm_environment::process() {
  if (!g_process) throw std::logic_error("swtpm_environment is not registered in this test binary");
  return *g_process;
}

std::shared_ptr<tpm::tpm> swtpm_environment::shared_tpm() {
  std::lock_guard lock(g_mutex);
  if (!g_tpm) g_tpm = std::make_shared<tpm::tpm>(process().tcti());
  return g_tpm;
}

void swtpm_environment::reset_tpm() {
  std::lock_guard lock(g_mutex);
  g_tpm.reset();
}

}  // namespace agentbus::testing
