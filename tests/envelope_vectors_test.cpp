// envelope_vectors_test — the codec against the known-answer vectors in
// schemas/vectors/*.json, which tools/make-envelope-vectors.sh produced with an
// independent implementation (python3 stdlib + openssl CLI). Signatures are
// randomised, so they are checked by verifying, not by comparing bytes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"

namespace agentbus {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

fs::path vectors_dir() { return fs::path(AGENTBUS_SOURCE_DIR) / "schemas" / "vectors"; }

std::vector<fs::path> vector_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(vectors_dir()))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

json load(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

bytes hex(const json& j) {
  bool ok = false;
  bytes b = from_hex(j.get<std::string>(), &ok);
  EXPECT_TRUE(ok) << "bad hex in vector: " << j;
  return b;
}

hash_algorithm hash_of(const json& j) {
  auto h = parse_hash(j.get<std::string>());
  EXPECT_TRUE(h.has_value()) << j;
  return h.value_or(hash_algorithm::sha256);
}

key_type key_type_of(const json& v) {
  key_type t;
  if (v["signature_scheme"] == "rsa-pss") {
    t.scheme = signature_scheme::rsa_pss;
    t.rsa_bits = v["rsa_bits"].get<unsigned>();
  } else {
    t.scheme = signature_scheme::ecdsa;
    t.curve = parse_curve(v["curve"].get<std::string>()).value_or(ec_curve::p256);
  }
  return t;
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

TEST(envelope_vectors, every_required_suite_has_a_vector) {
  std::set<std::string> suites;
  for (const auto& file : vector_files()) suites.insert(load(file)["suite"].get<std::string>());
  for (const char* s : {"ecdsa-p256-sha256", "ecdsa-p384-sha3-384", "rsa3072-pss-sha384", "ecdsa-p256-sha3-256"})
    EXPECT_TRUE(suites.count(s)) << "no vector for " << s;
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
  } else {
    EXPECT_FALSE(auth->batch.has_value());
  }
  const key_type kt = key_type_of(v);
  status verified = crypto::verify_digest(*key, kt, eh, signed_value, auth->signature);
  EXPECT_TRUE(verified.ok()) << verified.to_string();

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

std::string vector_name(const ::testing::TestParamInfo<fs::path>& info) {
  std::string name = info.param.stem().string();
  std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(schemas, envelope_vector, ::testing::ValuesIn(vector_files()), vector_name);

}  // namespace
}  // namespace agentbus
