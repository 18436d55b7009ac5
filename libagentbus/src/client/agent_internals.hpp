// agent_internals.hpp — the way from a public `agent` to its parts (internal): the
// friend that agent.hpp names. agentbus_testing reaches the tamper hooks through it;
// nothing in the public headers can.
#pragma once

#include "agentbus/agent.hpp"
#include "client/agent_runtime.hpp"

namespace agentbus::client {

struct agent_internals {
  static agent_runtime& of(agent& a) noexcept { return *a.impl_; }
};

}  // namespace agentbus::client
