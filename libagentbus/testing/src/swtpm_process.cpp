#include "agentbus/testing/swtpm_process.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace agentbus::testing {
namespace fs = std::filesystem;
namespace {

constexpr const char* kDirPrefix = "agentbus-swtpm-";

bool process_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// remove_orphans deletes state directories whose owning process is gone (a test
// run that was killed before its destructors ran).
void remove_orphans(const fs::path& root) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kDirPrefix, 0) != 0 || !entry.is_directory(ec)) continue;
    std::ifstream owner(entry.path() / "owner.pid");
    pid_t pid = 0;
    if (!(owner >> pid)) continue;  // being created right now, or not ours
    if (process_alive(pid)) continue;
    std::ifstream swtpm_pid_file(entry.path() / "swtpm.pid");
    pid_t swtpm_pid = 0;
    if (swtpm_pid_file >> swtpm_pid && process_alive(swtpm_pid)) ::kill(swtpm_pid, SIGKILL);
    fs::remove_all(entry.path(), ec);
  }
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// tpm_answers sends TPM2_GetRandom(8) on the raw data socket and checks for a
// TPM2_ST_NO_SESSIONS response: the TPM is up and initialised.
bool tpm_answers(const fs::path& sock) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::array<unsigned char, 12> get_random = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8};
    if (::write(fd, get_random.data(), get_random.size()) == static_cast<ssize_t>(get_random.size())) {
      std::array<unsigned char, 64> resp{};
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ssize_t n = ::read(fd, resp.data(), resp.size());
      ok = n >= 10 && resp[0] == 0x80 && resp[1] == 0x01 && resp[6] == 0 && resp[7] == 0 && resp[8] == 0 && resp[9] == 0;
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace

swtpm_process::swtpm_process(options opts) : opts_(std::move(opts)) {
  fs::path root = opts_.temp_root;
  if (root.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    root = (tmp != nullptr && *tmp != '\0') ? fs::path(tmp) : fs::path("/tmp");
  }
  remove_orphans(root);
  std::string templ = (root / (std::string(kDirPrefix) + "XXXXXX")).string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr)
    throw std::runtime_error("swtpm: cannot create a state directory under " + root.string() + ": " + std::strerror(errno));
  dir_ = buf.data();
  // The sockets must fit sun_path (108 bytes).
  if ((dir_ / "sock.ctrl").string().size() >= sizeof(sockaddr_un::sun_path)) {
    fs::remove_all(dir_);
    throw std::runtime_error("swtpm: state directory path too long for a UNIX socket: " + dir_.string());
  }
  std::ofstream(dir_ / "owner.pid") << ::getpid() << "\n";
  try {
    if (opts_.endorsement) provision_endorsement();
    start();
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    throw;
  }
}

swtpm_process::~swtpm_process() {
  stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string swtpm_process::tcti() const { return "swtpm:path=" + (dir_ / "sock").string(); }

void swtpm_process::start() {
  if (running()) return;
  std::error_code ec;
  fs::remove(dir_ / "sock", ec);
  fs::remove(dir_ / "sock.ctrl", ec);
  const std::string state = "dir=" + dir_.string();
  const std::string server = "type=unixio,path=" + (dir_ / "sock").string();
  const std::string ctrl = "type=unixio,path=" + (dir_ / "sock.ctrl").string();
  const std::string log = "file=" + (dir_ / "swtpm.log").string() + ",level=1";
  std::vector<std::string> args = {"swtpm", "socket", "--tpm2", "--tpmstate", state, "--server", server, "--ctrl", ctrl,
                                   "--flags", "not-need-init,startup-clear", "--log", log};
  // The child dies with the thread that started it, so an interrupted test
  // leaves no swtpm behind.
  child_spec spec;
  spec.argv = std::move(args);
  spec.death_signal = SIGKILL;
  proc_ = child_process(spec);
  std::ofstream(dir_ / "swtpm.pid") << proc_.pid() << "\n";
  wait_until_answering();
}

void swtpm_process::wait_until_answering() {
  auto deadline = std::chrono::steady_clock::now() + opts_.start_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = proc_.try_wait())
      throw std::runtime_error("swtpm exited during start-up (" + child_process::describe(*status) +
                               "; is the swtpm package installed?); log: " + read_file(dir_ / "swtpm.log"));
    if (fs::exists(dir_ / "sock") && tpm_answers(dir_ / "sock")) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
  throw std::runtime_error("swtpm did not answer within " + std::to_string(opts_.start_timeout.count()) +
                           " ms; log: " + read_file(dir_ / "swtpm.log"));
}

fs::path swtpm_process::ca_dir() const { return opts_.ek_ca_dir.empty() ? dir_ / "ca" : opts_.ek_ca_dir; }
fs::path swtpm_process::ek_ca_root() const { return ca_dir() / "swtpm-localca-rootca-cert.pem"; }
fs::path swtpm_process::ek_ca_intermediate() const { return ca_dir() / "issuercert.pem"; }

void swtpm_process::provision_endorsement() {
  // docs/tpm-notes.md: the recipe checked on Debian 12's swtpm 0.7.1.
  const fs::path ca = ca_dir();
  fs::create_directories(ca);
  {
    std::ofstream conf(dir_ / "localca.conf");
    conf << "statedir = " << ca.string() << "\nsigningkey = " << (ca / "signkey.pem").string()
         << "\nissuercert = " << (ca / "issuercert.pem").string() << "\ncertserial = " << (ca / "certserial").string()
         << "\n";
  }
  {
    std::ofstream conf(dir_ / "setup.conf");
    conf << "create_certs_tool = /usr/share/swtpm/swtpm-localca\ncreate_certs_tool_config = "
         << (dir_ / "localca.conf").string() << "\ncreate_certs_tool_options = /etc/swtpm-localca.options\n"
         << "active_pcr_banks = sha256\n";
  }
  child_spec spec;
  spec.argv = {"swtpm_setup", "--tpm2", "--tpmstate", dir_.string(), "--create-ek-cert", "--config",
               (dir_ / "setup.conf").string(), "--overwrite"};
  spec.log_file = dir_ / "swtpm_setup.log";
  child_process setup(spec);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::optional<int> status;
  while (!(status = setup.try_wait())) {
    if (std::chrono::steady_clock::now() > deadline) {
      setup.stop(SIGKILL);
      throw std::runtime_error("swtpm_setup did not finish within 60 s; log: " + read_file(dir_ / "swtpm_setup.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (child_process::exit_code(*status) != 0)
    throw std::runtime_error("swtpm_setup failed (" + child_process::describe(*status) +
                             "; is swtpm-tools installed?); log: " + read_file(dir_ / "swtpm_setup.log"));
}

void swtpm_process::stop() {
  proc_.stop(SIGTERM, std::chrono::seconds(2));  // 2 s for a clean shutdown (state is written)
}

}  // namespace agentbus::testing
