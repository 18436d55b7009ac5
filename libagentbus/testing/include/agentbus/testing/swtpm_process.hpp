// swtpm_process.hpp — a private software TPM (swtpm) for demos and tests
// (agentbus_testing: the product library and the broker never link it).
//
// Each swtpm_process runs `swtpm socket --tpm2` on UNIX sockets inside its own
// temporary state directory, so several test runs on one machine never collide
// and no TCP port is raced for. It waits until the TPM answers a command before
// handing out its TCTI string, stops swtpm by PID and removes its state on
// destruction. If the owning process dies (a failed or interrupted test), swtpm
// is killed with it (PR_SET_PDEATHSIG) and the next swtpm_process removes the
// orphaned state directory. Not thread-safe; construct it on a long-lived thread
// (the death signal follows the thread that started swtpm).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "agentbus/testing/child_process.hpp"

namespace agentbus::testing {

class swtpm_process {
 public:
  struct options {
    // Parent of the state directory; empty means $TMPDIR or /tmp.
    std::filesystem::path temp_root;
    std::chrono::milliseconds start_timeout{10'000};
    // endorsement: provision the TPM as a manufacturer would, before it starts:
    // swtpm_setup --create-ek-cert with swtpm-localca leaves an RSA-2048 EK at
    // 0x81010001 (and a P-384 one at 0x81010016) and their certificates in NV
    // 0x01c00002 / 0x01c00016, issued by a local CA in `ek_ca_dir` (created there on
    // first use; empty: <state dir>/ca, a CA of its own). TPMs given the same
    // directory share the CA, as one manufacturer's chips do.
    bool endorsement = false;
    std::filesystem::path ek_ca_dir;
  };

  // Starts swtpm; throws std::runtime_error with swtpm's log when it fails.
  explicit swtpm_process(options opts);
  swtpm_process() : swtpm_process(options{}) {}
  ~swtpm_process();
  swtpm_process(const swtpm_process&) = delete;
  swtpm_process& operator=(const swtpm_process&) = delete;

  // tcti is "swtpm:path=<dir>/sock" (the control socket is <dir>/sock.ctrl).
  std::string tcti() const;
  const std::filesystem::path& state_dir() const noexcept { return dir_; }
  // With endorsement: the local CA's root and intermediate certificates (PEM files).
  std::filesystem::path ek_ca_root() const;
  std::filesystem::path ek_ca_intermediate() const;
  pid_t pid() const noexcept { return proc_.pid(); }
  bool running() const noexcept { return proc_.running(); }

  // stop terminates swtpm (SIGTERM, then SIGKILL) and keeps the state; start runs
  // it again on the same state, as a TPM restart (power cycle) does.
  void stop();
  void start();

 private:
  void wait_until_answering();
  void provision_endorsement();
  std::filesystem::path ca_dir() const;
  options opts_;
  std::filesystem::path dir_;
  child_process proc_;
};

}  // namespace agentbus::testing
