// agentbus-trust agents — every enrolled agent with its suite, key protection and state.
#include <iostream>

#include "commands.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

void add_agents_command(CLI::App& app, const global_options& global, int* result) {
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("agents", "List enrolled agents: role, suite, key protection (tpm/software), TPM, "
                                               "fingerprint, online, last seen, revoked");
  cmd->add_flag("--json", *as_json, "Print the admin result as JSON (an array of agent objects)");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, as_json, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "agents"}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    if (*as_json) std::cout << r->dump(2) << "\n";
    else print_agents(std::cout, *r, src->live());
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
