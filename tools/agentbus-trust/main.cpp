// agentbus-trust — inspect the broker's trust graph (who is enrolled with which key
// and algorithms, which agent↔agent sessions exist, what the policy allows but
// nobody uses, what was refused) and make operator-signed changes.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"
#include "commands.hpp"

namespace agentbus::trust_tool {

int exit_code_for(const status& st, bool state_changing) {
  switch (st.code()) {
    case status_code::unknown_agent: return kNotFound;
    case status_code::internal:
    case status_code::io_error:
    case status_code::tpm_unavailable: return kFailure;
    default: return state_changing ? kRefused : kFailure;
  }
}

}  // namespace agentbus::trust_tool

int main(int argc, char** argv) {
  using namespace agentbus::trust_tool;
  // Logs go to stderr so that stdout carries only tables, DOT or JSON.
  spdlog::set_default_logger(spdlog::stderr_color_mt("agentbus-trust"));
  spdlog::set_level(spdlog::level::warn);
  // A `dot` that exits early must not kill us with SIGPIPE: its status is reported.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"agentbus-trust: inspect the agentbus trust graph (agents, keys, sessions, refusals) and make "
               "operator-signed changes"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  global_options global;
  std::string log_level = "warn";
  auto* admin = app.add_option("--admin", global.admin,
                               "Broker admin endpoint (default: $AGENTBUS_ADMIN, else the admin_endpoint of the broker's "
                               "configuration)");
  app.add_option("--config", global.config,
                 "The broker's configuration, where the admin endpoint and the policy are found (default: "
                 "$AGENTBUS_CONFIG, else " AGENTBUS_INSTALLED_CONFIG " if present, else the checkout's config/broker.toml "
                 "when run from a build tree)");
  auto* db = app.add_option("--db", global.db, "Read this registry database offline (read-only) instead of asking the broker");
  admin->excludes(db);
  app.add_option("--policy", global.policy_file,
                 "With --db: the policy for the allowed edges (default: the broker configuration's, else built-in)");
  app.add_option("--timeout-ms", global.timeout_ms, "How long to wait for the broker (default 2000)")
      ->check(CLI::Range(1, 600000));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.footer(std::string("Online (default) the tool asks the running broker; --db FILE reads its registry offline.\n") +
             kExitCodesFooter);
  int result = kOk;
  add_agents_command(app, global, &result);
  add_show_command(app, global, &result);
  add_edges_command(app, global, &result);
  add_violations_command(app, global, &result);
  add_graph_command(app, global, &result);
  add_revoke_command(app, global, &result);
  add_approve_command(app, global, &result);
  add_reset_command(app, global, &result);
  add_profiles_command(app, global, &result);
  add_nkey_command(app, global, &result);
  add_federation_command(app, global, &result);
  add_enrolment_commands(app, global, &result);
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(log_level)); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  } catch (const tool_error& e) {
    std::cerr << "agentbus-trust: " << e.what() << "\n";
    return e.code();
  } catch (const agentbus::tpm::tpm_error& e) {
    std::cerr << "agentbus-trust: TPM error: " << e.what() << "\n";
    return kFailure;
  } catch (const agentbus::identity_error& e) {
    std::cerr << "agentbus-trust: operator key: " << e.what() << "\n";
    return kFailure;
  } catch (const agentbus::policy_error& e) {
    std::cerr << "agentbus-trust: policy error: " << e.what() << "\n";
    return kFailure;
  } catch (const std::exception& e) {
    std::cerr << "agentbus-trust: " << e.what() << "\n";
    return kFailure;
  }
  return result;
}
