// source.hpp — where agentbus-trust's data comes from: the live broker's admin
// endpoint, or a registry database read offline. Both answer the same requests
// with the same JSON (the offline source runs the broker's own admin_handler over
// a read-only registry), so every command renders one shape.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "agentbus/status.hpp"
#include "commands.hpp"

namespace agentbus::trust_tool {


// source answers read-only admin requests ({"op":"agents"}, ...). request()
// returns the reply's `result`, or the error the broker answered as a status
// (unknown_agent, ...). Failures to reach the data at all throw tool_error
// (kBrokerUnreachable, kDatabaseError). Not thread-safe.
class source {
 public:
  virtual ~source() = default;
  virtual result<nlohmann::json> request(const nlohmann::json& req) = 0;
  // live says whether the data is the running broker's (so "online" means something).
  virtual bool live() const noexcept = 0;
  // describe names the endpoint or the file, for messages.
  virtual std::string describe() const = 0;
};

// broker_config_file finds the broker's configuration the way the broker is run:
// --config, else $AGENTBUS_CONFIG, else the installed one (AGENTBUS_INSTALLED_CONFIG,
// /etc/agentbus/broker.toml) if it exists, else the checkout's config/broker.toml when
// the tool runs from a build tree. Empty when there is none.
std::string broker_config_file(const global_options& global);

// open_source picks offline (--db) or online (admin_endpoint()). Offline: a missing
// or unreadable file throws tool_error(kDatabaseError); the policy comes from
// --policy, else the broker config's policy, else the built-in copy.
std::unique_ptr<source> open_source(const global_options& global);

// admin_endpoint resolves --admin, then $AGENTBUS_ADMIN, then the admin_endpoint of
// the broker config (broker_config_file). tool_error(kUsage) when none says one, or
// when the config cannot be read (naming the file and the field).
std::string admin_endpoint(const global_options& global);

// broker_request sends one frame to the admin endpoint and decodes the JSON reply.
// No answer within timeout_ms (or an ipc socket file that does not exist) throws
// tool_error(kBrokerUnreachable, "broker is not answering at ENDPOINT ..."); an
// endpoint ZeroMQ rejects throws tool_error(kUsage); a reply that is not the JSON
// admin protocol throws tool_error(kFailure).
result<nlohmann::json> broker_request(const std::string& endpoint, const std::string& frame, int timeout_ms);

// decode_reply turns {"ok":true,"result":R} into R and {"ok":false,"error":{...}}
// into a status whose code is the named status_code (internal if unknown).
// nullopt when `reply` is not of either shape.
std::optional<result<nlohmann::json>> decode_reply(const nlohmann::json& reply);

}  // namespace agentbus::trust_tool
