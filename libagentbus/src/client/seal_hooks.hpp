// seal_hooks.hpp — tamper points in the sealer (internal).
//
// Tests (and the misbehaving example) must be able to send what a correct agent
// never sends, to prove that the broker and the receivers refuse it. The ways to ask
// for that live in agentbus_testing (agentbus/testing/agent_access.hpp), which the
// product never links; the library only keeps the points where a forger would act,
// as this interface, null in normal operation.
#pragma once

#include <optional>
#include <vector>

#include "agentbus/envelope.hpp"

namespace agentbus::client {

class seal_hooks {
 public:
  virtual ~seal_hooks() = default;
  // Before signing.
  virtual void edit_header(envelope_header&) const {}
  // The digest under another hash than the role's (a sender following a declared suite).
  virtual std::optional<hash_algorithm> digest_hash() const { return std::nullopt; }
  // After signing: tamper with the signed part.
  virtual void edit_after_signing(bytes&) const {}
  // Before the MACs.
  virtual void edit_auth(envelope_auth&) const {}
  virtual bool omit_hop_mac() const { return false; }
  virtual bool omit_e2e_macs() const { return false; }
  // Batch mode with wire batching: edits the whole wire batch carrying this envelope,
  // after its MAC (forces a wire batch even for a batch of one).
  virtual bool edits_wire_batch() const { return false; }
  virtual void edit_wire_batch(std::vector<bytes>&) const {}
};

}  // namespace agentbus::client
