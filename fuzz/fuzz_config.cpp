// fuzz_config: the broker's configuration loader (docs/operations.md) on arbitrary
// text: a configuration or config_error, nothing else.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "broker_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)agentbus::broker::parse_broker_config(std::string_view(reinterpret_cast<const char*>(data), size),
                                                "/fuzz/broker.toml");
  } catch (const agentbus::broker::config_error&) {
  }
  return 0;
}
