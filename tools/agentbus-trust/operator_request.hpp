// operator_request.hpp — what revoke, approve and reset-counters share: the operator
// key options, signing the request (admin_protocol's make_signed_request) and
// sending it to the live broker.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"

namespace agentbus::trust_tool {

struct operator_options {
  std::string key_dir;        // the operator's identity (agentbus-key create --dir)
  std::string operator_name;  // optional: must match the policy's name for the key
  std::string tcti;           // TPM holding a TPM operator key (else $AGENTBUS_TCTI)
  std::string broker;         // the broker the request is for (else the one the endpoint names)
  bool json = false;
};

// check_fingerprint reads a fingerprint option as every tool prints one (64 hex digits,
// "sha256:" in front or not, either case; agentbus/fingerprint.hpp) and leaves it as
// the 64 lower-case digits the broker stores. fingerprint_option is it as a CLI11
// transform: ->transform(fingerprint_option()).
std::string check_fingerprint(std::string& f);
CLI::Validator fingerprint_option();

// add_operator_options adds --operator-key, --operator, --tcti, --broker-fingerprint
// and --json to `cmd`.
void add_operator_options(CLI::App* cmd, operator_options& o);

// send_operator_request signs `inner` ({"op":..., args}) with the operator key,
// addressed to --broker-fingerprint or else to the broker the endpoint says it is
// (a signed request is carried out by that broker only, once), and sends it to the
// broker's admin endpoint; returns the result. --db is refused
// (kUsage): a change goes to the running broker. A broker refusal throws
// tool_error(kRefused), an unknown agent tool_error(kNotFound).
nlohmann::json send_operator_request(const global_options& global, const operator_options& o, const nlohmann::json& inner);

}  // namespace agentbus::trust_tool
