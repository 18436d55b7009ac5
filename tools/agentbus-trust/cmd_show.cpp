// agentbus-trust show AGENT — one agent's every field, its trust edges and its refusals.
#include <iostream>

#include "commands.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

void add_show_command(CLI::App& app, const global_options& global, int* result) {
  struct options {
    std::string agent;
    bool json = false;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand("show", "Show one agent: identity, key, TPM, revocation, pending key change, its edges "
                                             "and refusals");
  cmd->add_option("AGENT", opts->agent, "Agent name")->required();
  cmd->add_flag("--json", opts->json, "Print the admin result as JSON ({\"agent\",\"edges\",\"refusals\"})");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, opts, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "show"}, {"agent", opts->agent}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    if (opts->json) std::cout << r->dump(2) << "\n";
    else print_agent_details(std::cout, *r, src->live());
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
