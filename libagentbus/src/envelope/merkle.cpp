// merkle.cpp — Merkle tree for batch signing (schemas/envelope.md §7.2).
#include "envelope/merkle.hpp"

#include <array>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "crypto/ossl.hpp"

namespace agentbus::merkle {
namespace {

// Largest input hashed as one buffer: a prefix byte and two 64-byte children.
constexpr std::size_t kMaxHashSize = 64;
constexpr std::size_t kStackInput = 1 + 2 * kMaxHashSize;

// hasher computes H(prefix || a || b) into caller storage, reusing one EVP_MD_CTX
// for every hash of a build or a proof check (no allocation per node).
class hasher {
 public:
  explicit hasher(hash_algorithm h) : md_(crypto::md_of(h)), ctx_(EVP_MD_CTX_new()) {
    if (!ctx_) crypto::throw_crypto_error("EVP_MD_CTX_new");
  }

  // out must hold hash_size(h) bytes; it may alias a or b (they are consumed first).
  void hash(std::uint8_t prefix, byte_view a, byte_view b, std::uint8_t* out) {
    if (EVP_DigestInit_ex2(ctx_.get(), md_, nullptr) != 1) crypto::throw_crypto_error("EVP_DigestInit_ex2");
    if (1 + a.size() + b.size() <= kStackInput) {
      // One update: the common case (every leaf and node of a well-formed tree).
      std::array<std::uint8_t, kStackInput> in;
      in[0] = prefix;
      if (!a.empty()) std::memcpy(in.data() + 1, a.data(), a.size());
      if (!b.empty()) std::memcpy(in.data() + 1 + a.size(), b.data(), b.size());
      update(in.data(), 1 + a.size() + b.size());
    } else {
      update(&prefix, 1);
      update(a.data(), a.size());
      update(b.data(), b.size());
    }
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), out, &len) != 1) crypto::throw_crypto_error("EVP_DigestFinal_ex");
  }

 private:
  void update(const std::uint8_t* data, std::size_t size) {
    if (size != 0 && EVP_DigestUpdate(ctx_.get(), data, size) != 1) crypto::throw_crypto_error("EVP_DigestUpdate");
  }

  const EVP_MD* md_;
  crypto::ossl_ptr<EVP_MD_CTX> ctx_;
};


}  // namespace

bytes leaf_hash(hash_algorithm h, byte_view envelope_digest) {
  bytes out(hash_size(h));
  hasher(h).hash(kLeafPrefix, envelope_digest, {}, out.data());
  return out;
}

bytes node_hash(hash_algorithm h, byte_view left, byte_view right) {
  bytes out(hash_size(h));
  hasher(h).hash(kNodePrefix, left, right, out.data());
  return out;
}

std::size_t path_length(std::uint32_t leaf_index, std::uint32_t leaf_count) noexcept {
  // 64-bit so that (n + 1) / 2 cannot wrap for leaf_count = 2^32−1.
  std::uint64_t i = leaf_index;
  std::uint64_t n = leaf_count;
  if (i >= n) return 0;
  std::size_t length = 0;
  while (n > 1) {
    if (i % 2 == 1 || i + 1 < n) ++length;  // else: promoted, no sibling here
    i /= 2;
    n = (n + 1) / 2;
  }
  return length;
}

tree tree::build(hash_algorithm h, std::vector<bytes> envelope_digests) {
  const std::size_t count = envelope_digests.size();
  if (count == 0) throw std::invalid_argument("merkle::tree::build: no leaves");
  if (count > 0xffffffffu) throw std::invalid_argument("merkle::tree::build: more than 2^32-1 leaves");
  const std::size_t size = hash_size(h);
  for (const auto& d : envelope_digests)
    if (d.size() != size)
      throw std::invalid_argument("merkle::tree::build: a digest is not " + std::to_string(size) + " bytes");

  tree t(h, size, count);
  std::size_t levels = 1;
  for (std::size_t n = count; n > 1; n = (n + 1) / 2) ++levels;
  t.levels_.reserve(levels);

  hasher hs(h);
  bytes level(count * size);
  for (std::size_t i = 0; i < count; ++i) hs.hash(kLeafPrefix, envelope_digests[i], {}, level.data() + i * size);
  t.levels_.push_back(std::move(level));

  for (std::size_t n = count; n > 1; n = (n + 1) / 2) {
    const bytes& below = t.levels_.back();
    bytes up(((n + 1) / 2) * size);
    for (std::size_t j = 0; j < n / 2; ++j)
      hs.hash(kNodePrefix, byte_view(below.data() + 2 * j * size, size),
              byte_view(below.data() + (2 * j + 1) * size, size), up.data() + j * size);
    // An odd last node is promoted unchanged: not hashed, not duplicated. (Duplicating
    // it, as Bitcoin does, would let a batch of N and one of N+1 with a repeated last
    // leaf share a root.)
    if (n % 2 == 1) std::memcpy(up.data() + (n / 2) * size, below.data() + (n - 1) * size, size);
    t.levels_.push_back(std::move(up));
  }
  return t;
}

batch_proof tree::proof(std::uint32_t leaf_index) const {
  if (leaf_index >= leaf_count_)
    throw std::out_of_range("merkle::tree::proof: leaf " + std::to_string(leaf_index) + " of " +
                            std::to_string(leaf_count_));
  batch_proof p;
  p.leaf_index = leaf_index;
  p.leaf_count = static_cast<std::uint32_t>(leaf_count_);
  p.path.reserve(path_length(p.leaf_index, p.leaf_count));
  std::size_t i = leaf_index;
  std::size_t n = leaf_count_;
  for (std::size_t k = 0; n > 1; ++k) {
    // Odd i: the sibling is on the left (always exists). Even i: on the right, unless
    // i is the last node of an odd level, which is promoted and has none.
    const std::size_t sibling = i ^ 1u;
    if (sibling < n) {
      const auto* at = levels_[k].data() + sibling * hash_size_;
      p.path.emplace_back(at, at + hash_size_);
    }
    i /= 2;
    n = (n + 1) / 2;
  }
  return p;
}

// check_shape: the proof's shape (the decoder's own rules) and sizes, before any hashing.
static status check_shape(std::size_t size, byte_view envelope_digest, const batch_proof& proof) {
  if (proof.leaf_count == 0) return {status_code::invalid_field, "batch.leaf_count: 0"};
  if (proof.leaf_index >= proof.leaf_count) return {status_code::invalid_field, "batch.leaf_index: not below leaf_count"};
  if (proof.path.size() != path_length(proof.leaf_index, proof.leaf_count))
    return {status_code::invalid_field, "batch.path: length does not fit leaf_index and leaf_count"};
  if (envelope_digest.size() != size) return {status_code::invalid_field, "envelope digest: not the suite hash's size"};
  for (const auto& node : proof.path)
    if (node.size() != size) return {status_code::invalid_field, "batch.path[]: not the suite hash's size"};
  return {};
}

result<bytes> root_from_proof(hash_algorithm h, byte_view envelope_digest, const batch_proof& proof) {
  const std::size_t size = hash_size(h);
  if (status st = check_shape(size, envelope_digest, proof); !st) return st;

  hasher hs(h);
  bytes acc(size);
  hs.hash(kLeafPrefix, envelope_digest, {}, acc.data());
  std::uint64_t i = proof.leaf_index;
  std::uint64_t n = proof.leaf_count;
  std::size_t k = 0;
  while (n > 1) {
    if (i % 2 == 1) {
      hs.hash(kNodePrefix, proof.path[k++], acc, acc.data());
    } else if (i + 1 < n) {
      hs.hash(kNodePrefix, acc, proof.path[k++], acc.data());
    }  // else: acc is the promoted last node of its level, no sibling
    i /= 2;
    n = (n + 1) / 2;
  }
  // k == path.size() by the length check above.
  return acc;
}

namespace {
// Tree nodes are public (every proof carries them in the clear), so a comparison
// that stops at the first difference reveals nothing: plain memcmp, not the
// constant-time compare that MAC tags need (20 of those per path were 2.6% of the
// bus's CPU under load).
bool nodes_equal(byte_view a, byte_view b) noexcept {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}
}  // namespace

verified_nodes::verified_nodes(hash_algorithm h, std::uint32_t leaf_count, byte_view root)
    : h_(h), hash_size_(hash_size(h)), leaf_count_(leaf_count) {
  if (leaf_count == 0 || root.size() != hash_size_) throw std::invalid_argument("merkle::verified_nodes: bad tree");
  std::size_t slots = 0;
  for (std::uint64_t n = leaf_count;; n = (n + 1) / 2) {
    level_start_.push_back(slots);
    slots += n;
    if (n == 1) break;
  }
  hashes_.resize(slots * hash_size_);
  known_.resize(slots);
  std::memcpy(hashes_.data() + (slots - 1) * hash_size_, root.data(), hash_size_);
  known_[slots - 1] = true;
}

status verified_nodes::check(byte_view envelope_digest, const batch_proof& proof) {
  if (status st = check_shape(hash_size_, envelope_digest, proof); !st) return st;
  if (proof.leaf_count != leaf_count_) return {status_code::bad_batch_proof, "batch.leaf_count differs from the signed batch's"};
  // Walk up, keeping what would be learned, until a known node decides.
  struct learned {
    std::size_t slot;
    std::array<std::uint8_t, kMaxHashSize> value;
  };
  std::array<learned, 2 * 33> pending;  // the node and its sibling per level, at most 33 levels
  std::size_t npending = 0;
  auto remember = [&](std::size_t slot, const std::uint8_t* value) {
    pending[npending].slot = slot;
    std::memcpy(pending[npending].value.data(), value, hash_size_);
    ++npending;
  };
  hasher hs(h_);
  std::array<std::uint8_t, kMaxHashSize> acc{};
  hs.hash(kLeafPrefix, envelope_digest, {}, acc.data());
  ++hashes_computed_;
  auto value = [&](std::size_t slot) { return byte_view(hashes_.data() + slot * hash_size_, hash_size_); };
  const byte_view current(acc.data(), hash_size_);
  // Every node on the way and every sibling is either equal to a known (verified)
  // node or hashed on up to one; nothing in the proof goes unchecked, so the same
  // proofs are accepted whatever the table already holds.
  std::uint64_t i = proof.leaf_index, n = leaf_count_;
  std::size_t level = 0, k = 0;
  for (;;) {
    const std::size_t slot = level_start_[level] + static_cast<std::size_t>(i);
    if (known_[slot]) {
      if (!nodes_equal(current, value(slot)))
        return {status_code::bad_batch_proof, "inclusion path does not lead to the root this signature covers"};
    } else {
      remember(slot, acc.data());
    }
    if (n == 1) break;  // the root: always known, so compared above
    if (i % 2 == 1 || i + 1 < n) {
      const bytes& sibling = proof.path[k++];
      const std::size_t sibling_slot = level_start_[level] + static_cast<std::size_t>(i ^ 1u);
      if (known_[sibling_slot]) {
        if (!nodes_equal(sibling, value(sibling_slot)))
          return {status_code::bad_batch_proof, "inclusion path does not lead to the root this signature covers"};
      } else {
        remember(sibling_slot, sibling.data());
      }
      const std::size_t parent = level_start_[level + 1] + static_cast<std::size_t>(i / 2);
      if (known_[slot] && known_[sibling_slot] && known_[parent]) {
        // Both children equal verified nodes: their parent is the verified parent.
        std::memcpy(acc.data(), value(parent).data(), hash_size_);
      } else {
        if (i % 2 == 1) hs.hash(kNodePrefix, sibling, current, acc.data());
        else hs.hash(kNodePrefix, current, sibling, acc.data());
        ++hashes_computed_;
      }
    }  // else: promoted unchanged
    i /= 2;
    n = (n + 1) / 2;
    ++level;
  }
  for (std::size_t p = 0; p < npending; ++p) {
    std::memcpy(hashes_.data() + pending[p].slot * hash_size_, pending[p].value.data(), hash_size_);
    known_[pending[p].slot] = true;
  }
  return {};
}

}  // namespace agentbus::merkle
