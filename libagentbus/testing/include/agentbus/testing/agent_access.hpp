// agent_access.hpp — ways to make an agent misbehave, for tests and the misbehaving
// example (agentbus_testing: the product library and the broker never link it).
//
// They send envelopes a correct agent never produces, alter what arrives, or hold the
// agent's outbound queue, to prove that the broker and the receivers refuse what
// they must and lose nothing they accepted. Each function is thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"

namespace agentbus::testing {

// seal_tweaks alter one envelope while it is sealed.
struct seal_tweaks {
  std::function<void(envelope_header&)> edit_header;           // before signing
  // digest_hash: the digest (signed, MACed) under this hash instead of the role's, as
  // a sender that followed a declared suite would compute it.
  std::optional<hash_algorithm> digest_hash;
  std::function<void(bytes& signed_part)> edit_after_signing;  // tamper after the signature
  std::function<void(envelope_auth&)> edit_auth;               // before the MACs
  bool omit_hop_mac = false;
  bool omit_e2e_macs = false;
  // Batch mode with wire batching: edits the whole wire batch that carries this
  // envelope, after its MAC (forces a wire batch even for a batch of one).
  std::function<void(std::vector<bytes>& frames)> edit_wire_batch;
};

class agent_access {
 public:
  // send_tweaked seals a data envelope with `tweaks` and queues it (direct: after a
  // session with `to`).
  static status send_tweaked(agent& a, recipient_kind kind, const std::string& to, std::string_view content_type,
                             byte_view payload, const seal_tweaks& tweaks);
  // record_sent makes the agent keep a copy of the last envelope (or wire batch) it
  // sends; resend_last sends those exact frames again (a replay).
  static void record_sent(agent& a);
  static status resend_last(agent& a);
  // send_frames sends arbitrary frames on the agent's broker connection.
  static status send_frames(agent& a, std::vector<bytes> frames);
  // edit_received alters every message the agent receives from the broker (its frames
  // as received, the kind first) before any check. An empty function stops it.
  static void edit_received(agent& a, std::function<void(std::vector<bytes>& frames)> edit);
  // send_session_offer seals and queues a session offer to `to` on `curve` (a fresh
  // ephemeral key and nonce; the agent keeps nothing of it), however many it already
  // has outstanding: what a misbehaving peer floods a recipient with.
  static status send_session_offer(agent& a, const std::string& to, ec_curve curve);
  // send_control_op sends a hop-authenticated control message with operation `op`
  // (any string) and no arguments: an enrolled agent inventing operations.
  static status send_control_op(agent& a, const std::string& op);
  // hold_outbound stops (true) or resumes (false) the agent's sending: what it queues
  // stays queued, so the queue can be filled.
  static void hold_outbound(agent& a, bool hold);
  // outbound_empty: nothing waits in the agent's outbound queue (after a release the
  // writer drains it asynchronously).
  static bool outbound_empty(agent& a);
};

}  // namespace agentbus::testing
