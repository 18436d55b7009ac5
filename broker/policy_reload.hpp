// policy_reload.hpp — what a reload (SIGHUP) changes: the differences between the
// running policy and configuration and the new ones, as log lines, and which
// configuration fields take effect at once. The broker applies them
// (broker::reload); these functions only compare, so they are unit-tested alone.
#pragma once

#include <string>
#include <vector>

#include "agentbus/policy.hpp"
#include "broker_config.hpp"

namespace agentbus::broker {

// describe_policy_change lists what differs, one line each: "role MONITOR:
// subscribe [metrics/>] -> [metrics/cpu]", "role OPTIMIZER added", "revoked agent
// +mon-2", "revoked key -ab12..", "operator +alice", "suite ... changed", "EK CAs
// changed". Empty when the policies say the same.
std::vector<std::string> describe_policy_change(const policy& before, const policy& after);

// config_change: which fields of the configuration differ, by whether a reload
// applies them. Live: logging.level, broker.policy, limits.max_agents,
// limits.max_subscriptions_per_agent, limits.drop_stuck_consumer_seconds. Every other
// field (endpoints, identity, transport, the other limits, sessions, metrics,
// logging.format) is read once at start: a changed value is reported and waits for
// a restart.
struct config_change {
  std::vector<std::string> applied;     // dotted field names
  std::vector<std::string> at_restart;
};

// apply_live_config copies the live fields of `next` into `running` and says what
// differed.
config_change apply_live_config(broker_config& running, const broker_config& next);

}  // namespace agentbus::broker
