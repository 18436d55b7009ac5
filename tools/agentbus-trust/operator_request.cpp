// operator_request.cpp — sign with the operator's identity and send to the broker.
#include "operator_request.hpp"

#include <cstdlib>

#include "admin_protocol.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/fingerprint.hpp"
#include "agentbus/tpm.hpp"
#include "source.hpp"

namespace agentbus::trust_tool {

std::string check_fingerprint(std::string& f) {
  auto fp = parse_fingerprint(f);
  if (!fp) return "must be 64 hex digits, \"sha256:\" in front or not (the full SHA-256 fingerprint)";
  f = *fp;
  return {};
}

CLI::Validator fingerprint_option() { return CLI::Validator(check_fingerprint, "FINGERPRINT", "fingerprint"); }

void add_operator_options(CLI::App* cmd, operator_options& o) {
  cmd->add_option("--operator-key", o.key_dir,
                  "Key directory of an operator identity listed under [operators] in the broker's policy")
      ->required();
  cmd->add_option("--operator", o.operator_name, "Operator name (checked against the policy's name for the key)");
  cmd->add_option("--tcti", o.tcti, "TPM holding the operator key (TPM identities; default $AGENTBUS_TCTI)");
  cmd->add_option("--broker-fingerprint", o.broker,
                  "The broker the signed request is for (64 hex digits; default: the one the admin endpoint names). "
                  "Any other broker refuses it")
      ->transform(fingerprint_option());
  cmd->add_flag("--json", o.json, "Print the admin result as JSON");
}

nlohmann::json send_operator_request(const global_options& global, const operator_options& o, const nlohmann::json& inner) {
  if (!global.db.empty())
    throw tool_error(kUsage, "a change goes to the running broker: use --admin ENDPOINT, not --db (the database is read-only)");
  identity_metadata meta = identity_key::read_metadata(o.key_dir);
  std::shared_ptr<tpm::tpm> t;
  if (meta.key_protection == protection::tpm) {
    std::string tcti = o.tcti;
    if (tcti.empty())
      if (const char* env = std::getenv("AGENTBUS_TCTI")) tcti = env;
    if (tcti.empty())
      throw tool_error(kUsage, "the operator key in " + o.key_dir + " lives in a TPM: pass --tcti (or set AGENTBUS_TCTI)");
    t = std::make_shared<tpm::tpm>(tcti);  // a TPM key never falls back to software
  }
  auto key = identity_key::open(o.key_dir, t);
  std::string broker = o.broker;
  if (broker.empty()) {
    auto who = broker_request(admin_endpoint(global), nlohmann::json{{"op", "broker"}}.dump(), global.timeout_ms);
    if (!who) throw tool_error(exit_code_for(who.error(), true), "the broker's identity: " + who.error().to_string());
    const auto named = who->is_object() && (*who)["fingerprint"].is_string()
                           ? parse_fingerprint((*who)["fingerprint"].get<std::string>())
                           : std::nullopt;
    if (!named) throw tool_error(kRefused, "the admin endpoint did not name its broker's fingerprint");
    broker = *named;
  }
  const std::string frame = broker::make_signed_request(inner, *key, o.operator_name, broker);
  auto r = broker_request(admin_endpoint(global), frame, global.timeout_ms);
  if (!r) throw tool_error(exit_code_for(r.error(), true), "refused by the broker: " + r.error().to_string());
  return std::move(*r);
}

}  // namespace agentbus::trust_tool
