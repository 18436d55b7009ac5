// agentbus-trust graph — the whole trust graph as tables, DOT, JSON or a PNG.
#include <iostream>

#include "commands.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

void add_graph_command(CLI::App& app, const global_options& global, int* result) {
  struct options {
    std::string format = "table";
    std::string png;
    bool json = false;
  };
  auto opts = std::make_shared<options>();
  CLI::App* cmd = app.add_subcommand(
      "graph", "Show the trust graph: agents, trust edges, what the policy allows but nobody uses, refused attempts");
  cmd->add_option("--format", opts->format, "table (default), dot (Graphviz) or json")
      ->check(CLI::IsMember({"table", "dot", "json"}));
  cmd->add_flag("--json", opts->json, "Same as --format json");
  cmd->add_option("--png", opts->png,
                  "Also render the graph to this PNG file with Graphviz (dot -Tpng): nodes coloured by role, TPM keys "
                  "solid, software keys dashed, revoked agents struck through, unused policy edges dashed");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, opts, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "graph"}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    const std::string format = opts->json ? "json" : opts->format;
    if (format == "json") std::cout << r->dump(2) << "\n";
    else if (format == "dot") std::cout << graph_dot(*r, src->live());
    else print_graph_table(std::cout, *r, src->live());
    if (!opts->png.empty()) {
      render_png(graph_dot(*r, src->live()), opts->png);
      // The picture's path goes to stderr when stdout carries DOT or JSON for a pipe.
      (format == "table" ? std::cout : std::cerr) << (format == "table" ? "\n" : "") << "wrote " << opts->png << "\n";
    }
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
