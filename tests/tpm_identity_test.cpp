// TPM identities and the swtpm harness, against real swtpm processes.
#include <signal.h>
#include <sys/stat.h>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/testing/swtpm_process.hpp"
#include "agentbus/tpm.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

using testing::swtpm_environment;
using testing::swtpm_process;
AGENTBUS_USE_SWTPM_ENVIRONMENT();
namespace fs = std::filesystem;

suite suite_of(const std::string& role) { return *policy::builtin_default().suite_for(role); }

class TpmIdentity : public ::testing::TestWithParam<std::string> {};

TEST_P(TpmIdentity, EachRoleSignsWithItsSuiteAndOpensslCliVerifies) {
  testing::scoped_temp_dir tmp;
  auto dir = tmp.path() / "id";
  const suite s = suite_of(GetParam());
  auto created = identity_key::create_tpm(dir, GetParam(), s, swtpm_environment::shared_tpm());
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  auto& key = *created;
  EXPECT_EQ(key->key_protection(), protection::tpm);
  EXPECT_EQ(key->public_key().type(), s.key);
  EXPECT_EQ(key->metadata().tpm_manufacturer, "IBM");
  EXPECT_TRUE(key->metadata().tpm_simulator);
  EXPECT_FALSE(fs::exists(dir / "private.pem")) << "a TPM identity has no exportable private key";

  const std::string message = "envelope bytes for " + GetParam();
  testing::write_text(tmp.path() / "msg", message);
  auto sig = key->sign_message(as_bytes(message));
  ASSERT_TRUE(sig.ok()) << sig.error().to_string();
  EXPECT_TRUE(key->verify_message(as_bytes(message), *sig).ok());
  testing::write_text(tmp.path() / "sig", std::string(sig->begin(), sig->end()));

  std::string opts = "-" + std::string(hash_name(s.envelope_hash));
  if (s.key.scheme == signature_scheme::rsa_pss) opts += " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto";
  const std::string d = testing::shell_quote(tmp.path().string());
  auto ok = testing::run_command("cd " + d + " && openssl dgst " + opts + " -verify id/public.pem -signature sig msg");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("Verified OK"), std::string::npos) << ok.output;

  testing::write_text(tmp.path() / "msg", message + "!");
  auto bad = testing::run_command("cd " + d + " && openssl dgst " + opts + " -verify id/public.pem -signature sig msg");
  EXPECT_NE(bad.exit_code, 0) << "openssl accepted a signature over a tampered message";
}

INSTANTIATE_TEST_SUITE_P(Roles, TpmIdentity,
                         ::testing::Values("DIRECTOR", "SECURITY", "ARCHITECT", "CONSTRUCTOR", "MONITOR", "OPTIMIZER",
                                           "DEBUGGER"));

TEST(TpmIdentityFiles, ReopensAfterATpmRestartWithTheSamePublicKey) {
  testing::scoped_temp_dir tmp;
  auto created = identity_key::create_tpm(tmp.path(), "MONITOR", suite_of("MONITOR"), swtpm_environment::shared_tpm());
  ASSERT_TRUE(created.ok());
  bytes der = (*created)->public_key().der();
  created.value().reset();  // release the key's reference to the TPM connection
  swtpm_environment::reset_tpm();
  swtpm_environment::process().stop();
  swtpm_environment::process().start();

  auto key = identity_key::open(tmp.path(), swtpm_environment::shared_tpm());
  EXPECT_EQ(key->public_key().der(), der);
  auto sig = key->sign_message(as_bytes("after restart"));
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(key->verify_message(as_bytes("after restart"), *sig).ok());
}

// Keys stay loaded across signatures while the slots allow (two besides the storage
// key on swtpm): signing again with a loaded key loads nothing; a third key in turn
// evicts the least recently used one, so each of its signatures loads a key and
// flushes one. The statistics say so ("key_load", "key_flush").
TEST(TpmKeyCache, KeysStayLoadedUntilAThirdKeyNeedsTheirSlot) {
  auto t = swtpm_environment::shared_tpm();
  std::vector<std::shared_ptr<identity_key>> keys;
  std::vector<testing::scoped_temp_dir> dirs(3);
  for (auto& d : dirs) {
    auto k = identity_key::create_tpm(d.path(), "MONITOR", suite_of("MONITOR"), t);
    ASSERT_TRUE(k.ok()) << k.error().to_string();
    keys.push_back(std::move(k).value());
  }
  auto count = [&](const std::string& op) -> std::uint64_t {
    for (const auto& s : t->stats())
      if (s.operation == op) return s.count;
    return 0;
  };
  auto sign = [](identity_key& k) { ASSERT_TRUE(k.sign_message(as_bytes("cached?")).ok()); };
  sign(*keys[0]);
  sign(*keys[1]);
  const std::uint64_t loads = count("key_load"), flushes = count("key_flush");
  for (int i = 0; i < 10; ++i) {
    sign(*keys[0]);
    sign(*keys[1]);
  }
  EXPECT_EQ(count("key_load"), loads) << "two keys fit: nothing should be reloaded";
  EXPECT_EQ(count("key_flush"), flushes);
  // k2 first: each key signs just after it was evicted (least recently used).
  for (int i = 0; i < 9; ++i) sign(*keys[static_cast<std::size_t>((i + 2) % 3)]);
  EXPECT_EQ(count("key_load"), loads + 9) << "three keys in turn: every signature reloads";
  EXPECT_EQ(count("key_flush"), flushes + 9);
}

TEST(TpmIdentityFiles, AnotherTpmCannotUseTheKeyAndSaysWhy) {
  testing::scoped_temp_dir tmp;
  auto created = identity_key::create_tpm(tmp.path(), "ARCHITECT", suite_of("ARCHITECT"), swtpm_environment::shared_tpm());
  ASSERT_TRUE(created.ok());
  swtpm_process other;  // a different TPM: different owner seed, different SRK
  auto other_tpm = std::make_shared<tpm::tpm>(other.tcti());
  try {
    (void)identity_key::open(tmp.path(), other_tpm);
    ADD_FAILURE() << "a key blob loaded under another TPM";
  } catch (const identity_error& e) {
    EXPECT_NE(std::string(e.what()).find("another TPM"), std::string::npos) << e.what();
  }
}

TEST(TpmIdentityFiles, PrivateBlobIsOwnerOnlyAndTamperedPublicBlobIsRefused) {
  testing::scoped_temp_dir tmp;
  auto created = identity_key::create_tpm(tmp.path(), "MONITOR", suite_of("MONITOR"), swtpm_environment::shared_tpm());
  ASSERT_TRUE(created.ok());
  struct stat st {};
  ASSERT_EQ(::stat((tmp.path() / "key.priv").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string pub = testing::read_text(tmp.path() / "key.pub");
  pub[pub.size() - 5] ^= 0x20;  // inside the public point
  testing::write_text(tmp.path() / "key.pub", pub);
  EXPECT_THROW((void)identity_key::open(tmp.path(), swtpm_environment::shared_tpm()), identity_error);
}

TEST(SwtpmHarness, TwoInstancesDoNotCollideAndTeardownRemovesEverything) {
  fs::path dir_a, dir_b;
  pid_t pid_a, pid_b;
  {
    swtpm_process a, b;
    dir_a = a.state_dir();
    dir_b = b.state_dir();
    pid_a = a.pid();
    pid_b = b.pid();
    EXPECT_NE(a.tcti(), b.tcti());
    EXPECT_NE(dir_a, dir_b);
    // Each answers as its own TPM: different storage keys.
    tpm::tpm ta(a.tcti()), tb(b.tcti());
    EXPECT_NE(ta.storage_key_name(), tb.storage_key_name());
  }
  EXPECT_FALSE(fs::exists(dir_a));
  EXPECT_FALSE(fs::exists(dir_b));
  EXPECT_NE(::kill(pid_a, 0), 0) << "swtpm still running after teardown";
  EXPECT_NE(::kill(pid_b, 0), 0);
}

TEST(SwtpmHarness, StateLeftByAKilledRunIsRemovedByTheNextOne) {
  testing::scoped_temp_dir root;
  fs::path orphan = root.path() / "agentbus-swtpm-orphan";
  fs::create_directories(orphan);
  // A PID that cannot be alive: above the kernel's pid_max default.
  testing::write_text(orphan / "owner.pid", "4194304\n");
  swtpm_process::options opts;
  opts.temp_root = root.path();
  swtpm_process fresh(opts);
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::exists(fresh.state_dir()));
}

}  // namespace
}  // namespace agentbus
