// commands.hpp — the subcommands of agentbus-key (one file each).
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "agentbus/policy.hpp"

namespace agentbus::key_tool {

// Exit codes are stable: scripts test them. Never renumber.
enum exit_code : int {
  kOk = 0,
  kFailure = 1,          // anything not listed below
  kUsage = 2,            // bad command line
  kPolicyError = 3,      // policy file unreadable or invalid, unknown role
  kTpmUnavailable = 4,   // no TPM answers and the fallback was not allowed
  kUnsupported = 5,      // the TPM lacks the role's algorithm
  kKeyDirError = 6,      // key directory missing, incomplete or already used
  kSignFailed = 7,       // input unreadable or signing refused
};

struct global_options {
  std::string policy_file;  // empty: the built-in default (config/policy.toml)
  std::string log_level = "warn";
};

// Each add_* registers a subcommand whose callback sets `*result` to an exit code.
void add_create_command(CLI::App& app, const global_options& global, int* result);
void add_pubkey_command(CLI::App& app, const global_options& global, int* result);
void add_sign_command(CLI::App& app, const global_options& global, int* result);
void add_info_command(CLI::App& app, const global_options& global, int* result);

// load_policy returns the policy the options name.
policy load_policy(const global_options& global);
// tcti_from picks --tcti, else $AGENTBUS_TCTI, else empty (never a default address).
std::string tcti_from(const std::string& flag);

}  // namespace agentbus::key_tool
