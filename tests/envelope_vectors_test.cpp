// envelope_vectors_test — the codec against the known-answer vectors in
// schemas/vectors/*.json, which tools/make-envelope-vectors.sh produced with an
// independent implementation (python3 stdlib + openssl CLI). Signatures are
// randomised, so they are checked by verifying, not by comparing bytes.
// Covered here: the envelope vectors (kind "envelope", with their forwarded hop
// MACs), wire-batch-mac.json and negative.json; the handshake vectors are
// tests/handshake_vectors_test.cpp's.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "agentbus/crypto.hpp"
#include "support/vector_json.hpp"
#include "agentbus/envelope.hpp"
#include "envelope/merkle.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/session_keys.hpp"

namespace agentbus {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

using testing::vectors::hash_of;
using testing::vectors::hex;
using testing::vectors::key_type_of;
using testing::vectors::load;
using testing::vectors::secret;
using testing::vectors::str;
using testing::vectors::suite_of;
using testing::vectors::vectors_dir;

std::vector<fs::path> json_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(vectors_dir()))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

// kind_of: the file's top-level "kind" ("envelope", "wire-batch-mac", "negative",
// "handshake-hop", "handshake-e2e"), or "" when it has none or does not parse
// (every_file_is_of_a_known_kind then fails; nothing throws while the tests are
// being instantiated).
std::string kind_of(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  const json j = json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("kind") || !j["kind"].is_string()) return {};
  return j["kind"].get<std::string>();
}

// vector_files: the envelope vectors, one envelope per file.
std::vector<fs::path> vector_files() {
  std::vector<fs::path> files;
  for (const auto& file : json_files())
    if (kind_of(file) == "envelope") files.push_back(file);
  return files;
}

// The suite an envelope vector names (its fields are at the vector's top level).
suite envelope_suite_of(const json& v) {
  suite s;
  s.name = v["suite"].get<std::string>();
  s.key = key_type_of(v);
  s.envelope_hash = hash_of(v["envelope_hash"]);
  s.mac_hash = hash_of(v["mac_hash"]);
  return s;
}

session::mac_key mac_key_of(const json& session_id, const json& key, hash_algorithm h) {
  return session::mac_key{hex(session_id), secret(key), h};
}

envelope_type type_of(const std::string& name) {
  if (name == "data") return envelope_type::data;
  if (name == "request") return envelope_type::request;
  if (name == "reply") return envelope_type::reply;
  if (name == "error") return envelope_type::error;
  EXPECT_EQ(name, "control");
  return envelope_type::control;
}

envelope_header header_of(const json& j) {
  envelope_header h;
  h.version = j["version"].get<std::uint32_t>();
  h.type = type_of(j["type"].get<std::string>());
  h.message_id = hex(j["message_id"]);
  h.correlation_id = hex(j["correlation_id"]);
  h.sender = j["sender"].get<std::string>();
  h.to_kind = j["to_kind"] == "topic" ? recipient_kind::topic : recipient_kind::agent;
  h.to = j["to"].get<std::string>();
  h.sequence = j["sequence"].get<std::uint64_t>();
  h.timestamp_ms = j["timestamp_ms"].get<std::uint64_t>();
  h.suite = j["suite"].get<std::string>();
  h.content_type = j["content_type"].get<std::string>();
  for (const auto& kv : j["headers"]) h.headers.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());
  h.payload = hex(j["payload"]);
  return h;
}

envelope_auth auth_of(const json& j) {
  envelope_auth a;
  a.version = j["version"].get<std::uint32_t>();
  a.level = parse_assurance(j["assurance"].get<std::string>()).value();
  a.key_id = hex(j["key_id"]);
  a.signature = hex(j["signature"]);
  if (!j["batch"].is_null()) {
    batch_proof p;
    p.leaf_index = j["batch"]["leaf_index"].get<std::uint32_t>();
    p.leaf_count = j["batch"]["leaf_count"].get<std::uint32_t>();
    for (const auto& node : j["batch"]["path"]) p.path.push_back(hex(node));
    a.batch = p;
  }
  if (!j["hop_mac"].is_null()) a.hop_mac = session_mac{"", hex(j["hop_mac"]["session_id"]), hex(j["hop_mac"]["tag"])};
  for (const auto& m : j["e2e_macs"])
    a.e2e_macs.push_back(session_mac{m["recipient"].get<std::string>(), hex(m["session_id"]), hex(m["tag"])});
  return a;
}

// merkle_root follows schemas/envelope.md "Batch proofs": leaf = H(0x00||digest),
// node = H(0x01||left||right), an odd last node promoted unchanged.
bytes merkle_root(hash_algorithm h, byte_view digest, const batch_proof& proof) {
  auto hash_of_parts = [h](std::uint8_t tag, byte_view a, byte_view b) {
    bytes in{tag};
    in.insert(in.end(), a.begin(), a.end());
    in.insert(in.end(), b.begin(), b.end());
    return crypto::digest(h, in);
  };
  bytes node = hash_of_parts(0x00, digest, {});
  std::uint64_t index = proof.leaf_index;
  std::uint64_t count = proof.leaf_count;
  std::size_t k = 0;
  while (count > 1) {
    if (index % 2 == 1) {
      if (k >= proof.path.size()) return {};
      node = hash_of_parts(0x01, proof.path[k++], node);
    } else if (index + 1 < count) {
      if (k >= proof.path.size()) return {};
      node = hash_of_parts(0x01, node, proof.path[k++]);
    }
    index /= 2;
    count = (count + 1) / 2;
  }
  if (k != proof.path.size()) return {};
  return node;
}

class envelope_vector : public ::testing::TestWithParam<fs::path> {};

TEST(envelope_vectors, every_file_is_of_a_known_kind) {
  const std::set<std::string> kinds{"envelope", "wire-batch-mac", "negative", "handshake-hop", "handshake-e2e"};
  std::set<std::string> seen;
  for (const auto& file : json_files()) {
    const std::string k = kind_of(file);
    EXPECT_TRUE(kinds.count(k)) << file << ": kind \"" << k << "\" (a file no test reads)";
    seen.insert(k);
  }
  for (const auto& k : kinds) EXPECT_TRUE(seen.count(k)) << "no vector of kind " << k;
}

TEST(envelope_vectors, every_required_suite_has_a_vector) {
  std::set<std::string> suites;
  for (const auto& file : vector_files()) suites.insert(load(file)["suite"].get<std::string>());
  for (const char* s : {"ecdsa-p256-sha256", "ecdsa-p384-sha3-384", "rsa3072-pss-sha384", "ecdsa-p256-sha3-256"})
    EXPECT_TRUE(suites.count(s)) << "no vector for " << s;
}

TEST(envelope_vectors, every_signature_type_has_a_batch_vector) {
  std::set<std::string> suites;
  for (const auto& file : vector_files()) {
    const json v = load(file);
    if (v["auth"]["assurance"] == "tpm-batch") suites.insert(v["suite"].get<std::string>());
  }
  for (const char* s : {"ecdsa-p256-sha256", "ecdsa-p384-sha3-384", "rsa3072-pss-sha384"})
    EXPECT_TRUE(suites.count(s)) << "no tpm-batch vector for " << s;
}

TEST_P(envelope_vector, matches_known_answers) {
  const json v = load(GetParam());
  SCOPED_TRACE(v["name"].get<std::string>());
  const hash_algorithm eh = hash_of(v["envelope_hash"]);
  const hash_algorithm mh = hash_of(v["mac_hash"]);

  // Signed part: decode gives the stated fields, encode gives the bytes back.
  const bytes signed_part = hex(v["signed_part"]);
  const envelope_header expected_header = header_of(v["header"]);
  auto header = decode_signed_part(signed_part);
  ASSERT_TRUE(header.ok()) << header.error().to_string();
  EXPECT_EQ(*header, expected_header);
  EXPECT_EQ(to_hex(encode_signed_part(expected_header)), to_hex(signed_part));

  // Digest over the bytes as sent.
  const bytes digest = envelope_digest(eh, signed_part);
  EXPECT_EQ(to_hex(digest), v["digest"].get<std::string>());

  // Auth part: decode gives the stated fields, encode gives the bytes back.
  const bytes auth_part = hex(v["auth_part"]);
  const envelope_auth expected_auth = auth_of(v["auth"]);
  auto auth = decode_auth_part(auth_part);
  ASSERT_TRUE(auth.ok()) << auth.error().to_string();
  EXPECT_EQ(*auth, expected_auth);
  EXPECT_EQ(to_hex(encode_auth_part(expected_auth)), to_hex(auth_part));

  // Signature: over the digest (direct) or over the Merkle root (tpm-batch).
  auto key = crypto::public_key::from_pem(v["public_key_pem"].get<std::string>());
  ASSERT_TRUE(key.ok()) << key.error().to_string();
  EXPECT_EQ(to_hex(key->fingerprint()), to_hex(auth->key_id));
  bytes signed_value = digest;
  if (auth->level == assurance::tpm_batch) {
    ASSERT_TRUE(auth->batch.has_value());
    signed_value = merkle_root(eh, digest, *auth->batch);
    EXPECT_EQ(to_hex(signed_value), v["batch_root"].get<std::string>());
    const auto& leaves = v["batch_leaf_digests"];
    EXPECT_EQ(leaves.at(auth->batch->leaf_index).get<std::string>(), to_hex(digest));
    // The signer's side: the tree over the batch's digests has the vector's root and
    // gives this envelope the vector's proof.
    std::vector<bytes> leaf_digests;
    for (const auto& d : leaves) leaf_digests.push_back(hex(d));
    ASSERT_EQ(leaf_digests.size(), std::size_t{auth->batch->leaf_count});
    const merkle::tree batch_tree = merkle::tree::build(eh, leaf_digests);
    EXPECT_EQ(to_hex(batch_tree.root()), v["batch_root"].get<std::string>());
    EXPECT_EQ(batch_tree.proof(auth->batch->leaf_index), *auth->batch);
    auto recomputed = merkle::root_from_proof(eh, digest, *auth->batch);
    ASSERT_TRUE(recomputed.ok()) << recomputed.error().to_string();
    EXPECT_EQ(to_hex(*recomputed), v["batch_root"].get<std::string>());
  } else {
    EXPECT_FALSE(auth->batch.has_value());
  }
  const key_type kt = key_type_of(v);
  status verified = crypto::verify_digest(*key, kt, eh, signed_value, auth->signature);
  EXPECT_TRUE(verified.ok()) << verified.to_string();
  // The verifier's signature step (direct or tpm-batch), without and with a root cache.
  const suite sender_suite = envelope_suite_of(v);
  status by_verifier = session::verify_envelope_signature(*key, sender_suite, digest, *auth, nullptr);
  EXPECT_TRUE(by_verifier.ok()) << by_verifier.to_string();
  session::root_cache cache;
  for (int round = 0; round < 2; ++round) {
    status cached = session::verify_envelope_signature(*key, sender_suite, digest, *auth, &cache);
    EXPECT_TRUE(cached.ok()) << "round " << round << ": " << cached.to_string();
  }

  // A flipped byte anywhere in the signature or the signed value fails.
  for (std::size_t i : {std::size_t{0}, auth->signature.size() / 2, auth->signature.size() - 1}) {
    bytes bad = auth->signature;
    bad[i] ^= 0x01;
    EXPECT_FALSE(crypto::verify_digest(*key, kt, eh, signed_value, bad).ok()) << "signature byte " << i;
  }
  bytes bad_value = signed_value;
  bad_value[bad_value.size() / 2] ^= 0x80;
  EXPECT_EQ(crypto::verify_digest(*key, kt, eh, bad_value, auth->signature).code(), status_code::bad_signature);

  // Hop MAC: the input and the tag recompute equal, and the decoded tag verifies.
  const json& hop = v["hop_mac"];
  const bytes hop_in = hop_mac_input(digest, *auth);
  EXPECT_EQ(to_hex(hop_in), hop["input"].get<std::string>());
  EXPECT_EQ(to_hex(crypto::hmac(mh, hex(hop["key"]), hop_in)), hop["tag"].get<std::string>());
  ASSERT_TRUE(auth->hop_mac.has_value());
  EXPECT_EQ(to_hex(auth->hop_mac->session_id), hop["session_id"].get<std::string>());
  EXPECT_TRUE(crypto::verify_hmac(mh, hex(hop["key"]), hop_in, auth->hop_mac->tag).ok());

  // End-to-end MACs, one per recipient.
  const json& e2e = v["e2e_macs"];
  ASSERT_EQ(e2e.size(), auth->e2e_macs.size());
  for (std::size_t i = 0; i < e2e.size(); ++i) {
    const std::string recipient = e2e[i]["recipient"].get<std::string>();
    SCOPED_TRACE(recipient);
    const bytes in = e2e_mac_input(digest, *auth, recipient);
    EXPECT_EQ(to_hex(in), e2e[i]["input"].get<std::string>());
    EXPECT_EQ(to_hex(crypto::hmac(mh, hex(e2e[i]["key"]), in)), e2e[i]["tag"].get<std::string>());
    EXPECT_EQ(auth->e2e_macs[i].recipient, recipient);
    EXPECT_TRUE(crypto::verify_hmac(mh, hex(e2e[i]["key"]), in, auth->e2e_macs[i].tag).ok());
    // Another recipient's key does not verify this recipient's MAC.
    EXPECT_EQ(crypto::verify_hmac(mh, hex(hop["key"]), in, auth->e2e_macs[i].tag).code(), status_code::bad_mac);
  }

  // Forwarded: the broker re-MACs the envelope for each recipient under the
  // recipient's hop key and with the recipient's MAC hash, over the same
  // hop_mac_input, whose digest stays the sender's (schemas/envelope.md §8).
  for (const auto& f : v["forwarded_hop_macs"]) {
    const std::string recipient = str(f["recipient"]);
    SCOPED_TRACE("forwarded to " + recipient);
    const hash_algorithm rh = hash_of(f["mac_hash"]);
    EXPECT_EQ(str(f["input"]), to_hex(hop_in)) << "the input is the sender's hop_mac_input";
    EXPECT_EQ(to_hex(crypto::hmac(rh, hex(f["key"]), hop_in)), str(f["tag"]));
    const bytes tag = session::hop_tag(mac_key_of(f["session_id"], f["key"], rh), digest, *auth);
    EXPECT_EQ(to_hex(tag), str(f["tag"]));
    EXPECT_EQ(tag.size(), hash_size(rh));
    // The forwarded auth part: the sender's, with this hop MAC in place of its own.
    const session_mac forwarded_mac{"", hex(f["session_id"]), tag};
    EXPECT_EQ(to_hex(encode_auth_part(*auth, &forwarded_mac)), str(f["auth_part"]));
    auto forwarded = decode_auth_part(hex(f["auth_part"]));
    ASSERT_TRUE(forwarded.ok()) << forwarded.error().to_string();
    ASSERT_TRUE(forwarded->hop_mac.has_value());
    EXPECT_EQ(*forwarded->hop_mac, forwarded_mac);
    envelope_auth rest = *forwarded;
    rest.hop_mac = auth->hop_mac;
    EXPECT_EQ(rest, *auth);
    // The recipient's hop session accepts it; the sender's hop key does not.
    session::session_state recipient_hop;
    recipient_hop.install(mac_key_of(f["session_id"], f["key"], rh), mac_key_of(f["session_id"], f["key"], rh),
                          std::chrono::seconds(1));
    status hop_ok = session::verify_hop_mac(recipient_hop, digest, *forwarded);
    EXPECT_TRUE(hop_ok.ok()) << hop_ok.to_string();
    EXPECT_EQ(crypto::verify_hmac(mh, hex(hop["key"]), hop_in, tag).code(), status_code::bad_mac);
  }
}

TEST_P(envelope_vector, private_key_signs_what_the_public_key_verifies) {
  // The committed pair belongs together, and a fresh signature made as the vector
  // says (ECDSA over the digest; RSA-PSS with salt = digest length, MGF1 with the
  // same hash) verifies, so a third party can sign new envelopes with these keys.
  const json v = load(GetParam());
  SCOPED_TRACE(v["name"].get<std::string>());
  const std::string pem = v["private_key_pem"].get<std::string>();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  ASSERT_TRUE(bio);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> priv(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr),
                                                          EVP_PKEY_free);
  ASSERT_TRUE(priv);
  auto pub = crypto::public_key::from_pem(v["public_key_pem"].get<std::string>());
  ASSERT_TRUE(pub.ok());
  unsigned char* der = nullptr;
  int der_len = i2d_PUBKEY(priv.get(), &der);
  ASSERT_GT(der_len, 0);
  bytes derived(der, der + der_len);
  OPENSSL_free(der);
  EXPECT_EQ(to_hex(derived), to_hex(pub->der()));

  const hash_algorithm eh = hash_of(v["envelope_hash"]);
  const bytes digest = hex(v["digest"]);
  const EVP_MD* md = EVP_get_digestbyname(std::string(hash_name(eh)).c_str());
  ASSERT_NE(md, nullptr);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(priv.get(), nullptr),
                                                                  EVP_PKEY_CTX_free);
  ASSERT_TRUE(ctx);
  ASSERT_EQ(EVP_PKEY_sign_init(ctx.get()), 1);
  if (v["signature_scheme"] == "rsa-pss") {
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_signature_md(ctx.get(), md), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST), 1);
  }
  std::size_t sig_len = 0;
  ASSERT_EQ(EVP_PKEY_sign(ctx.get(), nullptr, &sig_len, digest.data(), digest.size()), 1);
  bytes sig(sig_len);
  ASSERT_EQ(EVP_PKEY_sign(ctx.get(), sig.data(), &sig_len, digest.data(), digest.size()), 1);
  sig.resize(sig_len);
  status verified = crypto::verify_digest(*pub, key_type_of(v), eh, digest, sig);
  EXPECT_TRUE(verified.ok()) << verified.to_string();
}

// ---- wire-batch-mac.json: one MAC over the members' hop_mac_inputs (envelope.md §7.3, §8) ----

TEST(wire_batch_vector, reproduces_the_batch_mac_of_each_hop) {
  const json v = load(vectors_dir() / "wire-batch-mac.json");
  ASSERT_EQ(str(v["kind"]), "wire-batch-mac");
  const suite sender_suite = suite_of(v["suite"]);
  auto key = crypto::public_key::from_pem(str(v["public_key_pem"]));
  ASSERT_TRUE(key.ok()) << key.error().to_string();
  const json& members = v["members"];
  ASSERT_EQ(members.size(), 3u);

  std::vector<bytes> signed_parts, auth_parts, digests;
  std::vector<envelope_auth> auths;
  session::root_cache cache;
  for (std::size_t i = 0; i < members.size(); ++i) {
    SCOPED_TRACE("member " + std::to_string(i));
    const json& m = members[i];
    const bytes signed_part = hex(m["signed_part"]);
    auto header = decode_signed_part(signed_part);
    ASSERT_TRUE(header.ok()) << header.error().to_string();
    EXPECT_EQ(*header, header_of(m["header"]));
    EXPECT_EQ(header->sender, str(v["sender"])) << "one sender for the whole wire batch";
    EXPECT_EQ(header->suite, sender_suite.name) << "each member declares the sender role's suite";
    const bytes digest = envelope_digest(sender_suite.envelope_hash, signed_part);
    EXPECT_EQ(to_hex(digest), str(m["digest"]));
    const bytes auth_part = hex(m["auth_part"]);
    auto auth = decode_auth_part(auth_part);
    ASSERT_TRUE(auth.ok()) << auth.error().to_string();
    EXPECT_EQ(*auth, auth_of(m["auth"]));
    EXPECT_EQ(to_hex(encode_auth_part(*auth)), to_hex(auth_part));
    EXPECT_FALSE(auth->hop_mac.has_value()) << "a wire batch member carries no hop MAC";
    EXPECT_EQ(to_hex(hop_mac_input(digest, *auth)), str(m["hop_mac_input"]));
    // The members are the leaves of one tpm-batch signature.
    ASSERT_TRUE(auth->batch.has_value());
    EXPECT_EQ(auth->batch->leaf_index, i);
    auto root = merkle::root_from_proof(sender_suite.envelope_hash, digest, *auth->batch);
    ASSERT_TRUE(root.ok()) << root.error().to_string();
    EXPECT_EQ(to_hex(*root), str(v["batch_root"]));
    status signature = session::verify_envelope_signature(*key, sender_suite, digest, *auth, nullptr);
    EXPECT_TRUE(signature.ok()) << signature.to_string();
    status cached = session::verify_envelope_signature(*key, sender_suite, digest, *auth, &cache);
    EXPECT_TRUE(cached.ok()) << cached.to_string();
    // End-to-end MACs are per envelope, with the sender's MAC hash.
    ASSERT_EQ(auth->e2e_macs.size(), m["e2e_macs"].size());
    for (std::size_t k = 0; k < auth->e2e_macs.size(); ++k) {
      const json& e = m["e2e_macs"][k];
      const bytes in = e2e_mac_input(digest, *auth, str(e["recipient"]));
      EXPECT_EQ(to_hex(in), str(e["input"]));
      EXPECT_EQ(to_hex(crypto::hmac(sender_suite.mac_hash, hex(e["key"]), in)), str(e["tag"]));
      EXPECT_EQ(to_hex(auth->e2e_macs[k].tag), str(e["tag"]));
    }
    signed_parts.push_back(signed_part);
    auth_parts.push_back(auth_part);
    digests.push_back(digest);
    auths.push_back(std::move(auth).value());
  }
  if (HasFatalFailure()) return;

  std::vector<wire_batch_item> items;
  for (std::size_t i = 0; i < auths.size(); ++i) items.push_back(wire_batch_item{byte_view(digests[i]), &auths[i]});
  const bytes input = wire_batch_mac_input(items);
  EXPECT_EQ(to_hex(input), str(v["input"]));
  bytes pieces;
  wire_batch_mac_input_pieces(items, [&](byte_view p) { pieces.insert(pieces.end(), p.begin(), p.end()); });
  EXPECT_EQ(to_hex(pieces), to_hex(input));

  const json& hops = v["hops"];
  ASSERT_EQ(hops.size(), 2u);
  std::set<std::string> hashes;
  for (const auto& hop : hops) {
    SCOPED_TRACE(str(hop["direction"]));
    const hash_algorithm h = hash_of(hop["mac_hash"]);
    hashes.insert(str(hop["mac_hash"]));
    const bytes tag = hex(hop["tag"]);
    EXPECT_EQ(tag.size(), hash_size(h));
    EXPECT_EQ(to_hex(crypto::hmac(h, hex(hop["key"]), input)), str(hop["tag"]));
    EXPECT_EQ(to_hex(session::wire_batch_tag(mac_key_of(hop["session_id"], hop["key"], h), items)), str(hop["tag"]));
    session::session_state receiver;
    receiver.install(mac_key_of(hop["session_id"], hop["key"], h), mac_key_of(hop["session_id"], hop["key"], h),
                     std::chrono::seconds(1));
    status batch_mac = session::verify_wire_batch_mac(receiver, hex(hop["session_id"]), items, tag);
    EXPECT_TRUE(batch_mac.ok()) << batch_mac.to_string();
    // Reordered members: another input, the same tag fails.
    std::vector<wire_batch_item> swapped = items;
    std::swap(swapped[0], swapped[1]);
    EXPECT_EQ(session::verify_wire_batch_mac(receiver, hex(hop["session_id"]), swapped, tag).code(), status_code::bad_mac);

    // The message: "BATCH", session id, tag, then (signed part, auth part) per member.
    const json& frames = hop["frames"];
    ASSERT_EQ(frames.size(), 3 + 2 * members.size());
    EXPECT_EQ(str(frames[0]), to_hex(as_bytes(session::frame::kWireBatch)));
    EXPECT_EQ(str(frames[1]), str(hop["session_id"]));
    EXPECT_EQ(str(frames[2]), str(hop["tag"]));
    std::vector<bytes> envelope_frames;
    for (std::size_t i = 3; i < frames.size(); ++i) envelope_frames.push_back(hex(frames[i]));
    for (std::size_t i = 0; i < signed_parts.size(); ++i) {
      EXPECT_EQ(to_hex(envelope_frames[2 * i]), to_hex(signed_parts[i]));
      EXPECT_EQ(to_hex(envelope_frames[2 * i + 1]), to_hex(auth_parts[i]));
    }
    status shape = session::check_wire_batch_shape(envelope_frames, std::size_t{1} << 20);
    EXPECT_TRUE(shape.ok()) << shape.to_string();
  }
  EXPECT_EQ(hashes.size(), 2u) << "the two hops use different MAC hashes";
}

// ---- negative.json: what a decoder or verifier refuses, and with which code (envelope.md §7, §9) ----

TEST(negative_vectors, each_case_is_refused_with_its_code) {
  const json v = load(vectors_dir() / "negative.json");
  ASSERT_EQ(str(v["kind"]), "negative");
  const suite base_suite = suite_of(v["suite"]);
  auto base_key = crypto::public_key::from_pem(str(v["public_key_pem"]));
  ASSERT_TRUE(base_key.ok()) << base_key.error().to_string();

  // The bases the cases were derived from are valid.
  for (const char* base : {"direct", "batch"}) {
    SCOPED_TRACE(std::string("base ") + base);
    const json& b = v["bases"][base];
    const bytes signed_part = hex(b["signed_part"]);
    auto header = decode_signed_part(signed_part);
    ASSERT_TRUE(header.ok()) << header.error().to_string();
    auto auth = decode_auth_part(hex(b["auth_part"]));
    ASSERT_TRUE(auth.ok()) << auth.error().to_string();
    const bytes digest = envelope_digest(base_suite.envelope_hash, signed_part);
    EXPECT_EQ(to_hex(digest), str(b["digest"]));
    status st = session::verify_envelope_signature(*base_key, base_suite, digest, *auth, nullptr);
    EXPECT_TRUE(st.ok()) << st.to_string();
  }

  std::set<int> codes;
  std::set<std::string> steps, names;
  for (const auto& c : v["cases"]) {
    const std::string name = str(c["name"]);
    SCOPED_TRACE(name + ": " + str(c["description"]));
    EXPECT_TRUE(names.insert(name).second) << "case name used twice";
    const std::string step = str(c["step"]);
    steps.insert(step);
    const int want = c["expected"]["code"].get<int>();
    codes.insert(want);
    // The number and the name agree (agentbus/status.hpp).
    EXPECT_EQ(std::string(status_code_name(static_cast<status_code>(want))), str(c["expected"]["name"]));

    const bytes signed_part = hex(c["signed_part"]);
    const bytes auth_part = hex(c["auth_part"]);
    auto header = decode_signed_part(signed_part);
    if (step == "decode_signed_part") {
      EXPECT_FALSE(header.ok()) << "the signed part decodes";
      EXPECT_EQ(static_cast<int>(header.error().code()), want) << header.error().to_string();
      auto auth = decode_auth_part(auth_part);
      EXPECT_TRUE(auth.ok()) << "only the signed part is at fault: " << auth.error().to_string();
      continue;
    }
    if (!header.ok()) {
      ADD_FAILURE() << "only the " << step << " step should fail: " << header.error().to_string();
      continue;
    }
    auto auth = decode_auth_part(auth_part);
    if (step == "decode_auth_part") {
      EXPECT_FALSE(auth.ok()) << "the auth part decodes";
      EXPECT_EQ(static_cast<int>(auth.error().code()), want) << auth.error().to_string();
      continue;
    }
    if (step != "verify_signature") {
      ADD_FAILURE() << "unknown step " << step;
      continue;
    }
    if (!auth.ok()) {
      ADD_FAILURE() << "only the signature should fail: " << auth.error().to_string();
      continue;
    }
    const suite case_suite = suite_of(c["suite"]);
    auto key = crypto::public_key::from_pem(str(c["public_key_pem"]));
    ASSERT_TRUE(key.ok()) << key.error().to_string();
    const bytes digest = envelope_digest(case_suite.envelope_hash, signed_part);
    EXPECT_EQ(to_hex(digest), str(c["digest"]));
    // A verifier without a root cache.
    status st = session::verify_envelope_signature(*key, case_suite, digest, *auth, nullptr);
    EXPECT_EQ(static_cast<int>(st.code()), want) << st.to_string();
    if (c.contains("expected_with_cache")) {
      // A verifier that has verified the base envelope's batch signature before.
      const json& b = v["bases"][str(c["base"])];
      auto base_auth = decode_auth_part(hex(b["auth_part"]));
      ASSERT_TRUE(base_auth.ok()) << base_auth.error().to_string();
      session::root_cache cache;
      status first = session::verify_envelope_signature(*key, case_suite, hex(b["digest"]), *base_auth, &cache);
      ASSERT_TRUE(first.ok()) << first.to_string();
      const int want_cached = c["expected_with_cache"]["code"].get<int>();
      EXPECT_EQ(std::string(status_code_name(static_cast<status_code>(want_cached))),
                str(c["expected_with_cache"]["name"]));
      status again = session::verify_envelope_signature(*key, case_suite, digest, *auth, &cache);
      EXPECT_EQ(static_cast<int>(again.code()), want_cached) << again.to_string();
    }
  }
  EXPECT_EQ(steps, (std::set<std::string>{"decode_signed_part", "decode_auth_part", "verify_signature"}));
  for (int code : {100, 101, 102, 103, 104, 105, 106, 300, 305})
    EXPECT_TRUE(codes.count(code)) << "no negative case with code " << code;
}

std::string vector_name(const ::testing::TestParamInfo<fs::path>& info) {
  std::string name = info.param.stem().string();
  std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(schemas, envelope_vector, ::testing::ValuesIn(vector_files()), vector_name);

}  // namespace
}  // namespace agentbus
