// agentbus-key as a user runs it, checked with the openssl command line.
#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

using testing::command_result;
using testing::shell_quote;
using testing::swtpm_environment;
AGENTBUS_USE_SWTPM_ENVIRONMENT();

std::string key_tool() { return shell_quote((testing::binary_dir() / "tools" / "agentbus-key").string()); }
std::string tcti() { return shell_quote(swtpm_environment::process().tcti()); }

command_result key(const std::string& args) { return testing::run_command(key_tool() + " " + args); }

struct role_case {
  std::string role, algorithm, openssl_opts;
};

class KeyCli : public ::testing::TestWithParam<role_case> {};

TEST_P(KeyCli, CreateSignAndOpensslVerify) {
  const auto& c = GetParam();
  testing::scoped_temp_dir tmp;
  const std::string d = shell_quote(tmp.path().string());
  auto created = key("create --role " + c.role + " --dir " + d + "/id --tcti " + tcti());
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_NE(created.output.find(c.algorithm), std::string::npos) << created.output;
  EXPECT_NE(created.output.find("protection   tpm"), std::string::npos) << created.output;

  // The printed fingerprint is SHA-256 of the DER public key, as openssl computes it.
  auto pem = key("pubkey --dir " + d + "/id");
  ASSERT_EQ(pem.exit_code, 0) << pem.output;
  testing::write_text(tmp.path() / "pub.pem", pem.output);
  auto fp = testing::run_command("openssl pkey -pubin -in " + d + "/pub.pem -outform DER | sha256sum");
  ASSERT_EQ(fp.exit_code, 0);
  EXPECT_NE(created.output.find("sha256:" + fp.output.substr(0, 64)), std::string::npos)
      << created.output << " vs " << fp.output;

  testing::write_text(tmp.path() / "file.bin", "a file signed by agentbus-key\n");
  auto signed_ = key("sign --dir " + d + "/id --in " + d + "/file.bin --out " + d + "/file.sig --tcti " + tcti());
  ASSERT_EQ(signed_.exit_code, 0) << signed_.output;

  auto verify = testing::run_command("openssl dgst " + c.openssl_opts + " -verify " + d + "/pub.pem -signature " + d +
                                     "/file.sig " + d + "/file.bin");
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_NE(verify.output.find("Verified OK"), std::string::npos) << verify.output;

  testing::write_text(tmp.path() / "file.bin", "a file signed by agentbus-key?\n");
  auto tampered = testing::run_command("openssl dgst " + c.openssl_opts + " -verify " + d + "/pub.pem -signature " + d +
                                       "/file.sig " + d + "/file.bin");
  EXPECT_NE(tampered.exit_code, 0) << tampered.output;
}

INSTANTIATE_TEST_SUITE_P(
    Families, KeyCli,
    ::testing::Values(
        role_case{"DIRECTOR", "RSA-3072 RSASSA-PSS over sha384",
                  "-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:auto"},
        role_case{"ARCHITECT", "ECDSA P-384 over sha3-384", "-sha3-384"},
        role_case{"MONITOR", "ECDSA P-256 over sha256", "-sha256"}),
    [](const auto& info) { return info.param.role; });

TEST(KeyCliInfo, DescribesTheTpm) {
  auto r = key("info --tcti " + tcti());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("manufacturer  IBM"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("simulator     yes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("P-384"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3072"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rsa3072-pss-sha384  supported"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ek            none:"), std::string::npos) << "this swtpm has no EK certificate\n" << r.output;
}

TEST(KeyCliErrors, ExitCodesScriptsCanTest) {
  testing::scoped_temp_dir tmp;
  const std::string d = shell_quote(tmp.path().string());
  EXPECT_EQ(key("--help").exit_code, 0);
  EXPECT_EQ(key("create --help").exit_code, 0);
  EXPECT_EQ(key("frobnicate").exit_code, 2);
  EXPECT_EQ(key("create --dir " + d + "/x").exit_code, 2) << "missing --role";

  auto unknown = key("create --role NOPE --dir " + d + "/x --tcti " + tcti());
  EXPECT_EQ(unknown.exit_code, 3) << unknown.output;
  EXPECT_NE(unknown.output.find("NOPE"), std::string::npos);

  ASSERT_EQ(key("create --role MONITOR --dir " + d + "/m --tcti " + tcti()).exit_code, 0);
  auto again = key("create --role MONITOR --dir " + d + "/m --tcti " + tcti());
  EXPECT_EQ(again.exit_code, 6) << again.output;

  testing::write_text(tmp.path() / "f", "x");
  auto no_tcti = testing::run_command("env -u AGENTBUS_TCTI " + key_tool() + " sign --dir " + d + "/m --in " + d +
                                      "/f --out " + d + "/s");
  EXPECT_EQ(no_tcti.exit_code, 4) << no_tcti.output;

  auto no_input = key("sign --dir " + d + "/m --in " + d + "/missing --out " + d + "/s --tcti " + tcti());
  EXPECT_EQ(no_input.exit_code, 7) << no_input.output;

  testing::write_text(tmp.path() / "bad.toml", "version = 1\n[suites.x]\nsignature = 'dsa'\n");
  auto bad_policy = key("--policy " + d + "/bad.toml create --role MONITOR --dir " + d + "/p --software");
  EXPECT_EQ(bad_policy.exit_code, 3) << bad_policy.output;
  EXPECT_NE(bad_policy.output.find("bad.toml"), std::string::npos) << bad_policy.output;
  EXPECT_NE(bad_policy.output.find("suites.x.signature"), std::string::npos) << bad_policy.output;
}

TEST(KeyCliFallback, NoTpmAnsweringFallsBackToSoftwareLoudlyUnlessTpmIsRequired) {
  testing::scoped_temp_dir tmp;
  const std::string d = shell_quote(tmp.path().string());
  const std::string dead = shell_quote("swtpm:path=" + (tmp.path() / "nothing-here").string());
  auto fallback = key("create --role DEBUGGER --dir " + d + "/f --tcti " + dead);
  ASSERT_EQ(fallback.exit_code, 0) << fallback.output;
  EXPECT_NE(fallback.output.find("protection   software"), std::string::npos) << fallback.output;
  EXPECT_NE(fallback.output.find("falling back to SOFTWARE"), std::string::npos) << fallback.output;

  auto required = key("create --role DEBUGGER --dir " + d + "/r --tcti " + dead + " --require-tpm");
  EXPECT_EQ(required.exit_code, 4) << required.output;

  auto explicit_sw = key("create --role MONITOR --dir " + d + "/s --software");
  ASSERT_EQ(explicit_sw.exit_code, 0) << explicit_sw.output;
  EXPECT_NE(explicit_sw.output.find("protection   software"), std::string::npos);
  testing::write_text(tmp.path() / "f.bin", "software signed");
  ASSERT_EQ(key("sign --dir " + d + "/s --in " + d + "/f.bin --out " + d + "/f.sig").exit_code, 0);
  auto v = testing::run_command("openssl dgst -sha256 -verify " + d + "/s/public.pem -signature " + d + "/f.sig " + d + "/f.bin");
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

}  // namespace
}  // namespace agentbus
