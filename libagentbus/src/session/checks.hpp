// checks.hpp — the enforcement steps shared by the broker (at publish) and the
// library (at receive), so both apply exactly the same rules (internal).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/policy.hpp"
#include "envelope/merkle.hpp"
#include "session/session_keys.hpp"

namespace agentbus::session {

// hop_tag / e2e_tag compute MACs (schemas/envelope.md "MAC inputs").
bytes hop_tag(const mac_key& key, byte_view digest, const envelope_auth& auth);
bytes e2e_tag(const mac_key& key, byte_view digest, const envelope_auth& auth, std::string_view recipient);
bytes ctrl_tag(const mac_key& key, byte_view body);
bytes wire_batch_tag(const mac_key& key, std::span<const wire_batch_item> items);

// verify_hop_mac: the hop MAC is present, names a live receive key of `s`, and verifies.
status verify_hop_mac(const session_state& s, byte_view digest, const envelope_auth& auth);
// verify_e2e_mac: the entry for `me` is present, names a live key, and verifies.
status verify_e2e_mac(const session_state& s, byte_view digest, const envelope_auth& auth, std::string_view me);
status verify_ctrl_tag(const session_state& s, byte_view session_id, byte_view body, byte_view tag);
// check_wire_batch_shape: the envelope frames of a wire batch (after its session id
// and MAC) are 1 to kMaxWireBatchEnvelopes (signed part, auth part) pairs (malformed),
// each pair within max_pair_bytes and all within kMaxWireBatchBytes (too_large).
status check_wire_batch_shape(std::span<const bytes> envelope_frames, std::size_t max_pair_bytes);
// wire_batch_group_end: where the wire batch that starts with envelope `first` of `n`
// ends (one past its last member). A group takes the envelopes that follow while
// `joins(i)` holds, up to kWireBatchEnvelopes envelopes and kWireBatchBytes bytes
// (`size_of(i)`); its first envelope is always in it, however large. The sender's
// sealer and the broker's fan-out split their traffic with this one rule.
std::size_t wire_batch_group_end(std::size_t first, std::size_t n, const std::function<std::size_t(std::size_t)>& size_of,
                                 const std::function<bool(std::size_t)>& joins);
// verify_wire_batch_mac: the one hop MAC of a wire batch (schemas/envelope.md §7.3).
status verify_wire_batch_mac(const session_state& s, byte_view session_id, std::span<const wire_batch_item> items,
                             byte_view tag);

// check_key_and_assurance: the envelope names the sender's pinned key (wrong_key);
// its assurance level is one the role accepts and matches the key's protection
// (a software key cannot claim tpm; assurance_refused); a tpm-batch proof names
// at most the role's batch_max_leaves leaves (batch_too_large).
status check_key_and_assurance(const policy& pol, std::string_view role, protection sender_protection,
                               byte_view pinned_key_id, const envelope_auth& auth);

// root_cache remembers batch roots whose signature verified, per signing key, so
// every further envelope of a batch costs only its inclusion path. It is keyed by
// (key id, signature bytes) → root: a known signature arriving with a path that
// leads elsewhere is a forged path or a leaf moved from another batch. Bounded:
// the oldest entries are evicted first. The most recent batches (up to
// kNodeTables, of at most kMaxNodeTableLeaves leaves) also keep the tree nodes
// verified so far (merkle::verified_nodes), so an envelope costs about 2 hashes
// instead of its whole path. Not thread-safe (one per verifying thread).
class root_cache {
 public:
  static constexpr std::size_t kNodeTables = 16;
  static constexpr std::uint32_t kMaxNodeTableLeaves = 4096;

  explicit root_cache(std::size_t capacity = 4096) : capacity_(capacity) {}
  root_cache(const root_cache&) = delete;
  root_cache& operator=(const root_cache&) = delete;
  ~root_cache();

  const bytes* find(byte_view key_id, byte_view signature) const;
  // nodes: the verified-node table of this batch, if it keeps one.
  merkle::verified_nodes* nodes(byte_view key_id, byte_view signature);
  // insert a verified root; with hash/leaf_count a node table is kept for it
  // (replacing the oldest table beyond kNodeTables).
  void insert(byte_view key_id, byte_view signature, bytes root, std::optional<hash_algorithm> hash = std::nullopt,
              std::uint32_t leaf_count = 0);
  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t node_tables() const noexcept { return tables_.size(); }
  std::uint64_t hits() const noexcept { return hits_; }
  void count_hit() noexcept { ++hits_; }

 private:
  struct entry {
    bytes root;
    std::unique_ptr<merkle::verified_nodes> nodes;
  };
  std::size_t capacity_;
  std::map<bytes, entry> entries_;   // key_id || signature → root (and nodes)
  std::deque<bytes> order_;          // insertion order, for eviction
  std::deque<bytes> tables_;         // entries holding a node table, oldest first
  std::uint64_t hits_ = 0;
};

// verify_envelope_signature: direct mode verifies the signature over the envelope
// digest; batch mode (tpm-batch) recomputes the Merkle root from the inclusion
// path and verifies the signature over the root, or finds it in `cache`.
// bad_batch_proof: the signature is known for another root (forged path, moved
// leaf); bad_batch_signature: the root is not signed by this key.
status verify_envelope_signature(const crypto::public_key& key, const suite& s, byte_view digest,
                                 const envelope_auth& auth, root_cache* cache = nullptr);

// ec_key_on_curve parses a DER public key and accepts it only as an EC key on
// `curve` (ephemeral and static ECDH keys in handshakes); nullopt otherwise.
std::optional<crypto::public_key> ec_key_on_curve(byte_view der, ec_curve curve);

// peer_ecdh_keys is what a handshake message offers for the key agreement: the
// peer's ephemeral key and, when it sent one, its static (TPM-resident) key.
struct peer_ecdh_keys {
  crypto::public_key ephemeral;
  std::optional<crypto::public_key> static_key;
};
// read_peer_ecdh_keys accepts both only as EC keys on `curve` (an empty
// static_der: none offered); invalid_field "<whose> ephemeral key is not on P-256"
// (or "static key") otherwise.
result<peer_ecdh_keys> read_peer_ecdh_keys(byte_view ephemeral_der, byte_view static_der, ec_curve curve,
                                           std::string_view whose);

// curve_for_pair: agent↔agent sessions use the stronger of the two roles' curves.
ec_curve curve_for_pair(ec_curve a, ec_curve b) noexcept;

}  // namespace agentbus::session
