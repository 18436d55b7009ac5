// agentbus-trust profiles — the policy's operation profiles (realtime, batch,
// high_security, ...) and what each role got from its profile and its own settings.
#include <iostream>

#include "commands.hpp"
#include "render.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {
namespace {

std::string text_of(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ",") + text_of(e);
    return out;
  }
  return v.dump();
}

std::string window_of(const nlohmann::json& o) {
  std::string out;
  if (!o["batch_max_leaves"].is_null()) out = text_of(o["batch_max_leaves"]) + " leaves";
  if (!o["batch_max_delay_ms"].is_null()) out += (out.empty() ? "" : " / ") + text_of(o["batch_max_delay_ms"]) + " ms";
  return out;
}

std::string rekey_of(const nlohmann::json& rekey) {
  if (rekey["after_messages"].is_null() && rekey["after_seconds"].is_null()) return "";
  return text_of(rekey["after_messages"]) + " msgs / " + text_of(rekey["after_seconds"]) + " s";
}

void print_profiles(std::ostream& out, const nlohmann::json& r) {
  text_table profiles({"PROFILE", "SUITE", "ASSURANCE", "BATCH WINDOW", "REKEY", "ROLES"});
  for (const auto& p : r["profiles"])
    profiles.add({text_of(p["name"]), text_of(p["suite"]), text_of(p["assurance"]), window_of(p), rekey_of(p["rekey"]),
                  text_of(p["roles"])});
  profiles.print(out);
  for (const auto& p : r["profiles"])
    if (!text_of(p["description"]).empty()) out << "  " << text_of(p["name"]) << ": " << text_of(p["description"]) << "\n";
  out << "\n";
  text_table roles({"ROLE", "PROFILE", "SUITE", "ASSURANCE", "BATCH WINDOW", "REKEY"});
  for (const auto& role : r["roles"])
    roles.add({text_of(role["role"]), text_of(role["profile"]), text_of(role["suite"]), text_of(role["assurance"]),
               window_of(role), rekey_of(role["rekey"])});
  roles.print(out);
}

}  // namespace

void add_profiles_command(CLI::App& app, const global_options& global, int* result) {
  auto as_json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("profiles",
                                     "The policy's operation profiles (suite, assurance, batch window, rekey limits) and "
                                     "what each role runs with (REKEY empty: the broker's and the agents' own limits)");
  cmd->add_flag("--json", *as_json, "Print the admin result as JSON");
  cmd->footer(kExitCodesFooter);
  cmd->callback([&global, as_json, result] {
    auto src = open_source(global);
    auto r = src->request({{"op", "profiles"}});
    if (!r) throw tool_error(exit_code_for(r.error(), false), r.error().to_string());
    if (*as_json) std::cout << r->dump(2) << "\n";
    else print_profiles(std::cout, *r);
    *result = kOk;
  });
}

}  // namespace agentbus::trust_tool
