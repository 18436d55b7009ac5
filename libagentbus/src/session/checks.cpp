#include "session/checks.hpp"

#include "envelope/merkle.hpp"
#include "session/handshake.hpp"

namespace agentbus::session {

bytes hop_tag(const mac_key& key, byte_view digest, const envelope_auth& auth) {
  return key.tag(hop_mac_input(digest, auth));
}

bytes e2e_tag(const mac_key& key, byte_view digest, const envelope_auth& auth, std::string_view recipient) {
  return key.tag(e2e_mac_input(digest, auth, recipient));
}

bytes ctrl_tag(const mac_key& key, byte_view body) {
  return key.tag(ctrl_mac_input(key.session_id, body));
}

bytes wire_batch_tag(const mac_key& key, std::span<const wire_batch_item> items) {
  return key.tag_pieces([&](const std::function<void(byte_view)>& piece) { wire_batch_mac_input_pieces(items, piece); });
}

status verify_hop_mac(const session_state& s, byte_view digest, const envelope_auth& auth) {
  if (!auth.hop_mac) return {status_code::bad_mac, "hop MAC missing"};
  const mac_key* k = s.find_receive(auth.hop_mac->session_id);
  // Same answer for an unknown session and a wrong tag: the sender learns nothing.
  if (k == nullptr) return {status_code::bad_mac, "hop MAC does not verify"};
  if (!crypto::constant_time_equal(hop_tag(*k, digest, auth), auth.hop_mac->tag))
    return {status_code::bad_mac, "hop MAC does not verify"};
  return {};
}

status verify_e2e_mac(const session_state& s, byte_view digest, const envelope_auth& auth, std::string_view me) {
  for (const auto& m : auth.e2e_macs) {
    if (m.recipient != me) continue;
    const mac_key* k = s.find_receive(m.session_id);
    if (k == nullptr) return {status_code::bad_mac, "end-to-end MAC does not verify"};
    if (!crypto::constant_time_equal(e2e_tag(*k, digest, auth, me), m.tag))
      return {status_code::bad_mac, "end-to-end MAC does not verify"};
    return {};
  }
  return {status_code::no_session, "no end-to-end MAC for this receiver"};
}

status verify_ctrl_tag(const session_state& s, byte_view session_id, byte_view body, byte_view tag) {
  const mac_key* k = s.find_receive(session_id);
  if (k == nullptr || !crypto::constant_time_equal(ctrl_tag(*k, body), tag))
    return {status_code::bad_mac, "control MAC does not verify"};
  return {};
}

status check_wire_batch_shape(std::span<const bytes> envelope_frames, std::size_t max_pair_bytes) {
  const std::size_t count = envelope_frames.size() / 2;
  if (count == 0 || envelope_frames.size() % 2 != 0 || count > kMaxWireBatchEnvelopes)
    return {status_code::malformed,
            "a wire batch is a session id, a MAC and 1 to " + std::to_string(kMaxWireBatchEnvelopes) + " envelopes"};
  std::size_t total = 0;
  for (std::size_t i = 0; i < envelope_frames.size(); i += 2) {
    const std::size_t pair = envelope_frames[i].size() + envelope_frames[i + 1].size();
    if (pair > max_pair_bytes) return {status_code::too_large, "an envelope of the wire batch exceeds the frame limit"};
    total += pair;
  }
  if (total > kMaxWireBatchBytes) return {status_code::too_large, "wire batch exceeds its size limit"};
  return {};
}

std::size_t wire_batch_group_end(std::size_t first, std::size_t n, const std::function<std::size_t(std::size_t)>& size_of,
                                 const std::function<bool(std::size_t)>& joins) {
  std::size_t end = first + 1, bytes_in = size_of(first);
  while (end < n && end - first < kWireBatchEnvelopes && joins(end)) {
    const std::size_t more = size_of(end);
    if (bytes_in + more > kWireBatchBytes) break;
    bytes_in += more;
    ++end;
  }
  return end;
}

status verify_wire_batch_mac(const session_state& s, byte_view session_id, std::span<const wire_batch_item> items,
                             byte_view tag) {
  const mac_key* k = s.find_receive(session_id);
  if (k == nullptr || !crypto::constant_time_equal(wire_batch_tag(*k, items), tag))
    return {status_code::bad_mac, "wire batch MAC does not verify"};
  return {};
}

status check_key_and_assurance(const policy& pol, std::string_view role, protection sender_protection,
                               byte_view pinned_key_id, const envelope_auth& auth) {
  if (!crypto::constant_time_equal(pinned_key_id, auth.key_id))
    return {status_code::wrong_key, "envelope names a key other than the sender's pinned key"};
  if (status st = pol.check_assurance(role, auth.level); !st) return st;
  bool software_level = auth.level == assurance::software;
  if (software_level != (sender_protection == protection::software))
    return {status_code::assurance_refused, "assurance level does not match the key's protection"};
  // The role's batch_max_leaves bounds how many envelopes one root signature may
  // vouch for; checked here, before any hashing, so an oversized batch costs the
  // verifier nothing. (A tpm-batch auth part without a proof does not decode.)
  if (auth.level == assurance::tpm_batch && auth.batch)
    if (status st = pol.check_batch_size(role, auth.batch->leaf_count); !st) return st;
  return {};
}

static bytes cache_key(byte_view key_id, byte_view signature) {
  bytes k(key_id.begin(), key_id.end());
  k.insert(k.end(), signature.begin(), signature.end());
  return k;
}

root_cache::~root_cache() = default;

const bytes* root_cache::find(byte_view key_id, byte_view signature) const {
  auto it = entries_.find(cache_key(key_id, signature));
  return it == entries_.end() ? nullptr : &it->second.root;
}

merkle::verified_nodes* root_cache::nodes(byte_view key_id, byte_view signature) {
  auto it = entries_.find(cache_key(key_id, signature));
  return it == entries_.end() ? nullptr : it->second.nodes.get();
}

void root_cache::insert(byte_view key_id, byte_view signature, bytes root, std::optional<hash_algorithm> hash,
                        std::uint32_t leaf_count) {
  bytes k = cache_key(key_id, signature);
  if (entries_.count(k)) return;
  while (entries_.size() >= capacity_ && !order_.empty()) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(k);
  entry e{std::move(root), nullptr};
  if (hash && leaf_count > 1 && leaf_count <= kMaxNodeTableLeaves) {
    e.nodes = std::make_unique<merkle::verified_nodes>(*hash, leaf_count, e.root);
    while (tables_.size() >= kNodeTables) {
      if (auto old = entries_.find(tables_.front()); old != entries_.end()) old->second.nodes.reset();
      tables_.pop_front();
    }
    tables_.push_back(k);
  }
  entries_.emplace(std::move(k), std::move(e));
}

status verify_envelope_signature(const crypto::public_key& key, const suite& s, byte_view digest,
                                 const envelope_auth& auth, root_cache* cache) {
  if (auth.level != assurance::tpm_batch) return crypto::verify_digest(key, s.key, s.envelope_hash, digest, auth.signature);
  // Batch mode: the signature covers the Merkle root the path leads to.
  if (!auth.batch) return {status_code::malformed, "tpm-batch envelope without a batch proof"};
  if (cache) {
    // A batch seen recently: its verified nodes decide after a hash or two.
    if (merkle::verified_nodes* nodes = cache->nodes(auth.key_id, auth.signature)) {
      if (status st = nodes->check(digest, *auth.batch); !st) return st;
      cache->count_hit();
      return {};
    }
  }
  auto root = merkle::root_from_proof(s.envelope_hash, digest, *auth.batch);
  if (!root) return root.error();
  if (cache) {
    if (const bytes* known = cache->find(auth.key_id, auth.signature)) {
      if (crypto::constant_time_equal(*known, *root)) {
        cache->count_hit();
        return {};
      }
      return {status_code::bad_batch_proof, "inclusion path does not lead to the root this signature covers"};
    }
  }
  if (status st = crypto::verify_digest(key, s.key, s.envelope_hash, *root, auth.signature); !st)
    return {status_code::bad_batch_signature, "batch root is not signed by the sender's key"};
  if (cache) {
    cache->insert(auth.key_id, auth.signature, std::move(root).value(), s.envelope_hash, auth.batch->leaf_count);
    // Record this envelope's path: the batch's next envelopes stop where it joins.
    if (merkle::verified_nodes* nodes = cache->nodes(auth.key_id, auth.signature)) (void)nodes->check(digest, *auth.batch);
  }
  return {};
}

std::optional<crypto::public_key> ec_key_on_curve(byte_view der, ec_curve curve) {
  auto k = crypto::public_key::from_der(der);
  if (!k || k->type().scheme != signature_scheme::ecdsa || k->type().curve != curve) return std::nullopt;
  return std::move(k).value();
}

result<peer_ecdh_keys> read_peer_ecdh_keys(byte_view ephemeral_der, byte_view static_der, ec_curve curve,
                                           std::string_view whose) {
  auto off_curve = [&](std::string_view which) {
    return status{status_code::invalid_field,
                  std::string(whose) + " " + std::string(which) + " key is not on " + std::string(curve_name(curve))};
  };
  auto ephemeral = ec_key_on_curve(ephemeral_der, curve);
  if (!ephemeral) return off_curve("ephemeral");
  peer_ecdh_keys keys{std::move(*ephemeral), std::nullopt};
  if (!static_der.empty()) {
    keys.static_key = ec_key_on_curve(static_der, curve);
    if (!keys.static_key) return off_curve("static");
  }
  return keys;
}

ec_curve curve_for_pair(ec_curve a, ec_curve b) noexcept { return curve_bytes(a) >= curve_bytes(b) ? a : b; }

}  // namespace agentbus::session
