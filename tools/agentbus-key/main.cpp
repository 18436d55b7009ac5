// agentbus-key — create, inspect and use agent identity keys (TPM or software).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>

#include "agentbus/identity.hpp"
#include "agentbus/tpm.hpp"
#include "commands.hpp"

namespace agentbus::key_tool {

policy load_policy(const global_options& global) {
  return global.policy_file.empty() ? policy::builtin_default() : policy::load_file(global.policy_file);
}

std::string tcti_from(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("AGENTBUS_TCTI");
  return env != nullptr ? env : "";
}

}  // namespace agentbus::key_tool

int main(int argc, char** argv) {
  using namespace agentbus::key_tool;
  // Logs go to stderr so that stdout carries only the command's output (PEM, tables).
  spdlog::set_default_logger(spdlog::stderr_color_mt("agentbus-key"));

  CLI::App app{"agentbus-key: create and use agentbus identity keys held in a TPM (or, flagged, in software)"};
  app.require_subcommand(1);
  global_options global;
  app.add_option("--policy", global.policy_file, "Policy file (default: the built-in copy of config/policy.toml)");
  app.add_option("--log-level", global.log_level, "trace, debug, info, warn, error")->check(
      CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.footer("TPM selection: --tcti, else $AGENTBUS_TCTI; agentbus never guesses a TPM address.\n"
             "Exit codes: 0 ok, 1 failure, 2 usage, 3 policy, 4 TPM unavailable, 5 unsupported algorithm,\n"
             "6 key directory, 7 signing failed.");
  int result = kOk;
  add_create_command(app, global, &result);
  add_pubkey_command(app, global, &result);
  add_sign_command(app, global, &result);
  add_info_command(app, global, &result);
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(global.log_level)); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  } catch (const agentbus::policy_error& e) {
    std::cerr << "agentbus-key: policy error: " << e.what() << "\n";
    return kPolicyError;
  } catch (const agentbus::tpm::tpm_error& e) {
    std::cerr << "agentbus-key: TPM error: " << e.what() << "\n";
    return kTpmUnavailable;
  } catch (const agentbus::identity_error& e) {
    std::cerr << "agentbus-key: key directory error: " << e.what() << "\n";
    return kKeyDirError;
  } catch (const std::exception& e) {
    std::cerr << "agentbus-key: " << e.what() << "\n";
    return kFailure;
  }
  return result;
}
