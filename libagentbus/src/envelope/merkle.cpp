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

status refuse(std::string detail) { return {status_code::invalid_field, std::move(detail)}; }

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

result<bytes> root_from_proof(hash_algorithm h, byte_view envelope_digest, const batch_proof& proof) {
  // Shape first (cheap, and the decoder's own rules), then sizes, then hashing.
  if (proof.leaf_count == 0) return refuse("batch.leaf_count: 0");
  if (proof.leaf_index >= proof.leaf_count) return refuse("batch.leaf_index: not below leaf_count");
  if (proof.path.size() != path_length(proof.leaf_index, proof.leaf_count))
    return refuse("batch.path: length does not fit leaf_index and leaf_count");
  const std::size_t size = hash_size(h);
  if (envelope_digest.size() != size) return refuse("envelope digest: not the suite hash's size");
  for (const auto& node : proof.path)
    if (node.size() != size) return refuse("batch.path[]: not the suite hash's size");

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

}  // namespace agentbus::merkle
