// The example agents (real executables, each with its own swtpm) against a real
// broker, then agentbus-trust's JSON about them: the demo's path as a test.
#include <nlohmann/json.hpp>

#include "support/bus_fixture.hpp"

namespace agentbus {
namespace {

using nlohmann::json;
using testing::run_command;
using testing::swtpm_process;
using testing::shell_quote;

TEST(ExamplesTrust, TheExampleAgentsTalkAndTheTrustGraphShowsThem) {
  testing::broker_process broker;
  testing::scoped_temp_dir tmp;
  swtpm_process director_tpm, monitor_tpm, architect_tpm;
  const std::string examples = (testing::binary_dir() / "examples").string();
  const std::string policy = (testing::source_dir() / "config" / "policy.toml").string();
  const std::string trust_bin = (testing::binary_dir() / "tools" / "agentbus-trust").string();
  // The operator issues each agent its bundle (token and broker fingerprint), as
  // docs/operations.md says; the examples enrol from it.
  auto bundle = [&](const std::string& name, const std::string& role) {
    const std::string file = (tmp.path() / (name + ".bundle")).string();
    auto out = run_command(shell_quote(trust_bin) + " --admin " + shell_quote(broker.admin_endpoint()) + " token create " +
                           name + " --role " + role + " --out " + shell_quote(file) + " --operator-key " +
                           shell_quote((broker.dir() / "operator").string()) + " --operator " +
                           testing::broker_process::kOperatorName);
    EXPECT_EQ(out.exit_code, 0) << out.output;
    return file;
  };
  auto run = [&](const std::string& kind, const std::string& name, const std::string& role, const swtpm_process& t,
                 double seconds, const std::string& extra = "") {
    return shell_quote(examples + "/agentbus-example-" + kind) + extra + " --enrolment-bundle " +
           shell_quote(bundle(name, role)) + " --name " + name + " --role " + role + " --key-dir " +
           shell_quote((tmp.path() / name).string()) + " --tcti " + shell_quote(t.tcti()) + " --broker " +
           shell_quote(broker.endpoint()) + " --policy " + shell_quote(policy) + " --seconds " + std::to_string(seconds) +
           " > " + shell_quote((tmp.path() / (name + ".log")).string()) + " 2>&1";
  };
  // Monitor and architect first (the director talks to both), then the director. The
  // monitor signs in tpm-batch mode, the others directly: mixed traffic.
  auto r = run_command("(" + run("monitor", "monitor-1", "MONITOR", monitor_tpm, 6, " --batch") + ") & (" +
                       run("architect", "architect-1", "ARCHITECT", architect_tpm, 6) + ") & sleep 1.5; " +
                       run("director", "director-1", "DIRECTOR", director_tpm, 3) + "; d=$?; wait; exit $d");
  std::string director_log = testing::read_text(tmp.path() / "director-1.log");
  ASSERT_EQ(r.exit_code, 0) << director_log << "\n" << broker.log();
  // The director (direct signatures) received the monitor's batch-signed envelopes,
  // on the topic and directly; the monitor received the director's direct ones.
  EXPECT_NE(director_log.find("DELIVERED from monitor-1 (MONITOR, ecdsa-p256-sha256, tpm-batch): topic metrics/cpu:"),
            std::string::npos)
      << director_log;
  EXPECT_NE(director_log.find("DELIVERED from monitor-1 (MONITOR, ecdsa-p256-sha256, tpm-batch): direct:"),
            std::string::npos)
      << director_log;
  std::string monitor_log = testing::read_text(tmp.path() / "monitor-1.log");
  EXPECT_NE(monitor_log.find("DELIVERED from director-1 (DIRECTOR, rsa3072-pss-sha384, tpm): direct:"), std::string::npos)
      << monitor_log;
  EXPECT_EQ(director_log.find("REJECTED"), std::string::npos) << director_log << "\n---- monitor-1 ----\n" << monitor_log;
  EXPECT_EQ(monitor_log.find("REJECTED"), std::string::npos) << monitor_log;

  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // the registry flush
  auto trust = [&](const std::string& args) {
    auto out = run_command(shell_quote((testing::binary_dir() / "tools" / "agentbus-trust").string()) + " --admin " +
                           shell_quote(broker.admin_endpoint()) + " --policy " + shell_quote(policy) + " " + args);
    EXPECT_EQ(out.exit_code, 0) << out.output;
    return json::parse(out.output);
  };
  json agents = trust("agents --json");
  ASSERT_EQ(agents.size(), 3u) << agents.dump(2);
  std::map<std::string, std::string> suite_of;
  for (const auto& a : agents) {
    suite_of[a["name"]] = a["suite"];
    EXPECT_EQ(a["protection"], "tpm");
    EXPECT_TRUE(a["tpm_simulator"].get<bool>());
    EXPECT_FALSE(a["revoked"].get<bool>());
  }
  EXPECT_EQ(suite_of["director-1"], "rsa3072-pss-sha384");
  EXPECT_EQ(suite_of["monitor-1"], "ecdsa-p256-sha256");
  EXPECT_EQ(suite_of["architect-1"], "ecdsa-p384-sha3-384");

  json graph = trust("graph --json");
  EXPECT_EQ(graph["agents"].size(), 3u);
  EXPECT_EQ(graph["edges"].size(), 3u) << graph["edges"].dump(2);  // every pair talked
  std::uint64_t traffic = 0;
  for (const auto& e : graph["edges"]) {
    EXPECT_EQ(e["curve"], "P-384");
    traffic += e["messages_a_to_b"].get<std::uint64_t>() + e["messages_b_to_a"].get<std::uint64_t>();
  }
  EXPECT_GT(traffic, 10u);
  EXPECT_FALSE(graph["policy_edges"].empty());
  EXPECT_TRUE(graph["refusals"].empty()) << graph["refusals"].dump(2);
}

}  // namespace
}  // namespace agentbus
