// verifier.hpp — the enforcement order, written once for both ends (internal;
// schemas/protocol.md §8 is normative).
//
// The broker at publish and every receiving library at receive check an envelope in
// this order, cheapest first, and stop at the first failure:
//    1  limits and decoding (signed part, then auth part)
//    2  sender: the broker's connection agent / the receiver's pinned peer  [hook]
//    3  declared suite = the sender role's suite (no cryptography yet)
//    4  digest under that suite's envelope hash; hop MAC (or the wire batch's MAC)
//    5  key id = the sender's pinned key; assurance level; batch size
//    6  ACL                                                                [hook]
//    7  replay window (checked, not yet committed); timestamp skew
//    8  signature (tpm-batch: the Merkle root, once per batch)
//    9  end-to-end MAC (receiver only)                                     [hook]
//   10  commit the replay window
// Steps 1-4 are `open` (one envelope) and `open_batch` (a wire batch, all or
// nothing); steps 5-10 are `check`. The hooks are where the two ends differ: who
// the sender is, who may reach whom, and the end-to-end MAC that only a receiver
// holds a key for. Nothing here does I/O or touches a TPM.
//
// Not thread-safe: a verifier and its root cache belong to one verifying thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/policy.hpp"
#include "session/checks.hpp"
#include "session/replay_window.hpp"
#include "session/session_keys.hpp"

namespace agentbus::session {

// sender_facts: what the verifying end knows of the envelope's claimed sender. The
// views point into the caller's records, which outlive the check.
struct sender_facts {
  std::string_view name;
  std::string_view role;
  const suite* role_suite = nullptr;
  const crypto::public_key* key = nullptr;
  byte_view key_id;
  protection key_protection = protection::tpm;
};

// opened_envelope: decoded, its digest under the sender role's envelope hash.
struct opened_envelope {
  envelope_header header;
  envelope_auth auth;
  bytes digest;
};

// verdict: accept, refuse (with a reason), or wait: the envelope cannot be decided
// yet (the receiver is fetching the sender's key, or installing the session key its
// end-to-end MAC needs) and the caller holds it and checks it again later. A
// receiver's end-to-end hook may also say drop: the envelope was never addressed to
// it (see client/receiver.cpp, "late join"), counted but not a refusal.
enum class verdict { accept, refuse, wait, drop };

// enforcement_hooks: what differs between the broker and a receiver.
class enforcement_hooks {
 public:
  virtual ~enforcement_hooks() = default;
  // Step 2. Fills `out` (accept), or refuses (the broker: spoofed_sender; a receiver:
  // a sender whose lookup failed), or waits (a receiver asking for the key).
  virtual verdict sender(const envelope_header& h, sender_facts& out, status& why) = 0;
  // Step 6.
  virtual status acl(const envelope_header& h, const sender_facts& s) = 0;
  // Step 9. The broker has no end-to-end key: it accepts.
  virtual verdict end_to_end(const opened_envelope& e, const sender_facts& s, status& why) {
    (void)e;
    (void)s;
    (void)why;
    return verdict::accept;
  }
};

// hop_receiver: the receive keys of the hop an envelope arrived on. The broker hands
// its connection's session (state_hop); the agent its broker link's, which takes the
// link's lock for the one MAC check.
class hop_receiver {
 public:
  virtual ~hop_receiver() = default;
  virtual status verify_envelope(byte_view digest, const envelope_auth& auth) const = 0;
  virtual status verify_batch(byte_view session_id, std::span<const wire_batch_item> items, byte_view tag) const = 0;
};

class state_hop final : public hop_receiver {
 public:
  explicit state_hop(const session_state& s) : s_(s) {}
  status verify_envelope(byte_view digest, const envelope_auth& auth) const override {
    return verify_hop_mac(s_, digest, auth);
  }
  status verify_batch(byte_view session_id, std::span<const wire_batch_item> items, byte_view tag) const override {
    return verify_wire_batch_mac(s_, session_id, items, tag);
  }

 private:
  const session_state& s_;
};

struct verifier_options {
  std::uint64_t max_clock_skew_ms = 30'000;
  // hop_only skips steps 3 and 5-10 (nothing commits the replay window): the broker's
  // --insecure-permissive-testing mode,
  // which exists so that tests can prove receivers refuse what a broker wrongly
  // forwards. Never in production.
  bool hop_only = false;
};

class verifier {
 public:
  verifier(const policy& pol, verifier_options opts, root_cache* roots) : pol_(pol), opts_(opts), roots_(roots) {}

  // open runs steps 1-4 for an envelope that travels alone: its own hop MAC under
  // `hop` (the receive keys of the hop it arrived on).
  verdict open(byte_view signed_part, byte_view auth_part, const hop_receiver& hop, enforcement_hooks& hooks,
               opened_envelope& out, sender_facts& sender, status& why) const;

  // open_batch runs steps 1-4 for a wire batch (schemas/envelope.md §7.3), given its
  // frames after the kind: [session id, MAC, (signed part, auth part) × n]. The shape
  // (1..1024 pairs, each within max_pair_bytes, all within 4 MiB), every member's
  // decoding, one sender for all, each declaring that sender's suite and carrying no
  // hop MAC of its own, and then the one MAC decide for the whole batch: on refuse or
  // wait, `out` is empty. A sender never builds a batch that fails these.
  verdict open_batch(std::span<const bytes> frames, std::size_t max_pair_bytes, const hop_receiver& hop,
                     enforcement_hooks& hooks, std::vector<opened_envelope>& out, sender_facts& sender,
                     status& why) const;

  // check runs steps 5-10 for an opened envelope from `sender`. `window` is that
  // sender's replay window: committed only when the verdict is accept.
  verdict check(const opened_envelope& e, const sender_facts& sender, replay_window& window, enforcement_hooks& hooks,
                status& why) const;

 private:
  verdict open_member(byte_view signed_part, byte_view auth_part, enforcement_hooks& hooks, opened_envelope& out,
                      sender_facts& sender, status& why) const;

  const policy& pol_;
  verifier_options opts_;
  root_cache* roots_;
};

// for_each_member visits every envelope pair of a refused wire batch (frames after
// the kind) with its decoded header, or nullopt when its signed part does not decode,
// so that the refusing end can tell the sender about each envelope by its id.
void for_each_member(std::span<const bytes> frames,
                     const std::function<void(const std::optional<envelope_header>&)>& visit);

}  // namespace agentbus::session
