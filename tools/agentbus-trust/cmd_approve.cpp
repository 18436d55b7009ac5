// agentbus-trust approve AGENT --fingerprint F — accept an agent's changed key
// (operator-signed). The fingerprint must be the one the agent presented.
#include <iostream>

#include "commands.hpp"
#include "operator_request.hpp"

namespace agentbus::trust_tool {

void add_approve_command(CLI::App& app, const global_options& global, int* result) {
  struct options {
    std::string agent, fingerprint;
    operator_options op;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand(
      "approve", "Approve an agent's changed key (shown by 'show AGENT' as pending), signed by an operator key");
  cmd->add_option("AGENT", opts->agent, "Agent name")->required();
  cmd->add_option("--fingerprint", opts->fingerprint, "SHA-256 fingerprint (64 hex digits) of the new key")
      ->required()
      ->transform(fingerprint_option());
  add_operator_options(cmd, opts->op);
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, opts, result] {
    const std::string& fp = opts->fingerprint;  // lower case: fingerprint_option()
    auto r = send_operator_request(global, opts->op, {{"op", "approve"}, {"agent", opts->agent}, {"fingerprint", fp}});
    if (opts->op.json) std::cout << r.dump(2) << "\n";
    else std::cout << "approved the new key of " << opts->agent << " (sha256:" << fp.substr(0, 16) << "...) by operator "
                   << r.value("operator", std::string("?")) << "\n";
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
