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

}  // namespace
}  // namespace agentbus
