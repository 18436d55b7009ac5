#include <agentbus/agent.hpp>
#include <agentbus/identity.hpp>
#include <agentbus/policy.hpp>
#include <iostream>
int main(int argc, char** argv) {  // publisher KEY_DIR BUNDLE TCTI
  agentbus::agent_options options;
  agentbus::load_enrolment_bundle(argv[2], options);
  auto key = agentbus::identity_key::open(argv[1], std::make_shared<agentbus::tpm::tpm>(argv[3]));
  agentbus::agent bus(options, std::move(key), std::make_shared<agentbus::policy>(agentbus::policy::builtin_default()));
  auto sent = bus.publish("metrics/cpu", "application/json", agentbus::as_bytes(R"({"cpu":0.42})"));
  std::cout << bus.name() << " published metrics/cpu: " << sent.to_string() << std::endl;
  return sent.ok() && argc == 4 ? 0 : 1;
}
