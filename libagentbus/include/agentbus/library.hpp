// library.hpp — which libagentbus is loaded, and how much it logs.
#pragma once

#include <string_view>

#include "agentbus/version.hpp"

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

// library_version is the version of the libagentbus actually loaded ("0.1.0"). Within
// one SONAME it may be newer than the headers' AGENTBUS_VERSION an agent was built with.
std::string_view library_version() noexcept;

// set_log_level sets how much the library logs: "trace", "debug", "info", "warn",
// "error", "critical" or "off". Returns false (and changes nothing) for any other name.
// The library logs through spdlog's default logger (the application chooses its sinks;
// the Python module sends it to stderr), refusals and failures at warn, never a secret.
bool set_log_level(std::string_view level);

}  // namespace agentbus

#pragma GCC visibility pop
