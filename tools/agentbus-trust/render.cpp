// render.cpp — tables and the Graphviz trust graph.
#include "render.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "commands.hpp"

namespace agentbus::trust_tool {
namespace {

using json = nlohmann::json;

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::uint64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->is_number_unsigned() ? it->get<std::uint64_t>() : static_cast<std::uint64_t>(std::max<std::int64_t>(0, it->get<std::int64_t>()));
}

bool flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const json& array_at(const json& j, const char* key) {
  static const json empty = json::array();
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : empty;
}

// display_width counts code points, not bytes, and skips combining marks in the
// U+0300 block (enough for names and the arrows in headers).
std::size_t display_width(const std::string& s) {
  std::size_t w = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) == 0x80) continue;
    if (c == 0xCC || (c == 0xCD && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xB0)) continue;
    ++w;
  }
  return w;
}

std::string short_fp(const std::string& fp) { return fp.size() > 16 ? fp.substr(0, 16) : fp; }

bool attested(const json& a) { return a.contains("attestation") && a["attestation"].is_object(); }

std::string tpm_column(const json& a) {
  if (str(a, "protection") != "tpm") return "-";
  std::string m = str(a, "tpm_manufacturer");
  if (m.empty()) m = "tpm";
  m = flag(a, "tpm_simulator") ? m + " (sim)" : m;
  return m + (attested(a) ? ", attested" : ", declared");
}

std::string online_column(const json& a, bool live) {
  if (!live) return "?";
  return flag(a, "online") ? "yes" : "no";
}

// html escapes text for a Graphviz HTML-like label.
std::string html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// quoted makes a DOT double-quoted string (IDs and plain labels; "\n" stays a line break).
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

struct role_colours {
  const char* fill;
  const char* line;
};

// Fixed colours for the roles of DESIGN.md so the same role looks the same in
// every picture; roles a policy adds take a colour from the spare list.
role_colours colours_for(const std::string& role) {
  static const std::map<std::string, role_colours> fixed{
      {"DIRECTOR", {"#fde2a7", "#b7791f"}},   {"SECURITY", {"#f8c4c4", "#c53030"}},
      {"ARCHITECT", {"#c3dafe", "#3c66b1"}},  {"CONSTRUCTOR", {"#c6f0d5", "#2f855a"}},
      {"MONITOR", {"#e2d1f9", "#6b46c1"}},    {"OPTIMIZER", {"#fbd3e9", "#b83280"}},
      {"DEBUGGER", {"#d7e3e8", "#4a6572"}}};
  static const role_colours spare[] = {{"#fefcbf", "#975a16"}, {"#b2f5ea", "#2c7a7b"}, {"#feebc8", "#c05621"},
                                       {"#e9d8fd", "#553c9a"}};
  if (auto it = fixed.find(role); it != fixed.end()) return it->second;
  return spare[std::hash<std::string>{}(role) % std::size(spare)];
}

std::string via_text(const std::vector<std::string>& via) {
  std::string out;
  for (const auto& v : via) out += (out.empty() ? "" : ", ") + v;
  return out;
}

}  // namespace

// ---------------------------------------------------------------- tables

text_table::text_table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void text_table::add(std::vector<std::string> row) {
  row.resize(headers_.size());
  for (auto& c : row)
    if (c.empty()) c = "-";
  rows_.push_back(std::move(row));
}

void text_table::print(std::ostream& out) const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t i = 0; i < headers_.size(); ++i) width[i] = display_width(headers_[i]);
  for (const auto& r : rows_)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], display_width(r[i]));
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      s += cells[i];
      if (i + 1 < cells.size()) s += std::string(width[i] - display_width(cells[i]) + 2, ' ');
    }
    out << s << "\n";
  };
  line(headers_);
  for (const auto& r : rows_) line(r);
}

std::string format_time(const nlohmann::json& unix_ms) {
  if (!unix_ms.is_number_integer()) return "-";
  std::int64_t ms = unix_ms.get<std::int64_t>();
  if (ms <= 0) return "-";
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  if (::gmtime_r(&secs, &tm) == nullptr) return "-";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

void print_agents(std::ostream& out, const nlohmann::json& agents, bool live) {
  text_table t({"NAME", "ROLE", "SUITE", "PROTECTION", "TPM", "FINGERPRINT", "ONLINE", "LAST-SEEN", "REVOKED"});
  std::vector<std::string> pending;
  for (const auto& a : agents) {
    t.add({str(a, "name"), str(a, "role"), str(a, "suite"), str(a, "protection"), tpm_column(a),
           short_fp(str(a, "fingerprint")), online_column(a, live), format_time(a.value("last_seen", json())),
           flag(a, "revoked") ? "REVOKED" : "no"});
    if (!str(a, "pending_fingerprint").empty())
      pending.push_back(str(a, "name") + " presented a new key sha256:" + str(a, "pending_fingerprint") +
                        "\n  (refused; anyone who reaches the broker can present a key: compare this fingerprint with "
                        "the one its owner's agentbus-key printed before you approve it; `agentbus-trust show " +
                        str(a, "name") + "` says when and from where)");
  }
  if (t.empty()) {
    out << "no agents enrolled\n";
    return;
  }
  t.print(out);
  for (const auto& p : pending) out << "key change awaiting approval: " << p << "\n";
}

void print_edges(std::ostream& out, const nlohmann::json& edges) {
  if (edges.empty()) {
    out << "no trust edges\n";
    return;
  }
  text_table t({"A", "B", "CURVE", "MAC", "ESTABLISHED", "REKEYS", "A→B", "B→A", "STATUS"});
  for (const auto& e : edges)
    t.add({str(e, "a"), str(e, "b"), str(e, "curve"), str(e, "mac"), format_time(e.value("established_at", json())),
           std::to_string(num(e, "rekeys")), std::to_string(num(e, "messages_a_to_b")),
           std::to_string(num(e, "messages_b_to_a")), flag(e, "revoked") ? "REVOKED" : "ok"});
  t.print(out);
}

void print_violations(std::ostream& out, const nlohmann::json& refusals) {
  if (refusals.empty()) {
    out << "no refusals recorded\n";
    return;
  }
  text_table t({"AGENT", "REASON", "COUNT", "LAST", "DETAIL"});
  for (const auto& r : refusals) {
    std::string detail = str(r, "last_detail");
    if (display_width(detail) > 80) detail = detail.substr(0, 77) + "...";
    t.add({str(r, "agent"), str(r, "reason"), std::to_string(num(r, "count")), format_time(r.value("last_at", json())),
           detail});
  }
  t.print(out);
}

void print_agent_details(std::ostream& out, const nlohmann::json& show, bool live) {
  const json& a = show.at("agent");
  auto row = [&out](const char* k, const std::string& v) {
    out << k << std::string(14 - std::string_view(k).size(), ' ') << (v.empty() ? "-" : v) << "\n";
  };
  row("name", str(a, "name"));
  row("role", str(a, "role"));
  row("suite", str(a, "suite"));
  row("protection", str(a, "protection") == "software" ? "software (NOT hardware-protected)" : str(a, "protection"));
  if (str(a, "protection") == "tpm")
    row("tpm", str(a, "tpm_manufacturer") + (flag(a, "tpm_simulator") ? " (simulator)" : " (hardware)"));
  if (attested(a)) {
    const json& t = a["attestation"];
    row("attested", "by EK CA " + str(t, "ek_ca") + " (issuer " + str(t, "ek_issuer") + ")");
    row("ek", "sha256:" + str(t, "ek_fingerprint"));
    row("ak", str(t, "ak_name") + " (certified the identity key: fixedTPM, fixedParent, sensitiveDataOrigin)");
  } else if (str(a, "protection") == "tpm") {
    row("attested", "no: the TPM facts above are declared by the agent");
  }
  row("fingerprint", str(a, "fingerprint"));
  row("online", live ? (flag(a, "online") ? "yes" : "no") : "unknown (offline database)");
  row("enrolled", format_time(a.value("enrolled_at", json())));
  row("last seen", format_time(a.value("last_seen", json())));
  if (flag(a, "revoked"))
    row("revoked", "REVOKED at " + format_time(a.value("revoked_at", json())) + ": " + str(a, "revoked_reason"));
  else
    row("revoked", "no");
  row("pending key", str(a, "pending_fingerprint").empty() ? "none" : "sha256:" + str(a, "pending_fingerprint") + " (awaiting approval)");
  if (!str(a, "pending_fingerprint").empty()) {
    // Where the key change came from, for the operator to judge before approving.
    row("pending since", format_time(a.value("pending_at", json())));
    row("pending from", str(a, "pending_address"));
    row("pending proof", str(a, "pending_evidence"));
  }
  out << "public key\n" << str(a, "public_key_pem");
  if (!str(a, "public_key_pem").empty() && str(a, "public_key_pem").back() != '\n') out << "\n";
  if (const std::string pem = str(a, "pending_public_key_pem"); !pem.empty())
    out << "pending public key\n" << pem << (pem.back() == '\n' ? "" : "\n");
  const json& edges = array_at(show, "edges");
  out << "\nedges (" << edges.size() << ")\n";
  print_edges(out, edges);
  const json& refusals = array_at(show, "refusals");
  out << "\nrefusals (" << refusals.size() << ")\n";
  print_violations(out, refusals);
}

// ---------------------------------------------------------------- graph

graph_analysis analyse_graph(const nlohmann::json& graph) {
  graph_analysis g;
  std::map<std::string, std::string> role_of;
  std::map<std::string, std::size_t> agents_per_role;
  for (const auto& a : array_at(graph, "agents")) {
    role_of[str(a, "name")] = str(a, "role");
    // A revoked agent can use nothing: it does not make its role's pairs "unused".
    if (!flag(a, "revoked")) ++agents_per_role[str(a, "role")];
  }
  std::set<std::pair<std::string, std::string>> used;  // role pairs joined by a trust edge, both directions
  for (const auto& e : array_at(graph, "edges")) {
    auto ra = role_of.find(str(e, "a")), rb = role_of.find(str(e, "b"));
    if (ra == role_of.end() || rb == role_of.end()) continue;
    used.emplace(ra->second, rb->second);
    used.emplace(rb->second, ra->second);
  }
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> unused;
  for (const auto& p : array_at(graph, "policy_edges")) {
    std::string from = str(p, "from_role"), to = str(p, "to_role");
    // Only pairs with live (unrevoked) agents on both sides, two of them for a role
    // with itself.
    if (agents_per_role[from] == 0 || agents_per_role[to] == 0) continue;
    if (from == to && agents_per_role[from] < 2) continue;
    if (used.count({from, to}) != 0) continue;
    unused[{from, to}].push_back(str(p, "kind") == "send" ? "send" : "topic " + str(p, "topic"));
  }
  for (auto& [k, via] : unused) g.unused.push_back({k.first, k.second, std::move(via)});

  static const std::regex recipient(R"(recipient '([^']+)')");
  static const std::regex role(R"(send to role ([A-Za-z0-9_.-]+))");
  static const std::regex topic(R"((?:publish|subscribe) to '([^']*)')");
  for (const auto& r : array_at(graph, "refusals")) {
    if (str(r, "reason") != "acl_denied") continue;
    const std::string detail = str(r, "last_detail");
    std::smatch m;
    graph_analysis::attempt at{str(r, "agent"), "", "", num(r, "count"), detail};
    if (std::regex_search(detail, m, recipient)) at.target_kind = "agent", at.target = m[1];
    else if (std::regex_search(detail, m, role)) at.target_kind = "role", at.target = m[1];
    else if (std::regex_search(detail, m, topic)) at.target_kind = "topic", at.target = m[1];
    else continue;
    g.forbidden.push_back(std::move(at));
  }
  return g;
}

void print_graph_table(std::ostream& out, const nlohmann::json& graph, bool live) {
  const json& agents = array_at(graph, "agents");
  const json& edges = array_at(graph, "edges");
  out << "agents (" << agents.size() << ")\n";
  print_agents(out, agents, live);
  out << "\ntrust edges (" << edges.size() << ")\n";
  print_edges(out, edges);
  graph_analysis g = analyse_graph(graph);
  out << "\nallowed by the policy but unused (" << g.unused.size() << " role pairs)\n";
  if (g.unused.empty()) {
    out << "none\n";
  } else {
    text_table t({"FROM-ROLE", "TO-ROLE", "ALLOWED-VIA"});
    for (const auto& u : g.unused) t.add({u.from_role, u.to_role, via_text(u.via)});
    t.print(out);
  }
  const json& refusals = array_at(graph, "refusals");
  out << "\nrefusals (" << refusals.size() << ")\n";
  print_violations(out, refusals);
}

std::string graph_dot(const nlohmann::json& graph, bool live) {
  std::ostringstream d;
  d << "digraph agentbus_trust {\n"
       "  graph [rankdir=LR, compound=true, fontname=\"Helvetica\", nodesep=0.5, ranksep=1.1, "
       "label=<<B>agentbus trust graph</B>>, labelloc=t];\n"
       "  node [fontname=\"Helvetica\", fontsize=11, shape=box];\n"
       "  edge [fontname=\"Helvetica\", fontsize=9];\n";

  std::map<std::string, std::vector<const json*>> by_role;
  std::map<std::string, std::string> role_of;
  for (const auto& a : array_at(graph, "agents")) {
    by_role[str(a, "role")].push_back(&a);
    role_of[str(a, "name")] = str(a, "role");
  }

  // 1. One cluster per role; a node per agent.
  for (const auto& [role, members] : by_role) {
    role_colours rc = colours_for(role);
    d << "  subgraph " << quoted("cluster_" + role) << " {\n"
      << "    label=<<B>" << html(role) << "</B>>; style=\"rounded\"; color=" << quoted(rc.line)
      << "; fontcolor=" << quoted(rc.line) << ";\n";
    for (const json* ap : members) {
      const json& a = *ap;
      const bool revoked = flag(a, "revoked");
      const bool software = str(a, "protection") == "software";
      std::string name = html(str(a, "name"));
      std::string label = revoked ? "<S><B>" + name + "</B></S>" : "<B>" + name + "</B>";
      label += "<BR/><FONT POINT-SIZE=\"9\">" + html(str(a, "suite")) + "</FONT>";
      if (software) label += "<BR/><FONT COLOR=\"red\"><B>software</B></FONT>";
      else label += "<BR/><FONT POINT-SIZE=\"9\">tpm " + html(tpm_column(a) == "-" ? "" : tpm_column(a)) + "</FONT>";
      if (!software && attested(a))
        label += "<BR/><FONT POINT-SIZE=\"9\" COLOR=\"darkgreen\"><B>attested</B> (" + html(str(a["attestation"], "ek_ca")) +
                 ")</FONT>";
      if (revoked) label += "<BR/><FONT COLOR=\"gray30\"><B>REVOKED</B></FONT>";
      else if (live) label += flag(a, "online") ? "<BR/><FONT POINT-SIZE=\"9\" COLOR=\"darkgreen\">online</FONT>"
                                                : "<BR/><FONT POINT-SIZE=\"9\" COLOR=\"gray40\">offline</FONT>";
      // Dashed: software keys, and TPM keys whose protection is only declared.
      std::string style = software || !attested(a) ? "rounded,filled,dashed" : "rounded,filled";
      d << "    " << quoted(str(a, "name")) << " [label=<" << label << ">, style=" << quoted(style)
        << ", penwidth=2, fillcolor=" << quoted(revoked ? "#e2e2e2" : rc.fill)
        << ", color=" << quoted(revoked ? "gray55" : (software ? "red" : rc.line))
        << ", fontcolor=" << quoted(revoked ? "gray35" : "black") << "];\n";
    }
    d << "  }\n";
  }

  // 2. Trust edges: curve, MAC and traffic; grey when an end is revoked.
  for (const auto& e : array_at(graph, "edges")) {
    std::uint64_t ab = num(e, "messages_a_to_b"), ba = num(e, "messages_b_to_a");
    std::string label = str(e, "curve") + (str(e, "mac").empty() ? "" : " " + str(e, "mac")) + "\n→ " +
                        std::to_string(ab) + "   ← " + std::to_string(ba);
    const bool revoked = flag(e, "revoked");
    if (revoked) label += "\nREVOKED";
    double width = 1.0 + std::min(3.0, std::log10(1.0 + static_cast<double>(ab + ba)) / 1.5);
    d << "  " << quoted(str(e, "a")) << " -> " << quoted(str(e, "b")) << " [dir=both, label=" << quoted(label)
      << ", penwidth=" << (revoked ? 1.0 : width) << ", color=" << quoted(revoked ? "gray60" : "#333333")
      << ", fontcolor=" << quoted(revoked ? "gray50" : "#333333") << (revoked ? ", style=solid" : "") << "];\n";
  }

  graph_analysis g = analyse_graph(graph);

  // 3. Allowed but unused role pairs, between the role clusters; a pair allowed both
  //    ways is one two-headed edge.
  std::set<std::pair<std::string, std::string>> drawn;
  std::set<std::pair<std::string, std::string>> unused_set;
  for (const auto& u : g.unused) unused_set.emplace(u.from_role, u.to_role);
  for (const auto& u : g.unused) {
    if (drawn.count({u.from_role, u.to_role}) != 0) continue;
    drawn.emplace(u.from_role, u.to_role);
    const bool both = u.from_role != u.to_role && unused_set.count({u.to_role, u.from_role}) != 0;
    if (both) drawn.emplace(u.to_role, u.from_role);
    const auto& from = by_role[u.from_role];
    const auto& to = by_role[u.to_role];
    auto first_live = [](const std::vector<const json*>& members, std::size_t skip) -> std::string {
      for (const json* a : members)
        if (!flag(*a, "revoked") && skip-- == 0) return str(*a, "name");
      return str(*members.front(), "name");
    };
    std::string tail = first_live(from, 0);
    std::string head = first_live(to, 0);
    std::string ends;
    if (u.from_role == u.to_role) {
      head = first_live(to, 1);  // analyse_graph keeps same-role pairs only with two live agents
    } else {
      ends = ", ltail=" + quoted("cluster_" + u.from_role) + ", lhead=" + quoted("cluster_" + u.to_role);
    }
    std::string label = via_text(u.via);
    if (label.size() > 40) label = label.substr(0, 37) + "...";
    d << "  " << quoted(tail) << " -> " << quoted(head) << " [style=dashed, color=\"gray70\", fontcolor=\"gray55\", "
      << "constraint=false, label=" << quoted("unused: " + label) << (both ? ", dir=both" : "") << ends << "];\n";
  }

  // 4. Forbidden attempts (acl_denied), red and dotted.
  std::set<std::string> topic_nodes;
  for (const auto& at : g.forbidden) {
    if (role_of.count(at.agent) == 0) continue;
    std::vector<std::string> targets;
    std::string ends;
    if (at.target_kind == "agent" && role_of.count(at.target) != 0) {
      targets.push_back(at.target);
    } else if (at.target_kind == "role" && !by_role[at.target].empty()) {
      targets.push_back(str(*by_role[at.target].front(), "name"));
      ends = ", lhead=" + quoted("cluster_" + at.target);
    } else {
      // A topic, or a role/agent with nobody enrolled: its own small node.
      std::string id = at.target_kind + ":" + at.target;
      if (topic_nodes.insert(id).second)
        d << "  " << quoted(id) << " [shape=note, style=dotted, color=red, fontcolor=red, label="
          << quoted(at.target_kind == "topic" ? "topic " + at.target : at.target_kind + " " + at.target) << "];\n";
      targets.push_back(id);
    }
    if (role_of[at.agent] == at.target && at.target_kind == "role") ends.clear();
    for (const auto& t : targets)
      d << "  " << quoted(at.agent) << " -> " << quoted(t) << " [style=dotted, color=red, fontcolor=red, penwidth=1.5, "
        << "constraint=false, label=" << quoted("refused ×" + std::to_string(at.count)) << ends << "];\n";
  }

  // 5. Legend.
  d << "  { rank=sink; legend [shape=plaintext, fontsize=9, label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"4\">"
       "<TR><TD COLSPAN=\"2\"><B>legend</B></TD></TR>"
       "<TR><TD>solid box</TD><TD>TPM-held key</TD></TR>"
       "<TR><TD><FONT COLOR=\"red\">dashed box, software</FONT></TD><TD>software key</TD></TR>"
       "<TR><TD><FONT COLOR=\"gray35\"><S>grey, struck</S></FONT></TD><TD>revoked agent</TD></TR>"
       "<TR><TD>solid line</TD><TD>trust edge (session): curve, MAC, messages</TD></TR>"
       "<TR><TD><FONT COLOR=\"gray55\">dashed grey</FONT></TD><TD>allowed by the policy, unused</TD></TR>"
       "<TR><TD><FONT COLOR=\"red\">dotted red</FONT></TD><TD>refused attempt (acl_denied)</TD></TR>"
       "</TABLE>>]; }\n";
  d << "}\n";
  return d.str();
}

void render_png(const std::string& dot, const std::filesystem::path& file) {
  std::string quoted_file = "'";
  for (char c : file.string()) quoted_file += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted_file += "'";
  std::string cmd = "dot -Tpng -o " + quoted_file;
  FILE* p = ::popen(cmd.c_str(), "w");
  if (p == nullptr) throw tool_error(kFailure, "cannot run Graphviz 'dot'");
  std::fwrite(dot.data(), 1, dot.size(), p);
  int st = ::pclose(p);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
    throw tool_error(kFailure, "Graphviz 'dot' is not installed (apt install graphviz); use --format dot to get the DOT text");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    throw tool_error(kFailure, "Graphviz 'dot -Tpng' failed writing " + file.string());
}

}  // namespace agentbus::trust_tool
