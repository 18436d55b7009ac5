// agentbus-trust revoke AGENT — revoke an agent at once (operator-signed).
#include <iostream>

#include "commands.hpp"
#include "operator_request.hpp"

namespace agentbus::trust_tool {

void add_revoke_command(CLI::App& app, const global_options& global, int* result) {
  struct options {
    std::string agent, reason;
    operator_options op;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand(
      "revoke", "Revoke an agent: its sessions are torn down and its next envelope is refused (signed by an operator key)");
  cmd->add_option("AGENT", opts->agent, "Agent name")->required();
  cmd->add_option("--reason", opts->reason, "Why (recorded in the registry)")->required();
  add_operator_options(cmd, opts->op);
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, opts, result] {
    auto r = send_operator_request(global, opts->op, {{"op", "revoke"}, {"agent", opts->agent}, {"reason", opts->reason}});
    if (opts->op.json) std::cout << r.dump(2) << "\n";
    else std::cout << "revoked " << opts->agent << " (reason: " << opts->reason << ") by operator "
                   << r.value("operator", std::string("?")) << "\n";
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
