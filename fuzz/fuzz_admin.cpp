// fuzz_admin: a request frame on the broker's admin endpoint (schemas/admin.md): the
// handler over a read-only state (every read-only query, every refusal of a change)
// and the operator-signature verifier. Every answer is a JSON reply; nothing throws.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "admin_protocol.hpp"

namespace {
using namespace agentbus;
using namespace agentbus::broker;

struct read_only_state final : admin_state {
  std::vector<agent_record> agents() override {
    agent_record a;
    a.name = "monitor-1";
    a.role = "MONITOR";
    a.suite = "ecdsa-p256-sha256";
    a.fingerprint = std::string(64, 'a');
    a.protection = "tpm";
    return {a};
  }
  std::optional<agent_record> find_agent(std::string_view name) override {
    if (name == "monitor-1") return agents()[0];
    return std::nullopt;
  }
  std::vector<edge_record> edges() override { return {}; }
  std::vector<refusal_record> refusals() override { return {}; }
  std::vector<token_record> tokens() override { return {}; }
  std::vector<key_revocation> revoked_keys() override { return {}; }
  nlohmann::json broker_identity() override {
    return {{"name", "fuzz"}, {"fingerprint", std::string(64, 'b')}, {"suite", "ecdsa-p256-sha256"}};
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto pol = std::make_shared<const policy>(policy::builtin_default());
  static read_only_state state;
  static admin_handler handler(pol, state);
  const std::string_view request(reinterpret_cast<const char*>(data), size);
  const std::string reply = handler.handle(request, 1'700'000'000'000);
  if (!nlohmann::json::accept(reply)) std::abort();
  return 0;
}
