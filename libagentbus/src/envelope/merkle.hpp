// merkle.hpp — the Merkle tree of batch signing (assurance tpm-batch) (internal).
//
// schemas/envelope.md §7.2 is normative; this is its reference implementation:
//
//   leaf_i     = H(0x00 || d_i)              d_i: envelope digest (§5), H: suite envelope hash
//   node(l, r) = H(0x01 || l || r)
//   level k+1  = pairwise nodes of level k; an odd last node is promoted unchanged
//   root       = the single node of the last level (N = 1: root = leaf_0)
//
// A signer builds a `tree` over the digests of one batch, has the TPM sign root()
// (as it would sign a digest in direct mode) and ships proof(i) with envelope i. A
// verifier calls root_from_proof() on an envelope's digest and proof, then checks
// the signature over the returned root (and may cache verified roots per key).
//
// What the root commits to, and what it does not: it commits to every leaf digest
// and its position *relative to the siblings on its path*. It does NOT commit to
// leaf_count, and so not to an unambiguous leaf_index either: proofs whose
// (leaf_index, leaf_count) take the same left/right turns past the same siblings
// recompute the same root, e.g. index 2 of 3 and index 1 of 2, or index 0 of 3 and
// index 0 of 4. That is why the MAC inputs bind the batch proof (§8), and why
// nothing may key a replay or deduplication table on (root, leaf_index): key it on
// the signed part (sender and sequence, or message_id).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::merkle {

inline constexpr std::uint8_t kLeafPrefix = 0x00;
inline constexpr std::uint8_t kNodePrefix = 0x01;

// leaf_hash is H(0x00 || envelope_digest). node_hash is H(0x01 || left || right).
// The distinct one-byte prefixes are the domain separation: a leaf hash never
// equals a node hash without a hash collision, so an inner node (or a pair of
// children written out as 2·|H| bytes) cannot be passed off as a leaf, and no leaf
// can pose as an inner node to shorten or re-shape a proof. They also keep batch
// signatures apart from direct ones: a direct signature covers H(signed part),
// whose input starts with 0x9d, never with 0x00 or 0x01.
// Both hash whatever sizes they are given; tree::build and root_from_proof are
// where sizes are checked.
bytes leaf_hash(hash_algorithm h, byte_view envelope_digest);
bytes node_hash(hash_algorithm h, byte_view left, byte_view right);

// path_length is the number of siblings a proof for leaf `leaf_index` of a tree of
// `leaf_count` leaves carries: one per level, except levels where the node on the
// path is the promoted odd last node (it has no sibling there). 0 when
// leaf_count <= 1 or leaf_index >= leaf_count (no valid proof has such a shape;
// root_from_proof refuses it separately). At most 32 for 32-bit counts.
std::size_t path_length(std::uint32_t leaf_index, std::uint32_t leaf_count) noexcept;

// tree holds every level of one batch's tree: 2N−1 hashes at most, N leaf hashes
// plus at most N−1 node hashes to build it (promotion copies, it does not hash).
// Immutable after build; const methods are thread-safe.
class tree {
 public:
  // build hashes the leaves and every level up to the root. Every digest must be
  // hash_size(h) bytes and there must be 1 to 2^32−1 of them; otherwise
  // std::invalid_argument (a local programming error, not untrusted input).
  static tree build(hash_algorithm h, std::vector<bytes> envelope_digests);

  // root is what the TPM signs for this batch.
  const bytes& root() const noexcept { return levels_.back(); }

  // proof returns leaf `leaf_index`'s position and its siblings, leaf level first:
  // O(log n) copies, no hashing. std::out_of_range if leaf_index >= size().
  batch_proof proof(std::uint32_t leaf_index) const;

  std::size_t size() const noexcept { return leaf_count_; }
  hash_algorithm algorithm() const noexcept { return hash_; }

 private:
  tree(hash_algorithm h, std::size_t hash_size, std::size_t leaf_count)
      : hash_(h), hash_size_(hash_size), leaf_count_(leaf_count) {}

  hash_algorithm hash_;
  std::size_t hash_size_;
  std::size_t leaf_count_;
  // levels_[k] holds level k's nodes back to back, hash_size_ bytes each;
  // levels_.back() is the root alone.
  std::vector<bytes> levels_;
};

// root_from_proof recomputes the root from an envelope's digest and its proof,
// exactly as §7.2's verifier loop; the caller then verifies the signature over the
// result with the sender's pinned key. It refuses (invalid_field) what no tree of
// this shape can produce: leaf_count 0, leaf_index >= leaf_count, a digest or a
// path element that is not hash_size(h) bytes, and a path whose length is not
// path_length(leaf_index, leaf_count).
//
// Why the exact length is required: §7.2's loop only reads the siblings it needs,
// so without `k == len(path)` a proof with extra elements appended would recompute
// the same root — the same signature would then vouch for many different auth
// parts — and a short one would read past the end. With it the proof is canonical:
// for each (leaf_index, leaf_count) exactly one path shape is accepted, the decoder
// refuses any other before hashing, and the verifier's work is bounded by the shape
// (at most 32 node hashes). It does not make leaf_index/leaf_count unambiguous:
// (2 of 3) and (1 of 2) have the same shape and the same root (see the top of this
// file); the MACs (§8) bind those fields.
result<bytes> root_from_proof(hash_algorithm h, byte_view envelope_digest, const batch_proof& proof);

// verified_nodes remembers the nodes of one batch's tree that verified paths have
// established (the root from the start). check() hashes up from an envelope's leaf
// only while the nodes are new: where a node and its sibling equal verified ones,
// their parent is taken from the table instead of hashed. Envelopes of a batch
// arriving in order then cost about 2 hashes each instead of ⌈log2 N⌉ + 1 (11 for
// a batch of 1024): the saving every verifier (broker and receiver) makes.
//
// Why it is sound, and exact: every node on the way up and every sibling in the
// proof is either compared with a verified node of the same position or hashed into
// the next node, and the walk ends at the root whose signature verified. So a proof
// is accepted exactly when root_from_proof would recompute the verified root —
// whatever the table already holds (the same proofs at the broker and at every
// receiver). Only after acceptance are the new nodes and siblings recorded.
// Memory: 2N−1 slots of the hash size plus a bit each (64 KiB for N = 1024 with
// SHA-256). Not thread-safe.
class verified_nodes {
 public:
  verified_nodes(hash_algorithm h, std::uint32_t leaf_count, byte_view root);

  // check: ok when `envelope_digest` with `proof` belongs to this tree;
  // invalid_field for a proof of the wrong shape (as root_from_proof), or one for
  // a tree of another size; bad_batch_proof when it leads to another root.
  status check(byte_view envelope_digest, const batch_proof& proof);

  std::uint32_t leaf_count() const noexcept { return leaf_count_; }
  std::size_t memory_bytes() const noexcept { return hashes_.capacity() + known_.capacity() / 8; }
  std::uint64_t hashes_computed() const noexcept { return hashes_computed_; }

 private:
  hash_algorithm h_;
  std::size_t hash_size_;
  std::uint32_t leaf_count_;
  std::vector<std::size_t> level_start_;  // first slot of each level; the last level is the root
  bytes hashes_;                          // slot × hash_size_
  std::vector<bool> known_;
  std::uint64_t hashes_computed_ = 0;
};

}  // namespace agentbus::merkle
