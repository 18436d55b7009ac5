// enrolment_bundle.cpp — reading the file an operator hands an agent's owner
// (`agentbus-trust token create --out FILE`; docs/operations.md "Enrolling an agent").
#include <toml++/toml.h>

#include <stdexcept>
#include <string>

#include "agentbus/agent.hpp"
#include "agentbus/fingerprint.hpp"

namespace agentbus {

std::string load_enrolment_bundle(const std::filesystem::path& file, agent_options& options) {
  toml::table doc;
  try {
    doc = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(file.string() + ": " + std::string(e.description()));
  }
  auto text = [&](const char* key, bool required) -> std::string {
    const toml::node* n = doc.get(key);
    if (n == nullptr) {
      if (required) throw std::runtime_error(file.string() + ": " + key + ": missing");
      return {};
    }
    if (!n->is_string()) throw std::runtime_error(file.string() + ": " + key + ": must be a string");
    return n->as_string()->get();
  };
  auto hex32 = [&](const char* key, bool required = true) {
    std::string v = text(key, required);
    if (v.empty() && !required) return v;
    bool ok = false;
    if (v.size() != 64 || from_hex(v, &ok).size() != 32 || !ok)
      throw std::runtime_error(file.string() + ": " + key + ": must be 64 hex digits");
    return v;
  };
  const std::string name = text("name", true);
  const std::string role = text("role", true);
  const auto fingerprint = parse_fingerprint(text("broker_fingerprint", true));
  if (!fingerprint)
    throw std::runtime_error(file.string() + ": broker_fingerprint: must be 64 hex digits (\"sha256:\" in front or not)");
  const std::string token = hex32("token");
  const std::string endpoint = text("broker_endpoint", false);
  const std::string transport_key = hex32("broker_transport_key", false);
  options.name = name;
  options.broker_fingerprint = *fingerprint;
  options.enrolment_token = token;
  if (options.broker_endpoint.empty()) options.broker_endpoint = endpoint;
  if (options.broker_transport_key.empty()) options.broker_transport_key = transport_key;
  return role;
}

}  // namespace agentbus
