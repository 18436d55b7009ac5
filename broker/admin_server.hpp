// admin_server.hpp — the broker's admin endpoint (schemas/admin.md): a REP socket
// answering the text requests `metrics` and `stats` and the JSON admin protocol
// (read-only queries, operator-signed revoke / approve / reset_counters).
//
// It runs on the event loop (one request per wake-up), over the registry and the
// live connection table. A revocation takes effect at once through `on_revoked`.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "accounting.hpp"
#include "admin_protocol.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/tpm.hpp"
#include "connections.hpp"
#include "metrics.hpp"
#include "registry.hpp"

namespace agentbus::broker {

class admin_server {
 public:
  // Binds `endpoint` (creating an ipc:// directory). on_revoked runs after an
  // operator's revocation is recorded; on_key_approved after an approved key change
  // (the old key's connection closes, peers are told). broker_identity: {"name","fingerprint","suite"}
  // (the `broker` request, and what token_create hands out with a token).
  admin_server(zmq::context_t& ctx, const std::string& endpoint, std::shared_ptr<const policy> pol, registry& reg,
               connections& agents, accounting& acct, std::shared_ptr<tpm::tpm> tpm,
               std::function<void(const std::string&)> on_revoked, std::function<void(const std::string&)> on_key_approved,
               nlohmann::json broker_identity);
  ~admin_server();

  void* handle() noexcept { return socket_.handle(); }
  // serve answers one waiting request, if any.
  void serve();

 private:
  class state;
  void refresh_tpm_metrics();
  zmq::socket_t socket_;
  connections& agents_;
  accounting& acct_;
  std::shared_ptr<tpm::tpm> tpm_;
  std::unique_ptr<state> state_;
  std::unique_ptr<admin_handler> handler_;
};

}  // namespace agentbus::broker
