// agentbus-broker as an operator starts it: --help, configuration errors that name
// the file and the field, clean stop on SIGTERM, metrics including TPM operations.
#include "support/bus_fixture.hpp"

namespace agentbus {
namespace {

using testing::run_command;
using testing::shell_quote;

std::string broker_bin() { return shell_quote((testing::binary_dir() / "broker" / "agentbus-broker").string()); }

TEST(BrokerCli, HelpDocumentsEveryOption) {
  auto r = run_command(broker_bin() + " --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* opt : {"--config", "--tcti", "--state-dir", "--key-dir", "--policy", "--endpoint", "--admin-endpoint",
                          "--insecure-permissive-testing", "SIGTERM"})
    EXPECT_NE(r.output.find(opt), std::string::npos) << opt << "\n" << r.output;
  EXPECT_EQ(run_command(broker_bin() + " --no-such-option").exit_code, 2);
}

TEST(BrokerCli, BadConfigStopsStartUpNamingFileAndField) {
  testing::scoped_temp_dir tmp;
  auto cfg = tmp.path() / "broker.toml";
  testing::write_text(cfg, "[broker]\nname = \"b\"\nendpoints = [\"tcp://127.0.0.1:notaport\"]\npolicy = \"p.toml\"\n"
                           "state_dir = \"s\"\n[identity]\nkey_dir = \"k\"\nallow_software = true\n");
  auto r = run_command(broker_bin() + " --config " + shell_quote(cfg.string()));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find(cfg.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("broker.endpoints[0]"), std::string::npos) << r.output;

  auto missing = run_command(broker_bin() + " --config " + shell_quote((tmp.path() / "nope.toml").string()));
  EXPECT_EQ(missing.exit_code, 3) << missing.output;
  EXPECT_NE(missing.output.find("nope.toml"), std::string::npos) << missing.output;

  // A policy error is reported with the policy's file and field.
  testing::write_text(tmp.path() / "p.toml", "version = 1\n[suites.x]\nsignature = \"dsa\"\n");
  testing::write_text(cfg, "[broker]\nname = \"b\"\nendpoints = [\"ipc://" + (tmp.path() / "s.sock").string() +
                               "\"]\npolicy = \"p.toml\"\nstate_dir = \"s\"\n[identity]\nkey_dir = \"k\"\nallow_software = true\n");
  auto bad_policy = run_command(broker_bin() + " --config " + shell_quote(cfg.string()));
  EXPECT_EQ(bad_policy.exit_code, 3) << bad_policy.output;
  EXPECT_NE(bad_policy.output.find("suites.x.signature"), std::string::npos) << bad_policy.output;
}

TEST(BrokerCli, NoTpmAndNoSoftwareFallbackIsRefusedClearly) {
  testing::scoped_temp_dir tmp;
  auto cfg = tmp.path() / "broker.toml";
  testing::write_text(cfg, "[broker]\nname = \"b\"\nendpoints = [\"ipc://" + (tmp.path() / "s.sock").string() +
                               "\"]\npolicy = \"" + (testing::source_dir() / "config" / "policy.toml").string() +
                               "\"\nstate_dir = \"s\"\n[identity]\nkey_dir = \"k\"\ntcti = \"\"\n");
  auto r = run_command(broker_bin() + " --config " + shell_quote(cfg.string()));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("identity.tcti"), std::string::npos) << r.output;
}

// The documented exit codes 4 (TPM unavailable) and 1 (a runtime failure: an endpoint
// that cannot be bound), each with a line that says why.
TEST(BrokerCli, ExitCodesForATpmThatDoesNotAnswerAndAnEndpointInUse) {
  testing::scoped_temp_dir tmp;
  const std::string policy = (testing::source_dir() / "config" / "policy.toml").string();
  auto cfg = tmp.path() / "broker.toml";
  testing::write_text(cfg, "[broker]\nendpoints = [\"ipc://" + (tmp.path() / "s.sock").string() + "\"]\npolicy = \"" +
                               policy + "\"\nstate_dir = \"s\"\n[identity]\nkey_dir = \"k\"\n"
                               "tcti = \"swtpm:host=127.0.0.1,port=1\"\n[logging]\nformat = \"json\"\n");
  auto no_tpm = run_command(broker_bin() + " --config " + shell_quote(cfg.string()));
  EXPECT_EQ(no_tpm.exit_code, 4) << no_tpm.output;
  EXPECT_NE(no_tpm.output.find("TPM unavailable"), std::string::npos) << no_tpm.output;

  // Two brokers on one TCP endpoint: the second cannot bind it. (Not ipc://: binding
  // an ipc path replaces the socket file.)
  testing::broker_process::options o;
  o.tcp = true;
  testing::broker_process first(o);
  auto busy = tmp.path() / "busy.toml";
  testing::write_text(busy, "[broker]\nendpoints = [\"" + first.tcp_endpoint() + "\"]\npolicy = \"" + policy +
                                "\"\nstate_dir = \"s2\"\n[identity]\nkey_dir = \"k2\"\nallow_software = true\n");
  auto in_use = run_command(broker_bin() + " --config " + shell_quote(busy.string()));
  EXPECT_EQ(in_use.exit_code, 1) << in_use.output;
  EXPECT_NE(in_use.output.find("broker failed"), std::string::npos) << in_use.output;
}

TEST(BrokerCli, StopsCleanlyOnSigtermAndPublishesTpmMetrics) {
  testing::broker_process b;
  testing::scoped_temp_dir tmp;
  auto monitor = testing::connect_agent(b, tmp.path(), "monitor-1", "MONITOR");
  std::string metrics = b.admin("metrics");
  EXPECT_NE(metrics.find("agentbus_enrolments_total"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("agentbus_tpm_operation_duration_seconds_bucket{operation=\"sign\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sign"), std::string::npos) << metrics;
  b.stop(SIGTERM);
  EXPECT_EQ(b.wait_exit(), 0) << b.log();
  EXPECT_NE(b.log().find("agentbus-broker stopped"), std::string::npos) << b.log();
}

}  // namespace
}  // namespace agentbus
