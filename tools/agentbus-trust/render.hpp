// render.hpp — how agentbus-trust shows admin results: aligned tables for people,
// Graphviz DOT (and PNG through `dot`) for the trust graph. Every function takes
// the JSON shapes of schemas/admin.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace agentbus::trust_tool {

// text_table prints left-aligned columns separated by two spaces, measuring
// width in code points (so "A→B" counts 3). Empty cells print as "-".
class text_table {
 public:
  explicit text_table(std::vector<std::string> headers);
  void add(std::vector<std::string> row);
  bool empty() const noexcept { return rows_.empty(); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// format_time renders Unix ms as "2025-01-31 12:00:00Z" (UTC); null or 0 as "-".
std::string format_time(const nlohmann::json& unix_ms);

// print_agents: NAME ROLE SUITE PROTECTION TPM FINGERPRINT ONLINE LAST-SEEN REVOKED,
// then a line per agent with a changed key awaiting approval. `live` false prints
// ONLINE as "?" (an offline database does not know).
void print_agents(std::ostream& out, const nlohmann::json& agents, bool live);
// print_agent_details: every field of one agent, then its edges and refusals.
void print_agent_details(std::ostream& out, const nlohmann::json& show, bool live);
// print_edges: A B CURVE MAC ESTABLISHED REKEYS A→B B→A STATUS (REVOKED when an end is).
void print_edges(std::ostream& out, const nlohmann::json& edges);
// print_violations: AGENT REASON COUNT LAST DETAIL.
void print_violations(std::ostream& out, const nlohmann::json& refusals);

// graph_analysis is what the graph shows beyond the raw lists.
struct graph_analysis {
  // unused_pair: a role pair the policy allows (directed from → to) with unrevoked
  // agents on both sides but no trust edge between any agents of the two roles. `via` lists "send" and
  // "topic PATTERN" entries.
  struct unused_pair {
    std::string from_role, to_role;
    std::vector<std::string> via;
  };
  // attempt: acl_denied refusals attributed to a target, parsed from the detail:
  // "recipient 'NAME'" → agent, "send to role ROLE" → role, "publish to 'TOPIC'" or
  // "subscribe to 'TOPIC'" → topic. Unattributable refusals are left out.
  struct attempt {
    std::string agent;
    std::string target_kind;  // "agent", "role", "topic"
    std::string target;
    std::uint64_t count = 0;
    std::string detail;
  };
  std::vector<unused_pair> unused;
  std::vector<attempt> forbidden;
};
graph_analysis analyse_graph(const nlohmann::json& graph);

// print_graph_table: agents, trust edges, unused policy pairs and refusals.
void print_graph_table(std::ostream& out, const nlohmann::json& graph, bool live);
// graph_dot renders the trust graph for Graphviz: one cluster per role; nodes
// filled by role colour, TPM keys solid, software keys dashed with a red
// "software" line, revoked agents grey and struck through; trust edges labelled
// with curve, MAC and message counts; unused policy pairs dashed and light;
// attributed acl_denied attempts red and dotted; a legend.
std::string graph_dot(const nlohmann::json& graph, bool live);
// render_png runs `dot -Tpng -o FILE` on the DOT text. Throws tool_error when
// Graphviz is missing or fails.
void render_png(const std::string& dot, const std::filesystem::path& file);

}  // namespace agentbus::trust_tool
