// commands.hpp — the subcommands of agentbus-trust (one file each) and what they share.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "agentbus/status.hpp"

namespace agentbus::trust_tool {

// Exit codes are stable: scripts test them. Never renumber or reuse one.
enum exit_code : int {
  kOk = 0,
  kFailure = 1,            // anything not listed below
  kUsage = 2,              // bad command line
  kBrokerUnreachable = 3,  // no answer from the admin endpoint within the timeout
  kDatabaseError = 4,      // --db file missing, unreadable or not a registry
  kNotFound = 5,           // the named agent is not in the registry
  kRefused = 6,            // the broker refused the request (unsigned, not an operator, stale, ...)
};

inline constexpr const char* kExitCodesFooter =
    "Exit codes: 0 ok, 1 failure, 2 usage, 3 broker unreachable, 4 database missing or unreadable,\n"
    "5 agent not found, 6 refused by the broker (unsigned or unauthorised change, stale, replayed).";

// global_options say where the data comes from: the live broker (--admin, the
// default) or a registry database read offline (--db, with --policy for the edges
// the policy allows).
struct global_options {
  std::string admin;        // empty: $AGENTBUS_ADMIN, else the broker config's admin_endpoint
  std::string config;       // the broker's config: empty = $AGENTBUS_CONFIG, the installed one, the checkout's
  std::string db;           // non-empty: offline mode
  std::string policy_file;  // offline: empty = the broker config's policy, else the built-in copy
  int timeout_ms = 2000;
};

// tool_error carries an exit code and a message for main() to print; commands
// throw it for every failure the user must see.
class tool_error : public std::runtime_error {
 public:
  tool_error(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// exit_code_for maps a broker (or offline handler) error to an exit code:
// unknown_agent → kNotFound; a refusal of a state change → kRefused; else kFailure.
int exit_code_for(const status& st, bool state_changing);

// Each add_* registers a subcommand whose callback sets `*result` to an exit code
// (or throws tool_error).
void add_agents_command(CLI::App& app, const global_options& global, int* result);
void add_show_command(CLI::App& app, const global_options& global, int* result);
void add_edges_command(CLI::App& app, const global_options& global, int* result);
void add_violations_command(CLI::App& app, const global_options& global, int* result);
void add_graph_command(CLI::App& app, const global_options& global, int* result);
void add_revoke_command(CLI::App& app, const global_options& global, int* result);
void add_approve_command(CLI::App& app, const global_options& global, int* result);
void add_reset_command(CLI::App& app, const global_options& global, int* result);
void add_profiles_command(CLI::App& app, const global_options& global, int* result);
void add_nkey_command(CLI::App& app, const global_options& global, int* result);
void add_federation_command(CLI::App& app, const global_options& global, int* result);
// broker, token create/list, revoke-key, reject (cmd_enrolment.cpp).
void add_enrolment_commands(CLI::App& app, const global_options& global, int* result);

}  // namespace agentbus::trust_tool
