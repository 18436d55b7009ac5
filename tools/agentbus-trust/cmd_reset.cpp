// agentbus-trust reset-counters [AGENT] — clear refusal counters (operator-signed).
#include <iostream>

#include "commands.hpp"
#include "operator_request.hpp"

namespace agentbus::trust_tool {

void add_reset_command(CLI::App& app, const global_options& global, int* result) {
  struct options {
    std::string agent;
    operator_options op;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand("reset-counters",
                                     "Clear the refusal counters of one agent, or of all agents (signed by an operator key)");
  cmd->add_option("AGENT", opts->agent, "Agent name (default: all agents)");
  add_operator_options(cmd, opts->op);
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, opts, result] {
    nlohmann::json inner{{"op", "reset_counters"}};
    if (!opts->agent.empty()) inner["agent"] = opts->agent;
    auto r = send_operator_request(global, opts->op, inner);
    if (opts->op.json) std::cout << r.dump(2) << "\n";
    else std::cout << "reset the refusal counters of " << (opts->agent.empty() ? "all agents" : opts->agent)
                   << " by operator " << r.value("operator", std::string("?")) << "\n";
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
