// publish_intake.hpp — enforcement at publish: the envelopes (ENV) and wire batches
// (BATCH) enrolled agents send, checked in the protocol's one enforcement order
// (session/verifier.hpp) with the broker's hooks (the sender is the connection's
// agent; the ACL needs the recipient known and reachable), then handed to the router.
// Every refusal is a nack by message id (refuse_envelope); an envelope whose check
// throws is refused `internal` and the rest of its batch goes on.
//
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <exception>
#include <span>
#include <string_view>

#include "accounting.hpp"
#include "agentbus/policy.hpp"
#include "broker_config.hpp"
#include "connections.hpp"
#include "outbox.hpp"
#include "router.hpp"
#include "session/checks.hpp"
#include "session/verifier.hpp"

namespace agentbus::broker {

class publish_intake {
 public:
  // permissive: --insecure-permissive-testing (only the hop MAC is checked).
  publish_intake(const broker_config& cfg, const policy& pol, connections& agents, router& r, outbox& out,
                 accounting& acct, bool permissive);

  // on_envelope: frames after the kind: [signed part, auth part].
  void on_envelope(const bytes& route, std::span<const bytes> frames);
  // on_wire_batch: frames after the kind: [session id, MAC, (signed part, auth part) × n].
  void on_wire_batch(const bytes& route, std::span<const bytes> frames);
  // on_federated: an envelope another broker of the federation accepted from `from`
  // (an agent homed there, as the directory says) and forwarded. Checked again here in
  // the same order with the same hooks (sender, suite, key, ACL, replay, signature or
  // batch proof); only the hop MAC is not (brokers share no hop session). Accepted:
  // routed to this broker's agents only. Refused: nacked to `from`, which the outbox
  // relays to its broker.
  // `picked`: this broker's agents the sender's broker picked as queue group members.
  struct federated_envelope {
    known_agent* from = nullptr;
    byte_view signed_part, auth_part;
    std::vector<known_agent*> picked;
  };
  // on_federated takes the envelopes of one message from another broker: each checked
  // on its own, what they deliver staged and sent as wire batches, as on_wire_batch does.
  void on_federated(std::span<const federated_envelope> envelopes);


 private:
  class broker_hooks;
  // refuse_internal: checking one envelope of `a` threw (a bug): counted, logged (with
  // `where`), refused `internal`; the rest of its batch goes on.
  void refuse_internal(known_agent& a, const envelope_header& h, const std::exception& ex, std::string_view where);
  // accept_checked: an envelope from `a` that passed every check.
  void accept_checked(known_agent& a, const session::opened_envelope& e, byte_view signed_part, byte_view auth_part,
                      fanout* batch, std::span<known_agent* const> picked = {});
  // unknown_route: ENV or BATCH from a connection that is not enrolled: ERR, with the
  // id of each envelope whose signed part decodes (a restarted broker's answer).
  void unknown_route(const bytes& route, std::span<const bytes> envelope_frames);

  const broker_config& cfg_;
  const policy& pol_;
  connections& agents_;
  router& router_;
  outbox& out_;
  accounting& acct_;
  session::root_cache roots_{16384};  // verified batch roots: a batch costs one signature check
  session::verifier verifier_;
};

}  // namespace agentbus::broker
