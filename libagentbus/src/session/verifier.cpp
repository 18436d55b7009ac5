#include "session/verifier.hpp"

#include "session/handshake.hpp"

namespace agentbus::session {

verdict verifier::open_member(byte_view signed_part, byte_view auth_part, enforcement_hooks& hooks,
                              opened_envelope& out, sender_facts& sender, status& why) const {
  // 1. Limits and decoding: untrusted bytes, the signed part first (it names the sender).
  auto h = decode_signed_part(signed_part);
  if (!h) {
    why = h.error();
    return verdict::refuse;
  }
  auto auth = decode_auth_part(auth_part);
  if (!auth) {
    why = auth.error();
    out.header = std::move(h).value();  // the caller can still name the envelope by its id
    return verdict::refuse;
  }
  out.header = std::move(h).value();
  out.auth = std::move(auth).value();
  // 2. Who sent it.
  if (verdict v = hooks.sender(out.header, sender, why); v != verdict::accept) return v;
  // 3. The declared suite, before any cryptography: the digest below uses the sender
  // role's hash, never one the envelope chooses.
  if (!opts_.hop_only)
    if (status st = pol_.check_declared_suite(sender.role, out.header.suite); !st) {
      why = std::move(st);
      return verdict::refuse;
    }
  // 4. (first half) The digest every MAC and the signature cover.
  out.digest = envelope_digest(sender.role_suite->envelope_hash, signed_part);
  return verdict::accept;
}

verdict verifier::open(byte_view signed_part, byte_view auth_part, const hop_receiver& hop, enforcement_hooks& hooks,
                       opened_envelope& out, sender_facts& sender, status& why) const {
  if (verdict v = open_member(signed_part, auth_part, hooks, out, sender, why); v != verdict::accept) return v;
  // 4. Its hop MAC: the frames came over an authenticated hop.
  if (status st = hop.verify_envelope(out.digest, out.auth); !st) {
    why = std::move(st);
    return verdict::refuse;
  }
  return verdict::accept;
}

verdict verifier::open_batch(std::span<const bytes> frames, std::size_t max_pair_bytes, const hop_receiver& hop,
                             enforcement_hooks& hooks, std::vector<opened_envelope>& out, sender_facts& sender,
                             status& why) const {
  out.clear();
  auto refuse = [&](status st) {
    out.clear();
    why = std::move(st);
    return verdict::refuse;
  };
  if (frames.size() < 2) return refuse({status_code::malformed, "a wire batch starts with a session id and a MAC"});
  const std::span<const bytes> pairs = frames.subspan(2);
  if (status st = check_wire_batch_shape(pairs, max_pair_bytes); !st) return refuse(std::move(st));
  out.resize(pairs.size() / 2);
  for (std::size_t k = 0; k < out.size(); ++k) {
    sender_facts member_sender;
    status member_why;
    const verdict v = open_member(pairs[2 * k], pairs[2 * k + 1], hooks, out[k], member_sender, member_why);
    if (v == verdict::wait) {
      out.clear();
      return verdict::wait;
    }
    if (v == verdict::refuse) return refuse(std::move(member_why));
    // One sender for the whole batch (the one hop MAC vouches for one peer's batch).
    if (k == 0) sender = member_sender;
    else if (member_sender.name != sender.name)
      return refuse({status_code::malformed, "a wire batch mixes envelopes of several senders"});
    if (out[k].auth.hop_mac)
      return refuse({status_code::malformed, "an envelope in a wire batch carries a hop MAC of its own"});
  }
  std::vector<wire_batch_item> items;
  items.reserve(out.size());
  for (const auto& m : out) items.push_back({m.digest, &m.auth});
  if (status st = hop.verify_batch(frames[0], items, frames[1]); !st) return refuse(std::move(st));
  return verdict::accept;
}

verdict verifier::check(const opened_envelope& e, const sender_facts& sender, replay_window& window,
                        enforcement_hooks& hooks, status& why) const {
  auto refuse = [&](status st) {
    why = std::move(st);
    return verdict::refuse;
  };
  const envelope_header& h = e.header;
  if (!opts_.hop_only) {
    // 5. The sender's pinned key; the assurance level the role accepts; batch size.
    if (status st = check_key_and_assurance(pol_, sender.role, sender.key_protection, sender.key_id, e.auth);
        !st)
      return refuse(std::move(st));
    // 6. ACL.
    if (status st = hooks.acl(h, sender); !st) return refuse(std::move(st));
    // 7. Replay window (checked now, committed after the cryptography) and clock skew.
    if (status st = window.check(h.sequence); !st) return refuse(std::move(st));
    if (status st = check_timestamp(h.timestamp_ms, now_ms(), opts_.max_clock_skew_ms); !st) return refuse(std::move(st));
    // 8. Signature, the most expensive check.
    if (status st = verify_envelope_signature(*sender.key, *sender.role_suite, e.digest, e.auth, roots_); !st)
      return refuse(std::move(st));
    // 9. End-to-end MAC.
    if (verdict v = hooks.end_to_end(e, sender, why); v != verdict::accept) return v;
    // 10. Commit.
    window.commit(h.sequence);
  }
  return verdict::accept;
}

void for_each_member(std::span<const bytes> frames,
                     const std::function<void(const std::optional<envelope_header>&)>& visit) {
  for (std::size_t i = 2; i < frames.size(); i += 2) {
    auto h = decode_signed_part(frames[i]);
    visit(h ? std::optional<envelope_header>(std::move(h).value()) : std::nullopt);
  }
}

}  // namespace agentbus::session
