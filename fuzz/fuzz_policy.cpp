// fuzz_policy: the policy loader (schemas/policy.md) on arbitrary text: it accepts a
// policy or throws policy_error, nothing else (no crash, no other exception).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agentbus/policy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)agentbus::policy::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const agentbus::policy_error&) {
  }
  return 0;
}
