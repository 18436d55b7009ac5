// merkle_test — the batch-signing Merkle tree (schemas/envelope.md §7.2): every tree
// shape from 1 to 300 leaves under SHA-256, SHA-384 and SHA3-384 against a naive
// reference model written here from the schema's text; every tampering of a proof;
// agreement with the auth-part decoder on which proof shapes exist; and the
// tpm-batch known-answer vector (produced by an independent python implementation).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "envelope/merkle.hpp"

namespace agentbus {
namespace {

using json = nlohmann::json;

constexpr std::uint32_t kMaxShape = 300;

bytes concat(std::initializer_list<byte_view> parts) {
  bytes out;
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bytes one_byte(std::uint8_t b) { return bytes{b}; }

// digests returns n distinct, deterministic envelope digests of hash_size(h) bytes.
std::vector<bytes> digests(hash_algorithm h, std::uint32_t n, std::string_view tag = "leaf") {
  std::vector<bytes> out;
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i)
    out.push_back(crypto::digest(h, as_bytes(std::string(tag) + "-" + std::to_string(n) + "-" + std::to_string(i))));
  return out;
}

bytes flip_bit(bytes b, std::size_t bit) {
  b.at(bit / 8) ^= static_cast<std::uint8_t>(1u << (bit % 8));
  return b;
}

// ---- Reference model, straight from the schema's text (no code shared with merkle.cpp) ----

bytes ref_leaf(hash_algorithm h, byte_view d) { return crypto::digest(h, concat({one_byte(0x00), d})); }
bytes ref_node(hash_algorithm h, byte_view l, byte_view r) { return crypto::digest(h, concat({one_byte(0x01), l, r})); }

std::vector<std::vector<bytes>> ref_levels(hash_algorithm h, const std::vector<bytes>& ds) {
  std::vector<std::vector<bytes>> levels(1);
  for (const auto& d : ds) levels[0].push_back(ref_leaf(h, d));
  while (levels.back().size() > 1) {
    const auto& below = levels.back();
    std::vector<bytes> up;
    for (std::size_t j = 0; j + 1 < below.size(); j += 2) up.push_back(ref_node(h, below[j], below[j + 1]));
    if (below.size() % 2 == 1) up.push_back(below.back());  // promoted unchanged
    levels.push_back(std::move(up));
  }
  return levels;
}

// turns lists, leaf level first, which side the sibling is on at each level that has
// one ('L': path element on the left, 'R': on the right). Two (index, count) pairs
// with the same turns recompute the same root from the same digest and path; an
// invalid pair has none.
std::optional<std::string> turns(std::uint64_t i, std::uint64_t n) {
  if (n == 0 || i >= n) return std::nullopt;
  std::string t;
  for (; n > 1; i /= 2, n = (n + 1) / 2) {
    if (i % 2 == 1) t += 'L';
    else if (i + 1 < n) t += 'R';
  }
  return t;
}

// ---- Helpers over the API under test ----

// expect_not_root: a tampered proof is refused as invalid_field or recomputes a root
// other than the genuine one, never the genuine root.
void expect_not_root(hash_algorithm h, byte_view digest, const batch_proof& p, const bytes& root, const char* what) {
  auto r = merkle::root_from_proof(h, digest, p);
  if (r.ok()) {
    EXPECT_NE(*r, root) << what << " recomputed the genuine root";
  } else {
    EXPECT_EQ(r.error().code(), status_code::invalid_field) << what << ": " << r.error().to_string();
  }
}

class MerkleShapes : public ::testing::TestWithParam<hash_algorithm> {};

TEST_P(MerkleShapes, EveryShapeUpTo300LeavesProvesEveryLeafAndRefusesEveryTampering) {
  const hash_algorithm h = GetParam();
  const std::size_t hs = hash_size(h);
  for (std::uint32_t n = 1; n <= kMaxShape; ++n) {
    SCOPED_TRACE("leaf_count " + std::to_string(n));
    const auto ds = digests(h, n);
    const auto ref = ref_levels(h, ds);
    const auto t = merkle::tree::build(h, ds);
    ASSERT_EQ(t.size(), n);
    ASSERT_EQ(t.root(), ref.back().at(0));
    ASSERT_EQ(t.root().size(), hs);
    if (n == 1) {
      EXPECT_EQ(t.root(), ref_leaf(h, ds[0]));  // N = 1: root = leaf_0
    }
    const bytes& root = t.root();

    for (std::uint32_t i = 0; i < n; ++i) {
      SCOPED_TRACE("leaf_index " + std::to_string(i));
      const batch_proof p = t.proof(i);
      ASSERT_EQ(p.leaf_index, i);
      ASSERT_EQ(p.leaf_count, n);
      ASSERT_EQ(p.path.size(), merkle::path_length(i, n));
      ASSERT_EQ(p.path.size(), turns(i, n)->size());

      // The siblings are the reference tree's, leaf level first, skipping promotions.
      std::vector<bytes> ref_path;
      for (std::size_t k = 0, idx = i; k + 1 < ref.size(); ++k, idx /= 2)
        if ((idx ^ 1u) < ref[k].size()) ref_path.push_back(ref[k][idx ^ 1u]);
      ASSERT_EQ(p.path, ref_path);

      auto r = merkle::root_from_proof(h, ds[i], p);
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      ASSERT_EQ(*r, root);

      // Another leaf's digest at this position.
      if (n > 1) expect_not_root(h, ds[(i + 1) % n], p, root, "another leaf's digest");
      // One bit of the digest (a different bit for each leaf, walking all of them).
      expect_not_root(h, flip_bit(ds[i], (i * 37u + n) % (8 * hs)), p, root, "digest bit flip");
      // One bit of each path element.
      for (std::size_t k = 0; k < p.path.size(); ++k) {
        batch_proof q = p;
        q.path[k] = flip_bit(q.path[k], (k * 61u + i) % (8 * hs));
        expect_not_root(h, ds[i], q, root, "path element bit flip");
      }
      // Swapped pairs: every adjacent pair, and first with last.
      for (std::size_t k = 0; k + 1 < p.path.size(); ++k) {
        batch_proof q = p;
        std::swap(q.path[k], q.path[k + 1]);
        expect_not_root(h, ds[i], q, root, "adjacent path elements swapped");
      }
      if (p.path.size() > 2) {
        batch_proof q = p;
        std::swap(q.path.front(), q.path.back());
        expect_not_root(h, ds[i], q, root, "first and last path elements swapped");
      }
      // leaf_index ± 1 (i − 1 wraps to 2^32−1 for i = 0): always refused or another
      // root, because the sibling on the leaf level changes sides.
      for (std::uint32_t j : {i - 1, i + 1}) {
        batch_proof q = p;
        q.leaf_index = j;
        expect_not_root(h, ds[i], q, root, "leaf_index +-1");
      }
      // leaf_count ± 1: refused, or another root — except where the changed count takes
      // the same turns past the same siblings (e.g. 0 of 3 and 0 of 4). The root does
      // not commit to leaf_count (§8: the MACs bind it), so there the root is the same;
      // check that this happens exactly then and nowhere else.
      for (std::uint32_t m : {n - 1, n + 1}) {
        batch_proof q = p;
        q.leaf_count = m;
        auto rq = merkle::root_from_proof(h, ds[i], q);
        const bool same_turns = turns(i, m) == turns(i, n);
        if (!rq.ok()) {
          EXPECT_EQ(rq.error().code(), status_code::invalid_field);
          EXPECT_FALSE(same_turns) << "refused a shape with a valid path length";
        } else {
          EXPECT_TRUE(turns(i, m).has_value());
          EXPECT_EQ(*rq == root, same_turns) << "leaf_count " << m;
        }
      }
      // Truncated and extended paths: always refused (the length must fit the shape).
      if (!p.path.empty()) {
        batch_proof q = p;
        q.path.pop_back();
        expect_not_root(h, ds[i], q, root, "path without its last element");
        q = p;
        q.path.erase(q.path.begin());
        expect_not_root(h, ds[i], q, root, "path without its first element");
      }
      {
        batch_proof q = p;
        q.path.push_back(root);
        expect_not_root(h, ds[i], q, root, "path with the root appended");
        q = p;
        q.path.insert(q.path.begin(), ds[i]);
        expect_not_root(h, ds[i], q, root, "path with an element prepended");
        // §7.2's loop never reads an extra trailing element, so without the length
        // check this one would recompute the genuine root: it must be refused.
        auto extended = merkle::root_from_proof(h, ds[i], [&] {
          batch_proof e = p;
          e.path.push_back(bytes(hs, 0x5a));
          return e;
        }());
        ASSERT_FALSE(extended.ok());
        EXPECT_EQ(extended.error().code(), status_code::invalid_field);
      }
    }
    if (HasFailure()) return;  // one broken shape says enough
  }
}

INSTANTIATE_TEST_SUITE_P(Hashes, MerkleShapes,
                         ::testing::Values(hash_algorithm::sha256, hash_algorithm::sha384, hash_algorithm::sha3_384),
                         [](const auto& info) {
                           std::string name(hash_name(info.param));
                           for (auto& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

TEST(MerkleHashes, AreTheSchemaFormulas) {
  for (hash_algorithm h : {hash_algorithm::sha256, hash_algorithm::sha384, hash_algorithm::sha3_384}) {
    SCOPED_TRACE(std::string(hash_name(h)));
    const auto ds = digests(h, 3, "formula");
    EXPECT_EQ(merkle::leaf_hash(h, ds[0]), crypto::digest(h, concat({one_byte(0x00), ds[0]})));
    EXPECT_EQ(merkle::node_hash(h, ds[1], ds[2]), crypto::digest(h, concat({one_byte(0x01), ds[1], ds[2]})));
    EXPECT_EQ(merkle::leaf_hash(h, ds[0]).size(), hash_size(h));
    // Inputs longer than two hashes still hash as written (no silent truncation).
    const bytes big(200, 0x42);
    EXPECT_EQ(merkle::node_hash(h, big, big), crypto::digest(h, concat({one_byte(0x01), big, big})));
  }
}

TEST(MerkleHashes, AnInnerNodeCannotPoseAsALeaf) {
  const hash_algorithm h = hash_algorithm::sha256;
  const auto ds = digests(h, 4, "domain");
  const auto t = merkle::tree::build(h, ds);
  const bytes l0 = merkle::leaf_hash(h, ds[0]);
  const bytes l1 = merkle::leaf_hash(h, ds[1]);
  const bytes n01 = merkle::node_hash(h, l0, l1);
  const bytes n23 = t.proof(0).path.at(1);  // leaf 0's path: [leaf_1, node(leaf_2, leaf_3)]
  ASSERT_EQ(merkle::node_hash(h, n01, n23), t.root());

  // Without the prefixes, "leaf n01 of a 2-leaf tree with sibling n23" would hash to
  // the root of the 4-leaf tree. With them it does not.
  batch_proof forged{0, 2, {n23}};
  auto r = merkle::root_from_proof(h, n01, forged);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(*r, t.root());
  // Nor do the two children written out as one 64-byte "digest" hash like their node.
  EXPECT_NE(merkle::leaf_hash(h, concat({l0, l1})), n01);
  EXPECT_NE(merkle::leaf_hash(h, concat({l0, l1})), merkle::node_hash(h, l0, l1));
}

TEST(MerkleTree, SchemaExampleTwoOfThreeAndOneOfTwoShareTheRoot) {
  // §8: "index 2 of 3 and index 1 of 2 hash identically" — the reason the MACs bind
  // leaf_index and leaf_count. Documented here so that nobody relies on the root
  // to pin a leaf's position.
  const hash_algorithm h = hash_algorithm::sha256;
  const auto ds = digests(h, 3, "ambiguity");
  const auto t = merkle::tree::build(h, ds);
  batch_proof p = t.proof(2);
  ASSERT_EQ(p.path.size(), 1u);
  batch_proof q{1, 2, p.path};
  auto a = merkle::root_from_proof(h, ds[2], p);
  auto b = merkle::root_from_proof(h, ds[2], q);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, t.root());
  EXPECT_EQ(*b, t.root());
}

TEST(MerkleTree, RefusesImpossibleProofs) {
  const hash_algorithm h = hash_algorithm::sha256;
  const auto ds = digests(h, 5, "refuse");
  const auto t = merkle::tree::build(h, ds);
  const batch_proof good = t.proof(2);
  ASSERT_TRUE(merkle::root_from_proof(h, ds[2], good).ok());

  auto expect_invalid = [&](byte_view d, const batch_proof& p, const char* what) {
    auto r = merkle::root_from_proof(h, d, p);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.error().code(), status_code::invalid_field) << what;
  };
  expect_invalid(ds[2], batch_proof{0, 0, {}}, "leaf_count 0");
  expect_invalid(ds[2], batch_proof{5, 5, good.path}, "leaf_index == leaf_count");
  expect_invalid(ds[2], batch_proof{0xffffffffu, 5, good.path}, "leaf_index far above leaf_count");
  expect_invalid(ds[0], batch_proof{0, 1, {good.path[0]}}, "a sibling for a lone leaf");
  {
    batch_proof p = good;
    p.path[1].push_back(0);  // 33 bytes
    expect_invalid(ds[2], p, "a path element one byte long");
  }
  {
    batch_proof p = good;
    p.path[0].pop_back();
    expect_invalid(ds[2], p, "a path element one byte short");
  }
  {
    // All elements the same plausible hash size (48), as the decoder allows, but not
    // the suite hash's size.
    batch_proof p = good;
    for (auto& e : p.path) e.resize(48, 0);
    expect_invalid(ds[2], p, "path elements of another hash's size");
  }
  {
    batch_proof p = good;
    p.path[2].clear();
    expect_invalid(ds[2], p, "an empty path element");
  }
  expect_invalid(bytes(31, 0), good, "a short digest");
  expect_invalid(bytes(48, 0), good, "a digest of another hash's size");
  expect_invalid(bytes{}, good, "an empty digest");

  EXPECT_THROW((void)t.proof(5), std::out_of_range);
  EXPECT_THROW((void)merkle::tree::build(h, {}), std::invalid_argument);
  EXPECT_THROW((void)merkle::tree::build(h, {bytes(32, 1), bytes(48, 2)}), std::invalid_argument);
  EXPECT_THROW((void)merkle::tree::build(hash_algorithm::sha384, digests(h, 2)), std::invalid_argument);
}

TEST(MerkleTree, LargestShapesHaveBoundedPaths) {
  constexpr std::uint32_t kMax = 0xffffffffu;
  EXPECT_EQ(merkle::path_length(0, kMax), 32u);
  EXPECT_EQ(merkle::path_length(kMax - 1, kMax), 31u);  // promoted once, at the leaf level
  EXPECT_EQ(merkle::path_length(kMax - 2, kMax), 32u);
  EXPECT_EQ(merkle::path_length(0, 1u << 31), 31u);
  EXPECT_EQ(merkle::path_length(0, 1), 0u);
  EXPECT_EQ(merkle::path_length(0, 0), 0u);
  EXPECT_EQ(merkle::path_length(3, 3), 0u);

  const hash_algorithm h = hash_algorithm::sha256;
  const bytes d = crypto::digest(h, as_bytes("far leaf"));
  batch_proof p{kMax - 1, kMax, std::vector<bytes>(31, bytes(32, 0x11))};
  auto r = merkle::root_from_proof(h, d, p);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  // Same turns as the reference model predicts: all left siblings after the promotion.
  EXPECT_EQ(*turns(kMax - 1, kMax), std::string(31, 'L'));
  bytes expect = ref_leaf(h, d);
  for (int k = 0; k < 31; ++k) expect = ref_node(h, p.path[k], expect);
  EXPECT_EQ(*r, expect);
  p.path.push_back(bytes(32, 0x11));
  EXPECT_FALSE(merkle::root_from_proof(h, d, p).ok());
}

// The auth-part decoder (schemas/envelope.md §9) and root_from_proof must agree on
// which (leaf_index, leaf_count, path length) shapes exist: a proof the decoder
// accepts must never be refused for its shape by the verifier, and vice versa.
TEST(MerkleTree, DecoderAndVerifierAgreeOnProofShapes) {
  const hash_algorithm h = hash_algorithm::sha256;
  envelope_auth a;
  a.level = assurance::tpm_batch;
  a.key_id = bytes(kKeyIdSize, 0x07);
  a.signature = bytes(70, 0x30);
  const bytes d = crypto::digest(h, as_bytes("shape"));
  const std::vector<bytes> spare(34, bytes(32, 0x33));
  for (std::uint32_t n = 1; n <= kMaxShape; ++n) {
    SCOPED_TRACE("leaf_count " + std::to_string(n));
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::size_t len = merkle::path_length(i, n);
      for (std::uint32_t m : {n - 1, n, n + 1}) {
        for (std::uint32_t j : {i - 1, i, i + 1}) {
          for (std::size_t l : {len == 0 ? len : len - 1, len, len + 1}) {
            const auto end = spare.begin() + static_cast<std::ptrdiff_t>(l);
            a.batch = batch_proof{j, m, std::vector<bytes>(spare.begin(), end)};
            auto decoded = decode_auth_part(encode_auth_part(a));
            auto root = merkle::root_from_proof(h, d, *a.batch);
            ASSERT_EQ(decoded.ok(), root.ok())
                << "index " << j << " of " << m << ", path length " << l << ": decoder "
                << decoded.error().to_string() << ", verifier " << root.error().to_string();
            if (!decoded.ok()) {
              EXPECT_EQ(decoded.error().code(), status_code::invalid_field);
            }
          }
        }
      }
    }
    if (HasFailure()) return;
  }
}

// ---- The tpm-batch known-answer vector ----

json load_vector(const char* name) {
  std::ifstream in(std::filesystem::path(AGENTBUS_SOURCE_DIR) / "schemas" / "vectors" / name);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

bytes hex(const json& j) {
  bool ok = false;
  bytes b = from_hex(j.get<std::string>(), &ok);
  EXPECT_TRUE(ok) << j;
  return b;
}

TEST(MerkleVector, ReproducesTheBatchVectorByteForByte) {
  const json v = load_vector("ecdsa-p256-sha256-batch.json");
  const auto h = parse_hash(v["envelope_hash"].get<std::string>());
  ASSERT_TRUE(h.has_value());
  ASSERT_EQ(*h, hash_algorithm::sha256);

  std::vector<bytes> leaves;
  for (const auto& d : v["batch_leaf_digests"]) leaves.push_back(hex(d));
  const bytes digest = hex(v["digest"]);
  const bytes root = hex(v["batch_root"]);
  const auto& jb = v["auth"]["batch"];
  batch_proof vector_proof;
  vector_proof.leaf_index = jb["leaf_index"].get<std::uint32_t>();
  vector_proof.leaf_count = jb["leaf_count"].get<std::uint32_t>();
  for (const auto& e : jb["path"]) vector_proof.path.push_back(hex(e));
  ASSERT_EQ(vector_proof.leaf_count, leaves.size());
  ASSERT_EQ(leaves.at(vector_proof.leaf_index), digest);
  EXPECT_EQ(envelope_digest(*h, hex(v["signed_part"])), digest);

  // The signer's side: the tree over the batch's digests has the vector's root, and
  // the envelope's proof is the vector's, element for element.
  const auto t = merkle::tree::build(*h, leaves);
  EXPECT_EQ(to_hex(t.root()), to_hex(root));
  EXPECT_EQ(t.proof(vector_proof.leaf_index), vector_proof);

  // The verifier's side: the proof as decoded from the vector's auth part recomputes
  // the root, and the signature verifies over that root.
  auto auth = decode_auth_part(hex(v["auth_part"]));
  ASSERT_TRUE(auth.ok()) << auth.error().to_string();
  ASSERT_TRUE(auth->batch.has_value());
  EXPECT_EQ(*auth->batch, vector_proof);
  auto recomputed = merkle::root_from_proof(*h, digest, *auth->batch);
  ASSERT_TRUE(recomputed.ok()) << recomputed.error().to_string();
  EXPECT_EQ(to_hex(*recomputed), to_hex(root));

  auto key = crypto::public_key::from_pem(v["public_key_pem"].get<std::string>());
  ASSERT_TRUE(key.ok()) << key.error().to_string();
  const key_type kt{signature_scheme::ecdsa, 0, ec_curve::p256};
  EXPECT_TRUE(crypto::verify_digest(*key, kt, *h, *recomputed, auth->signature).ok());
  // Direct-mode reading of the same signature (over the digest) must fail.
  EXPECT_FALSE(crypto::verify_digest(*key, kt, *h, digest, auth->signature).ok());

  // Every other leaf of the vector's batch proves into the same root.
  for (std::uint32_t i = 0; i < t.size(); ++i) {
    auto r = merkle::root_from_proof(*h, leaves[i], t.proof(i));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, root) << "leaf " << i;
  }
}


// ---------------------------------------------------------------- verified_nodes

// Every shape up to 300 leaves: every leaf is accepted whatever the order, a leaf
// presented with another leaf's proof, a changed sibling, another leaf count and
// another digest are refused even when most of the tree is already known.
TEST(MerkleVerifiedNodes, EveryShapeAcceptsEveryLeafInAnyOrderAndRefusesForgeries) {
  const hash_algorithm h = hash_algorithm::sha256;
  for (std::uint32_t n = 1; n <= kMaxShape; ++n) {
    auto leaves = digests(h, n);
    merkle::tree t = merkle::tree::build(h, leaves);
    merkle::verified_nodes nodes(h, n, t.root());
    // Odd leaves first (descending), then even ones: joins happen at every level.
    std::vector<std::uint32_t> order;
    for (std::uint32_t i = n; i-- > 0;)
      if (i % 2 == 1) order.push_back(i);
    for (std::uint32_t i = 0; i < n; i += 2) order.push_back(i);
    for (std::size_t step = 0; step < order.size(); ++step) {
      const std::uint32_t i = order[step];
      batch_proof p = t.proof(i);
      if (n > 1) {
        // A leaf moved from its position: its digest with the neighbour's proof.
        const std::uint32_t other = (i + 1) % n;
        ASSERT_EQ(nodes.check(leaves[other], p).code(), status_code::bad_batch_proof) << n << " " << i;
        // Another digest at this position.
        ASSERT_EQ(nodes.check(digests(h, 1, "forged")[0], p).code(), status_code::bad_batch_proof) << n << " " << i;
        // A changed sibling.
        batch_proof forged = p;
        forged.path.front().back() ^= 0x01;
        ASSERT_EQ(nodes.check(leaves[i], forged).code(), status_code::bad_batch_proof) << n << " " << i;
      }
      ASSERT_TRUE(nodes.check(leaves[i], p).ok()) << n << " leaf " << i << " after " << step;
      ASSERT_TRUE(nodes.check(leaves[i], p).ok()) << "a known leaf stays accepted";
    }
  }
}

TEST(MerkleVerifiedNodes, RefusesProofsOfAnotherShapeOrSize) {
  const hash_algorithm h = hash_algorithm::sha384;
  auto leaves = digests(h, 10);
  merkle::tree t = merkle::tree::build(h, leaves);
  merkle::verified_nodes nodes(h, 10, t.root());
  batch_proof p = t.proof(3);
  batch_proof other_count = p;
  other_count.leaf_count = 11;  // same path length, another tree size
  EXPECT_EQ(nodes.check(leaves[3], other_count).code(), status_code::bad_batch_proof);
  batch_proof short_path = p;
  short_path.path.pop_back();
  EXPECT_EQ(nodes.check(leaves[3], short_path).code(), status_code::invalid_field);
  EXPECT_EQ(nodes.check(bytes(32, 0), p).code(), status_code::invalid_field) << "digest of the wrong size";
  EXPECT_TRUE(nodes.check(leaves[3], p).ok());
}

// The point of the table: in-order arrival costs about two hashes per envelope
// (counted, not timed), against ceil(log2 N) + 1 for a full path.
TEST(MerkleVerifiedNodes, InOrderArrivalHashesAboutTwicePerLeaf) {
  const hash_algorithm h = hash_algorithm::sha256;
  constexpr std::uint32_t n = 1024;
  auto leaves = digests(h, n);
  merkle::tree t = merkle::tree::build(h, leaves);
  merkle::verified_nodes nodes(h, n, t.root());
  for (std::uint32_t i = 0; i < n; ++i) ASSERT_TRUE(nodes.check(leaves[i], t.proof(i)).ok());
  EXPECT_LE(nodes.hashes_computed(), 2u * n + 10u);
  EXPECT_GE(nodes.hashes_computed(), static_cast<std::uint64_t>(n)) << "every leaf is hashed at least once";
}

}  // namespace
}  // namespace agentbus
