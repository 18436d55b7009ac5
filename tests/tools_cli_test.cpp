// tools_cli_test.cpp — one convention for every executable the project ships: --help
// answers with exit 0, a usage error exits 2 (never CLI11's own numbers, such as the
// 109 agentbus-demo used to return).
#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

using testing::run_command;
using testing::shell_quote;

struct tool {
  const char* dir;
  const char* name;
};

class ToolCli : public ::testing::TestWithParam<tool> {};

TEST_P(ToolCli, HelpIsZeroAndAUsageErrorIsTwo) {
  const std::string bin = shell_quote((testing::binary_dir() / GetParam().dir / GetParam().name).string());
  auto help = run_command(bin + " --help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  auto bad = run_command(bin + " --no-such-option");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

INSTANTIATE_TEST_SUITE_P(
    Executables, ToolCli,
    ::testing::Values(tool{"broker", "agentbus-broker"}, tool{"tools", "agentbus-key"}, tool{"tools", "agentbus-trust"},
                      tool{"tools", "agentbus-bench"}, tool{"tools", "agentbus-demo"},
                      tool{"examples", "agentbus-example-director"}, tool{"examples", "agentbus-example-monitor"},
                      tool{"examples", "agentbus-example-architect"}, tool{"examples", "agentbus-example-rogue"}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& c : n)
        if (c == '-') c = '_';
      return n;
    });

std::string bin(const char* dir, const char* name) { return shell_quote((testing::binary_dir() / dir / name).string()); }

// Every tool runs from any directory (cd / first) and keeps its documented exit codes
// (docs/operations.md "Exit codes") beyond help and usage.
TEST(ToolExitCodes, FromAnyDirectory) {
  testing::scoped_temp_dir tmp;
  const std::string from_root = "cd / && ";
  // agentbus-bench: 3 when set-up fails (here: no broker to start).
  auto bench = run_command(from_root + bin("tools", "agentbus-bench") + " --broker-bin /nonexistent --messages 10");
  EXPECT_EQ(bench.exit_code, 3) << bench.output;
  // agentbus-trust: 1 for a failure (a policy that does not parse), 4 for a database
  // that is not a registry, 2 for a configuration that names no admin endpoint.
  testing::write_text(tmp.path() / "bad-policy.toml", "not a policy");
  testing::write_text(tmp.path() / "not-a-registry.db", "");
  auto trust = run_command(from_root + bin("tools", "agentbus-trust") + " graph --db " +
                           shell_quote((tmp.path() / "not-a-registry.db").string()) + " --policy " +
                           shell_quote((tmp.path() / "bad-policy.toml").string()));
  EXPECT_EQ(trust.exit_code, 1) << trust.output;  // the policy is read first
  EXPECT_NE(trust.output.find("policy error"), std::string::npos) << trust.output;
  auto not_registry = run_command(from_root + bin("tools", "agentbus-trust") + " graph --db " +
                                  shell_quote((tmp.path() / "not-a-registry.db").string()));
  EXPECT_EQ(not_registry.exit_code, 4) << not_registry.output;
  // agentbus-key: a key made and read back from any directory, with the built-in policy;
  // 6 for a key directory that holds no identity.
  auto created = run_command(from_root + bin("tools", "agentbus-key") + " create --role DEBUGGER --software --dir " +
                             shell_quote((tmp.path() / "k").string()));
  EXPECT_EQ(created.exit_code, 0) << created.output;
  auto pem = run_command(from_root + bin("tools", "agentbus-key") + " pubkey --dir " + shell_quote((tmp.path() / "k").string()));
  EXPECT_EQ(pem.exit_code, 0) << pem.output;
  EXPECT_NE(pem.output.find("BEGIN PUBLIC KEY"), std::string::npos) << pem.output;
  auto none = run_command(from_root + bin("tools", "agentbus-key") + " pubkey --dir " + shell_quote(tmp.path().string()));
  EXPECT_EQ(none.exit_code, 6) << none.output;
  // agentbus-demo: 0 with software keys, the checkout's policy found from its executable.
  auto demo = run_command(from_root + bin("tools", "agentbus-demo") + " --software --signatures 1");
  EXPECT_EQ(demo.exit_code, 0) << demo.output;
  EXPECT_NE(demo.output.find("config/policy.toml"), std::string::npos) << demo.output;
  EXPECT_NE(demo.output.find("high_security"), std::string::npos) << "the PROFILE column: " << demo.output;
}

}  // namespace
}  // namespace agentbus
