// agentbus-trust violations — what the broker refused, counted per agent and reason.
#include <iostream>

#include "commands.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

void add_violations_command(CLI::App& app, const global_options& global, int* result) {
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("violations", "List refusals per agent and reason (acl_denied, bad_signature, "
                                                   "key_changed, ...) with counts and the latest detail");
  cmd->add_flag("--json", *as_json, "Print the admin result as JSON (an array of refusal objects)");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, as_json, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "violations"}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    if (*as_json) std::cout << r->dump(2) << "\n";
    else print_violations(std::cout, *r);
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
