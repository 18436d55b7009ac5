// agentbus-trust edges — the agent↔agent sessions (trust edges) and their traffic.
#include <iostream>

#include "commands.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

void add_edges_command(CLI::App& app, const global_options& global, int* result) {
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("edges", "List trust edges (agent<->agent sessions): curve, MAC, established, rekeys, "
                                              "messages each way; REVOKED when an end is revoked");
  cmd->add_flag("--json", *as_json, "Print the admin result as JSON (an array of edge objects)");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, as_json, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "edges"}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    if (*as_json) std::cout << r->dump(2) << "\n";
    else print_edges(std::cout, *r);
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
