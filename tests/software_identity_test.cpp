// The software fallback: same interface as TPM identities, flagged, 0600 files.
#include <sys/stat.h>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

suite suite_of(const std::string& role) { return *policy::builtin_default().suite_for(role); }

class SoftwareIdentity : public ::testing::TestWithParam<std::string> {};

TEST_P(SoftwareIdentity, CreatesSignsReopensAndIsFlaggedSoftware) {
  testing::scoped_temp_dir tmp;
  auto dir = tmp.path() / "id";
  auto key = identity_key::create_software(dir, GetParam(), suite_of(GetParam()));
  EXPECT_EQ(key->key_protection(), protection::software);
  EXPECT_EQ(key->metadata().role, GetParam());

  auto sig = key->sign_message(as_bytes("payload"));
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(key->verify_message(as_bytes("payload"), *sig).ok());
  EXPECT_EQ(key->verify_message(as_bytes("payloaD"), *sig).code(), status_code::bad_signature);

  struct stat st {};
  ASSERT_EQ(::stat((dir / "private.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(testing::read_text(dir / "identity.toml").find("protection = 'software'"), std::string::npos);

  auto reopened = identity_key::open(dir, nullptr);
  EXPECT_EQ(reopened->public_key().der(), key->public_key().der());
  EXPECT_EQ(reopened->key_suite().name, key->key_suite().name);
  auto sig2 = reopened->sign_message(as_bytes("payload"));
  ASSERT_TRUE(sig2.ok());
  EXPECT_TRUE(key->verify_message(as_bytes("payload"), *sig2).ok());
}

INSTANTIATE_TEST_SUITE_P(Roles, SoftwareIdentity, ::testing::Values("DIRECTOR", "ARCHITECT", "MONITOR"));

TEST(SoftwareIdentityFiles, RefusesToOverwriteAnExistingIdentity) {
  testing::scoped_temp_dir tmp;
  (void)identity_key::create_software(tmp.path(), "MONITOR", suite_of("MONITOR"));
  EXPECT_THROW((void)identity_key::create_software(tmp.path(), "MONITOR", suite_of("MONITOR")), identity_error);
}

TEST(SoftwareIdentityFiles, RefusesAPrivateKeyReadableByOthers) {
  testing::scoped_temp_dir tmp;
  (void)identity_key::create_software(tmp.path(), "MONITOR", suite_of("MONITOR"));
  ::chmod((tmp.path() / "private.pem").c_str(), 0644);
  EXPECT_THROW((void)identity_key::open(tmp.path(), nullptr), identity_error);
}

TEST(SoftwareIdentityFiles, RefusesAKeyThatDoesNotMatchTheRecordedFingerprint) {
  testing::scoped_temp_dir a, b;
  (void)identity_key::create_software(a.path(), "MONITOR", suite_of("MONITOR"));
  (void)identity_key::create_software(b.path(), "MONITOR", suite_of("MONITOR"));
  std::filesystem::remove(a.path() / "private.pem");
  std::filesystem::copy_file(b.path() / "private.pem", a.path() / "private.pem");
  try {
    (void)identity_key::open(a.path(), nullptr);
    ADD_FAILURE() << "a swapped private key was accepted";
  } catch (const identity_error& e) {
    EXPECT_NE(std::string(e.what()).find("fingerprint"), std::string::npos) << e.what();
  }
}

TEST(SoftwareIdentityFiles, MissingOrBrokenMetadataIsAClearError) {
  testing::scoped_temp_dir tmp;
  EXPECT_THROW((void)identity_key::open(tmp.path(), nullptr), identity_error);
  testing::write_text(tmp.path() / "identity.toml", "role = 'MONITOR'\nprotection = 'quantum'\n");
  try {
    (void)identity_key::read_metadata(tmp.path());
    ADD_FAILURE();
  } catch (const identity_error& e) {
    EXPECT_NE(std::string(e.what()).find("identity.toml"), std::string::npos) << e.what();
  }
}

TEST(SoftwareIdentityFiles, TpmIdentityWithoutATpmIsRefused) {
  testing::scoped_temp_dir tmp;
  testing::write_text(tmp.path() / "identity.toml",
                      "role = 'MONITOR'\nprotection = 'tpm'\nfingerprint = '00'\n"
                      "[suite]\nname = 'ecdsa-p256-sha256'\nsignature = 'ecdsa'\ncurve = 'P-256'\n"
                      "envelope_hash = 'sha256'\nmac = 'hmac-sha256'\necdh_curve = 'P-256'\n"
                      "[tpm]\nstorage_key_name = '00'\n");
  EXPECT_THROW((void)identity_key::open(tmp.path(), nullptr), identity_error);
}

TEST(SoftwareFallback, UsedWhenNoTpmAnswersAndOnlyIfAllowed) {
  // Nothing listens at this path: no TPM answers.
  const std::string tcti = "swtpm:path=/nonexistent/agentbus-test/sock";
  EXPECT_EQ(connect_tpm(tcti, /*allow_software_fallback=*/true), nullptr);
  EXPECT_EQ(connect_tpm("", /*allow_software_fallback=*/true), nullptr);
  EXPECT_THROW((void)connect_tpm(tcti, /*allow_software_fallback=*/false), tpm::tpm_error);
  EXPECT_THROW((void)connect_tpm("", /*allow_software_fallback=*/false), tpm::tpm_error);
}

}  // namespace
}  // namespace agentbus
