// admin_client.hpp — a client of the broker's admin endpoint (schemas/admin.md) for
// programs that drive a broker: the test harness, agentbus-bench, and what an
// operator's automation would write. agentbus-trust maps the same replies to its
// exit codes.
//
// One REQ socket per request (a REQ socket that timed out cannot be reused), so an
// admin_client is cheap to keep and safe to use from one thread at a time.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "agentbus/identity.hpp"
#include "agentbus/status.hpp"

namespace agentbus::broker {

// admin_unreachable: no answer within the timeout, or an answer that is not the JSON
// admin protocol. A refusal by the broker is not an exception: it is the status of
// the result.
class admin_unreachable : public std::runtime_error {
 public:
  using runtime_error::runtime_error;
};

// decode_admin_reply turns {"ok":true,"result":R} into R and {"ok":false,"error":{...}}
// into a status whose code is the named status_code (internal if unknown); nullopt
// when `reply` is of neither shape.
std::optional<result<nlohmann::json>> decode_admin_reply(const nlohmann::json& reply);

class admin_client {
 public:
  admin_client(std::string endpoint, int timeout_ms = 2000);

  // request sends one JSON request and returns the reply's result or the broker's
  // refusal. Throws admin_unreachable.
  result<nlohmann::json> request(const nlohmann::json& req) const;
  // signed_request wraps `inner` with make_signed_request (operator key and name),
  // addressed to the broker this endpoint names (broker_fingerprint).
  result<nlohmann::json> signed_request(const nlohmann::json& inner, identity_key& operator_key,
                                        const std::string& operator_name) const;
  // broker_fingerprint is the broker identity's fingerprint (the `broker` request).
  result<std::string> broker_fingerprint() const;
  // broker_transport_key: the broker's CurveZMQ public key (hex), "" when it listens
  // on no tcp:// endpoint with CurveZMQ.
  result<std::string> broker_transport_key() const;
  // issue_token asks for a one-time enrolment token for `name` in `role` (bound to
  // the key `fingerprint` and to the TPM `ek_fingerprint` unless empty) and returns it
  // (64 hex digits).
  result<std::string> issue_token(identity_key& operator_key, const std::string& operator_name, const std::string& name,
                                  const std::string& role, const std::string& fingerprint = {},
                                  std::int64_t ttl_seconds = 3600, const std::string& ek_fingerprint = {}) const;

  const std::string& endpoint() const noexcept { return endpoint_; }

 private:
  std::string endpoint_;
  int timeout_ms_;
};

}  // namespace agentbus::broker
