// handshake_vectors_test — the handshakes of schemas/protocol.md against the
// known-answer vectors schemas/vectors/handshake-hop.json (enrolment, §3) and
// handshake-e2e.json (agent↔agent session, §4), which tools/make-envelope-vectors.sh
// produced with an independent implementation (python3 stdlib + openssl CLI).
// Signatures are randomised and checked by verifying; every other value (bodies,
// transcripts, ECDH shares, the key schedule, WELCOME's tag) by comparing bytes.
// The ECDH shares are taken from the vector as secret_bytes (a TPM computes the
// static ones in the bus) and are also recomputed here from the vector's keys.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/crypto.hpp"
#include "support/vector_json.hpp"
#include "agentbus/envelope.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/key_agreement.hpp"
#include "session/session_keys.hpp"

namespace agentbus {
namespace {

using json = nlohmann::json;

json load(const char* name) { return testing::vectors::load(testing::vectors::vectors_dir() / name); }

using testing::vectors::hash_of;
using testing::vectors::hex;
using testing::vectors::secret;
using testing::vectors::str;
using testing::vectors::suite_of;

// openssl_ecdh: x(d_mine × Q_peer) with OpenSSL directly, from the vector's PEM
// keys (libagentbus holds ephemeral private keys only as keys it generated).
bytes openssl_ecdh(const std::string& private_pem, const std::string& peer_public_pem) {
  using bio_ptr = std::unique_ptr<BIO, decltype(&BIO_free)>;
  using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
  bio_ptr priv_bio(BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())), BIO_free);
  bio_ptr pub_bio(BIO_new_mem_buf(peer_public_pem.data(), static_cast<int>(peer_public_pem.size())), BIO_free);
  if (!priv_bio || !pub_bio) return {};
  pkey_ptr mine(PEM_read_bio_PrivateKey(priv_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  pkey_ptr peer(PEM_read_bio_PUBKEY(pub_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!mine || !peer) return {};
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(mine.get(), nullptr),
                                                                  EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) return {};
  std::size_t len = 0;
  if (EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) return {};
  bytes out(len);
  if (EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1) return {};
  out.resize(len);
  return out;
}

// expect_share: `want` is the share each side computes (a's private key with b's
// public key, and b's with a's).
void expect_share(const json& a, const json& b, const json& want, const char* what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(to_hex(openssl_ecdh(str(a["private_key_pem"]), str(b["public_key_pem"]))), str(want));
  EXPECT_EQ(to_hex(openssl_ecdh(str(b["private_key_pem"]), str(a["public_key_pem"]))), str(want));
}

// A key object of the vectors: its PEM and its DER are the same key.
void expect_key_consistent(const json& k) {
  auto pub = crypto::public_key::from_pem(str(k["public_key_pem"]));
  ASSERT_TRUE(pub.ok()) << pub.error().to_string();
  EXPECT_EQ(to_hex(pub->der()), str(k["der"]));
}

// info(t) of the key schedule, built here from its definition (protocol.md §3.4, §4.3).
bytes info_of(std::string_view label, std::string_view initiator, std::string_view responder, byte_view th,
              std::string_view t) {
  bytes out;
  const std::string prefix = "agentbus-v1 " + std::string(label);
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.push_back(0x00);
  out.push_back(static_cast<std::uint8_t>(initiator.size()));
  out.insert(out.end(), initiator.begin(), initiator.end());
  out.push_back(static_cast<std::uint8_t>(responder.size()));
  out.insert(out.end(), responder.begin(), responder.end());
  out.insert(out.end(), th.begin(), th.end());
  out.insert(out.end(), t.begin(), t.end());
  return out;
}

bytes concat(std::initializer_list<byte_view> parts) {
  bytes out;
  for (byte_view p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// ---------------------------------------------------------------- hop (§3)

TEST(handshake_vectors, hop_enrolment_transcripts_signatures_and_key_schedule) {
  const json v = load("handshake-hop.json");
  ASSERT_EQ(str(v["kind"]), "handshake-hop");
  const json& agent = v["agent"];
  const json& broker = v["broker"];
  const suite agent_suite = suite_of(agent["suite"]);
  const suite broker_suite = suite_of(broker["identity_suite"]);
  for (const json* k : {&agent["identity"], &agent["ephemeral"], &agent["static_ecdh"], &broker["identity"],
                        &broker["ephemeral"], &broker["static_ecdh"]})
    ASSERT_NO_FATAL_FAILURE(expect_key_consistent(*k));

  // HELLO: decodes to the stated fields and re-encodes to the same bytes.
  const bytes hello_body = hex(v["hello"]["body"]);
  auto hello = session::decode_hello(hello_body);
  ASSERT_TRUE(hello.ok()) << hello.error().to_string();
  const json& hf = v["hello"]["fields"];
  EXPECT_EQ(hf["version"].get<int>(), 3);
  EXPECT_EQ(hello->name, str(hf["name"]));
  EXPECT_EQ(hello->name, str(agent["name"]));
  EXPECT_EQ(hello->role, str(hf["role"]));
  EXPECT_EQ(hello->suite, str(hf["suite"]));
  EXPECT_EQ(hello->suite, agent_suite.name);
  EXPECT_EQ(std::string(protection_name(hello->key_protection)), str(hf["protection"]));
  EXPECT_EQ(to_hex(hello->identity_der), str(hf["identity"]));
  EXPECT_EQ(to_hex(hello->identity_der), str(agent["identity"]["der"]));
  EXPECT_EQ(hello->tpm_manufacturer, str(hf["tpm_manufacturer"]));
  EXPECT_EQ(hello->tpm_simulator, hf["tpm_simulator"].get<int>() == 1);
  EXPECT_EQ(to_hex(hello->ephemeral_der), str(hf["ephemeral"]));
  EXPECT_EQ(to_hex(hello->ephemeral_der), str(agent["ephemeral"]["der"]));
  EXPECT_EQ(to_hex(hello->static_ecdh_der), str(hf["static_ecdh"]));
  EXPECT_EQ(to_hex(hello->static_ecdh_der), str(agent["static_ecdh"]["der"]));
  EXPECT_EQ(to_hex(hello->nonce), str(hf["nonce"]));
  EXPECT_EQ(to_hex(hello->cookie), str(hf["cookie"]));
  EXPECT_EQ(to_hex(hello->possession), str(hf["possession"]));
  EXPECT_EQ(to_hex(hello->token_proof), str(hf["token_proof"]));
  EXPECT_EQ(to_hex(session::encode(*hello)), to_hex(hello_body));

  // HU (fields 0-12), T_h and the possession signature over H_env(T_h); the token
  // proof keyed with the token's SHA-256.
  const bytes hello_unsigned = session::encode(*hello, false);
  EXPECT_EQ(to_hex(hello_unsigned), str(v["hello"]["unsigned_body"]));
  const bytes t_h = session::hello_transcript(hello_unsigned);
  EXPECT_EQ(to_hex(t_h), str(v["hello"]["t_h"]));
  const bytes t_h_digest = crypto::digest(agent_suite.envelope_hash, t_h);
  EXPECT_EQ(to_hex(t_h_digest), str(v["hello"]["t_h_digest"]));
  {
    auto k = crypto::public_key::from_der(hello->identity_der);
    ASSERT_TRUE(k.ok());
    status possession = crypto::verify_digest(*k, agent_suite.key, agent_suite.envelope_hash, t_h_digest, hello->possession);
    EXPECT_TRUE(possession.ok()) << possession.to_string();
  }
  const bytes token = hex(v["proof"]["token"]["token"]);
  EXPECT_EQ(to_hex(crypto::digest(hash_algorithm::sha256, token)), str(v["hello"]["token_hash"]));
  EXPECT_EQ(to_hex(session::hello_token_proof(crypto::digest(hash_algorithm::sha256, token), hello_unsigned)),
            str(hf["token_proof"]));

  // CHALLENGE: the same, and CU (fields 0-6) is the re-encoding without field 7.
  const bytes challenge_body = hex(v["challenge"]["body"]);
  auto challenge = session::decode_challenge(challenge_body);
  ASSERT_TRUE(challenge.ok()) << challenge.error().to_string();
  const json& cf = v["challenge"]["fields"];
  EXPECT_EQ(to_hex(challenge->nonce), str(cf["nonce"]));
  EXPECT_EQ(to_hex(challenge->ephemeral_der), str(cf["ephemeral"]));
  EXPECT_EQ(to_hex(challenge->ephemeral_der), str(broker["ephemeral"]["der"]));
  EXPECT_EQ(to_hex(challenge->static_ecdh_der), str(cf["static_ecdh"]));
  EXPECT_EQ(to_hex(challenge->static_ecdh_der), str(broker["static_ecdh"]["der"]));
  EXPECT_EQ(challenge->broker_name, str(cf["broker_name"]));
  EXPECT_EQ(challenge->broker_name, str(broker["name"]));
  EXPECT_EQ(to_hex(challenge->broker_identity_der), str(cf["broker_identity"]));
  EXPECT_EQ(to_hex(challenge->broker_identity_der), str(broker["identity"]["der"]));
  EXPECT_EQ(std::string(hash_name(challenge->broker_hash)), str(cf["broker_hash"]));
  EXPECT_EQ(challenge->broker_hash, broker_suite.envelope_hash);
  EXPECT_EQ(to_hex(challenge->signature), str(cf["signature"]));
  const bytes challenge_unsigned = session::encode(*challenge, false);
  EXPECT_EQ(to_hex(challenge_unsigned), str(v["challenge"]["unsigned_body"]));
  EXPECT_EQ(to_hex(session::encode(*challenge)), to_hex(challenge_body));

  // The ephemeral and static ECDH keys are on the agent role's curve.
  const ec_curve curve = agent_suite.ecdh_curve;
  for (const bytes* der : {&hello->ephemeral_der, &hello->static_ecdh_der, &challenge->ephemeral_der,
                           &challenge->static_ecdh_der})
    EXPECT_TRUE(session::ec_key_on_curve(*der, curve).has_value());

  // T_c and the broker's signature over H_b(T_c).
  const bytes t_c = session::challenge_transcript(hello_body, challenge_unsigned);
  EXPECT_EQ(to_hex(t_c), str(v["t_c"]));
  const bytes t_c_digest = crypto::digest(challenge->broker_hash, t_c);
  EXPECT_EQ(to_hex(t_c_digest), str(v["t_c_digest"]));
  auto broker_key = crypto::public_key::from_der(challenge->broker_identity_der);
  ASSERT_TRUE(broker_key.ok()) << broker_key.error().to_string();
  EXPECT_EQ(broker_key->type(), broker_suite.key);
  status challenge_sig =
      crypto::verify_digest(*broker_key, broker_key->type(), challenge->broker_hash, t_c_digest, challenge->signature);
  EXPECT_TRUE(challenge_sig.ok()) << challenge_sig.to_string();
  bytes bad_t_c = t_c;
  bad_t_c.back() ^= 0x01;
  EXPECT_FALSE(crypto::verify_digest(*broker_key, broker_key->type(), challenge->broker_hash,
                                     crypto::digest(challenge->broker_hash, bad_t_c), challenge->signature)
                   .ok());

  // PROOF: T_p over the full CHALLENGE, the agent's signature over H_env(T_p).
  const bytes proof_body = hex(v["proof"]["body"]);
  auto proof = session::decode_proof(proof_body);
  ASSERT_TRUE(proof.ok()) << proof.error().to_string();
  EXPECT_EQ(to_hex(proof->signature), str(v["proof"]["signature"]));
  EXPECT_EQ(to_hex(session::encode(*proof)), to_hex(proof_body));
  const bytes t_p = session::proof_transcript(hello_body, challenge_body);
  EXPECT_EQ(to_hex(t_p), str(v["t_p"]));
  const bytes t_p_digest = crypto::digest(agent_suite.envelope_hash, t_p);
  EXPECT_EQ(to_hex(t_p_digest), str(v["t_p_digest"]));
  auto agent_key = crypto::public_key::from_der(hello->identity_der);
  ASSERT_TRUE(agent_key.ok()) << agent_key.error().to_string();
  status proof_sig =
      crypto::verify_digest(*agent_key, agent_suite.key, agent_suite.envelope_hash, t_p_digest, proof->signature);
  EXPECT_TRUE(proof_sig.ok()) << proof_sig.to_string();
  // H_env, not H_mac: the suite's MAC hash (SHA-384 here, the same size as SHA3-384)
  // gives another digest.
  if (agent_suite.mac_hash != agent_suite.envelope_hash) {
    EXPECT_FALSE(crypto::verify_digest(*agent_key, agent_suite.key, agent_suite.mac_hash,
                                       crypto::digest(agent_suite.mac_hash, t_p), proof->signature)
                     .ok());
  }

  // The shares, as each side computes them.
  const json& z = v["ecdh"];
  expect_share(agent["ephemeral"], broker["ephemeral"], z["z_ee"], "Z_ee = agent eph x broker eph");
  expect_share(agent["static_ecdh"], broker["ephemeral"], z["z_se"], "Z_se = agent static x broker eph");
  expect_share(agent["ephemeral"], broker["static_ecdh"], z["z_es"], "Z_es = agent eph x broker static");
  const std::size_t field = curve_bytes(curve);
  EXPECT_EQ(hex(z["z_ee"]).size(), field);
  EXPECT_EQ(hex(z["z_se"]).size(), field);
  EXPECT_EQ(hex(z["z_es"]).size(), field);

  // The key schedule, from its definition: IKM, salt, th, info, HKDF.
  const json& ks = v["key_schedule"];
  const hash_algorithm mac = agent_suite.mac_hash;
  EXPECT_EQ(hash_of(ks["hash"]), mac);
  const bytes ikm = concat({hex(z["z_ee"]), hex(z["z_se"]), hex(z["z_es"])});
  EXPECT_EQ(to_hex(ikm), str(ks["ikm"]));
  const bytes salt = concat({hello->nonce, challenge->nonce});
  EXPECT_EQ(to_hex(salt), str(ks["salt"]));
  const bytes th = crypto::digest(mac, concat({hello_body, challenge_body, proof_body}));
  EXPECT_EQ(to_hex(th), str(ks["th"]));
  const std::string agent_name = hello->name;
  const std::string broker_name = challenge->broker_name;
  EXPECT_EQ(to_hex(info_of("hop", agent_name, broker_name, th, "i2r")), str(ks["info_i2r"]));
  EXPECT_EQ(to_hex(info_of("hop", agent_name, broker_name, th, "r2i")), str(ks["info_r2i"]));
  EXPECT_EQ(to_hex(info_of("hop", agent_name, broker_name, th, "sid")), str(ks["info_sid"]));
  EXPECT_EQ(to_hex(crypto::hkdf(mac, ikm, salt, hex(ks["info_i2r"]), hash_size(mac)).view()), str(ks["k_a2b"]));
  EXPECT_EQ(to_hex(crypto::hkdf(mac, ikm, salt, hex(ks["info_r2i"]), hash_size(mac)).view()), str(ks["k_b2a"]));
  EXPECT_EQ(to_hex(crypto::hkdf(mac, ikm, salt, hex(ks["info_sid"]), session::kSessionIdSize).view()),
            str(ks["sid"]));

  // session::agree at both ends, with the shares from the vector.
  const std::array<byte_view, 3> transcript{hello_body, challenge_body, proof_body};
  const session::key_schedule_input in{"hop", agent_name, broker_name, hello->nonce, challenge->nonce, mac, mac,
                                       transcript};
  session::ecdh_shares agent_shares;
  agent_shares.ephemeral = secret(z["z_ee"]);
  agent_shares.my_static = secret(z["z_se"]);    // the agent's TPM2_ECDH_ZGen
  agent_shares.peer_static = secret(z["z_es"]);
  session::ecdh_shares broker_shares;
  broker_shares.ephemeral = secret(z["z_ee"]);
  broker_shares.my_static = secret(z["z_es"]);   // the broker's TPM2_ECDH_ZGen
  broker_shares.peer_static = secret(z["z_se"]);
  const session::agreed_keys ka = session::agree(session::handshake_role::initiator, agent_shares, in);
  const session::agreed_keys kb = session::agree(session::handshake_role::responder, broker_shares, in);
  EXPECT_EQ(to_hex(ka.transcript_hash), str(ks["th"]));
  EXPECT_EQ(to_hex(kb.transcript_hash), str(ks["th"]));
  EXPECT_EQ(to_hex(session::transcript_hash(mac, mac, transcript)), str(ks["th"]));
  EXPECT_EQ(to_hex(ka.session_id), str(ks["sid"]));
  EXPECT_EQ(to_hex(kb.session_id), str(ks["sid"]));
  EXPECT_EQ(to_hex(ka.send.key.view()), str(ks["k_a2b"]));
  EXPECT_EQ(to_hex(ka.receive.key.view()), str(ks["k_b2a"]));
  EXPECT_EQ(to_hex(kb.send.key.view()), str(ks["k_b2a"]));
  EXPECT_EQ(to_hex(kb.receive.key.view()), str(ks["k_a2b"]));
  EXPECT_EQ(ka.send.hash, mac);
  EXPECT_EQ(ka.receive.hash, mac);
  EXPECT_EQ(kb.send.hash, mac);
  EXPECT_EQ(to_hex(ka.send.session_id), str(ks["sid"]));

  // derive_keys, the schedule's core, gives the same.
  std::vector<secret_bytes> shares;
  shares.push_back(secret(z["z_ee"]));
  shares.push_back(secret(z["z_se"]));
  shares.push_back(secret(z["z_es"]));
  const session::derived_keys dk = session::derive_keys(shares, hello->nonce, challenge->nonce, "hop", agent_name,
                                                        broker_name, th, mac, mac);
  EXPECT_EQ(to_hex(dk.session_id), str(ks["sid"]));
  EXPECT_EQ(to_hex(dk.initiator_to_responder.view()), str(ks["k_a2b"]));
  EXPECT_EQ(to_hex(dk.responder_to_initiator.view()), str(ks["k_b2a"]));

  // WELCOME: sid and the key confirmation under K_b2a.
  const json& wj = v["welcome"];
  const bytes welcome_body = hex(wj["body"]);
  auto welcome = session::decode_welcome(welcome_body);
  ASSERT_TRUE(welcome.ok()) << welcome.error().to_string();
  EXPECT_EQ(to_hex(welcome->session_id), str(ks["sid"]));
  EXPECT_EQ(to_hex(welcome->confirm_tag), str(wj["confirm"]));
  EXPECT_EQ(welcome->rekey_after_messages, wj["rekey_after_messages"].get<std::uint64_t>());
  EXPECT_EQ(welcome->rekey_after_seconds, wj["rekey_after_seconds"].get<std::uint64_t>());
  const std::uint64_t rekey_messages = wj["rekey_after_messages"].get<std::uint64_t>();
  const std::uint64_t rekey_seconds = wj["rekey_after_seconds"].get<std::uint64_t>();
  EXPECT_EQ(to_hex(session::welcome_confirm_input(th, rekey_messages, rekey_seconds)), str(wj["confirm_input"]));
  EXPECT_EQ(to_hex(crypto::hmac(mac, hex(ks["k_b2a"]), hex(wj["confirm_input"]))), str(wj["confirm"]));
  EXPECT_EQ(to_hex(session::welcome_confirm_tag(kb, rekey_messages, rekey_seconds)), str(wj["confirm"]));
  status confirmed = session::check_welcome_confirm(ka, *welcome);
  EXPECT_TRUE(confirmed.ok()) << confirmed.to_string();
  session::welcome_msg w;
  w.session_id = kb.session_id;
  w.confirm_tag = session::welcome_confirm_tag(kb, rekey_messages, rekey_seconds);
  w.rekey_after_messages = rekey_messages;
  w.rekey_after_seconds = rekey_seconds;
  EXPECT_EQ(to_hex(session::encode(w)), to_hex(welcome_body));
  // The rekey schedule is inside the confirmation (an on-path change is bad_mac).
  session::welcome_msg changed = *welcome;
  changed.rekey_after_seconds += 1;
  EXPECT_EQ(session::check_welcome_confirm(ka, changed).code(), status_code::bad_mac);

  // The enrolment token sealed into PROOF (§3.3): the agent's box is the vector's,
  // and the broker opens it; a flipped bit in it is bad_mac.
  const json& tj = v["proof"]["token"];
  const std::array<byte_view, 2> hello_challenge{hello_body, challenge_body};
  const session::key_schedule_input tin{"hop", agent_name, broker_name, hello->nonce, challenge->nonce, mac, mac,
                                        hello_challenge};
  session::ecdh_shares agent_side;
  agent_side.ephemeral = secret(z["z_ee"]);
  agent_side.my_static = secret(z["z_se"]);
  agent_side.peer_static = secret(z["z_es"]);
  session::ecdh_shares broker_side;
  broker_side.ephemeral = secret(z["z_ee"]);
  broker_side.my_static = secret(z["z_es"]);
  broker_side.peer_static = secret(z["z_se"]);
  EXPECT_EQ(to_hex(session::seal_enrolment_token(agent_side, tin, hex(tj["token"]))), str(tj["sealed"]));
  EXPECT_EQ(to_hex(proof->sealed_token), str(tj["sealed"]));
  auto opened = session::open_enrolment_token(broker_side, tin, proof->sealed_token);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  EXPECT_EQ(to_hex(opened->view()), str(tj["token"]));
  bytes flipped = proof->sealed_token;
  flipped[3] ^= 0x40;
  EXPECT_EQ(session::open_enrolment_token(broker_side, tin, flipped).error().code(), status_code::bad_mac);
  EXPECT_EQ(session::open_enrolment_token(broker_side, tin, byte_view(flipped).first(40)).error().code(),
            status_code::invalid_field);

  // Without the broker's static share the keys differ (the agent's check fails).
  session::ecdh_shares no_static;
  no_static.ephemeral = secret(z["z_ee"]);
  no_static.my_static = secret(z["z_se"]);
  const session::agreed_keys without = session::agree(session::handshake_role::initiator, no_static, in);
  EXPECT_NE(to_hex(without.session_id), str(ks["sid"]));
  EXPECT_EQ(session::check_welcome_confirm(without, *welcome).code(), status_code::bad_mac);
}

// ---------------------------------------------------------------- e2e (§4)

struct opened_envelope {
  envelope_header header;
  envelope_auth auth;
  bytes signed_part;
  bytes digest;
};

// open_session_envelope: an offer or accept envelope of the vector decodes, is a
// control envelope from `sender` to `to` with `content_type`, verifies under its
// sender's key and suite, and carries a hop MAC and no end-to-end MAC.
void open_session_envelope(const json& e, const suite& s, const std::string& sender, const std::string& to,
                           std::string_view content_type, opened_envelope& out) {
  out.signed_part = hex(e["signed_part"]);
  auto header = decode_signed_part(out.signed_part);
  ASSERT_TRUE(header.ok()) << header.error().to_string();
  EXPECT_EQ(header->type, envelope_type::control);
  EXPECT_EQ(header->to_kind, recipient_kind::agent);
  EXPECT_EQ(header->sender, sender);
  EXPECT_EQ(header->to, to);
  EXPECT_EQ(header->suite, s.name);
  EXPECT_EQ(header->content_type, std::string(content_type));
  EXPECT_EQ(to_hex(encode_signed_part(*header)), to_hex(out.signed_part));
  out.digest = envelope_digest(s.envelope_hash, out.signed_part);
  EXPECT_EQ(to_hex(out.digest), str(e["digest"]));

  const bytes auth_part = hex(e["auth_part"]);
  auto auth = decode_auth_part(auth_part);
  ASSERT_TRUE(auth.ok()) << auth.error().to_string();
  EXPECT_EQ(to_hex(encode_auth_part(*auth)), to_hex(auth_part));
  EXPECT_TRUE(auth->e2e_macs.empty());
  ASSERT_TRUE(auth->hop_mac.has_value());
  auto key = crypto::public_key::from_pem(str(e["public_key_pem"]));
  ASSERT_TRUE(key.ok()) << key.error().to_string();
  EXPECT_EQ(to_hex(key->fingerprint()), to_hex(auth->key_id));
  status sig = session::verify_envelope_signature(*key, s, out.digest, *auth, nullptr);
  EXPECT_TRUE(sig.ok()) << sig.to_string();

  const json& hop = e["hop_mac"];
  const bytes hop_in = hop_mac_input(out.digest, *auth);
  EXPECT_EQ(to_hex(hop_in), str(hop["input"]));
  EXPECT_EQ(to_hex(crypto::hmac(s.mac_hash, hex(hop["key"]), hop_in)), str(hop["tag"]));
  EXPECT_EQ(to_hex(auth->hop_mac->session_id), str(hop["session_id"]));
  EXPECT_EQ(to_hex(auth->hop_mac->tag), str(hop["tag"]));
  out.header = *header;
  out.auth = *auth;
}

// expect_credential_form: TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET, as CHALLENGE field 6
// carries it (protocol.md §3.9): each size prefix covers exactly what follows.
void expect_credential_form(const bytes& c) {
  ASSERT_GE(c.size(), 4u);
  const std::size_t id_len = std::size_t{c[0]} << 8 | c[1];
  ASSERT_GE(c.size(), 2 + id_len + 2);
  const std::size_t secret_len = std::size_t{c[2 + id_len]} << 8 | c[3 + id_len];
  EXPECT_EQ(c.size(), 2 + id_len + 2 + secret_len);
  EXPECT_EQ(secret_len, 256u) << "an RSA-2048 OAEP output";
}

TEST(handshake_vectors, e2e_offer_accept_and_keys_with_two_mac_hashes) {
  const json v = load("handshake-e2e.json");
  ASSERT_EQ(str(v["kind"]), "handshake-e2e");
  const json& ini = v["initiator"];
  const json& res = v["responder"];
  const suite si = suite_of(ini["suite"]);
  const suite sr = suite_of(res["suite"]);
  const std::string i_name = str(ini["name"]);
  const std::string r_name = str(res["name"]);
  for (const json* k : {&ini["identity"], &ini["ephemeral"], &res["identity"], &res["ephemeral"], &res["static_ecdh"]})
    ASSERT_NO_FATAL_FAILURE(expect_key_consistent(*k));
  EXPECT_TRUE(ini["static_ecdh"].is_null()) << "the vector's initiator has no static ECDH key";
  EXPECT_NE(si.mac_hash, sr.mac_hash) << "the vector exercises two MAC hashes";

  // The session curve is the stronger of the two roles' curves.
  auto curve = parse_curve(str(v["session_curve"]));
  ASSERT_TRUE(curve.has_value());
  EXPECT_EQ(*curve, session::curve_for_pair(si.ecdh_curve, sr.ecdh_curve));

  // The offer and the accept: signed control envelopes between the two.
  opened_envelope offer_env, accept_env;
  ASSERT_NO_FATAL_FAILURE(
      open_session_envelope(v["offer"], si, i_name, r_name, session::kOfferContentType, offer_env));
  ASSERT_NO_FATAL_FAILURE(
      open_session_envelope(v["accept"], sr, r_name, i_name, session::kAcceptContentType, accept_env));
  EXPECT_TRUE(offer_env.header.correlation_id.empty());
  EXPECT_EQ(to_hex(accept_env.header.correlation_id), to_hex(offer_env.header.message_id));

  auto offer = session::decode_offer(offer_env.header.payload);
  ASSERT_TRUE(offer.ok()) << offer.error().to_string();
  const json& of = v["offer"]["body"]["fields"];
  EXPECT_EQ(to_hex(offer->ephemeral_der), str(of["ephemeral"]));
  EXPECT_EQ(to_hex(offer->ephemeral_der), str(ini["ephemeral"]["der"]));
  EXPECT_EQ(to_hex(offer->nonce), str(of["nonce"]));
  EXPECT_EQ(offer->curve, str(of["curve"]));
  EXPECT_EQ(offer->curve, std::string(curve_name(*curve)));
  EXPECT_EQ(to_hex(offer->rekey_of), str(of["rekey_of"]));
  EXPECT_TRUE(offer->static_ecdh_der.empty());
  EXPECT_EQ(to_hex(offer->static_ecdh_der), str(of["static_ecdh"]));
  EXPECT_FALSE(offer->credential.empty()) << "the vector's offer carries a credential for the responder's AK";
  EXPECT_EQ(to_hex(offer->credential), str(of["credential"]));
  expect_credential_form(offer->credential);
  EXPECT_EQ(to_hex(session::encode(*offer)), str(v["offer"]["body"]["bytes"]));
  EXPECT_EQ(to_hex(offer_env.header.payload), str(v["offer"]["body"]["bytes"]));

  auto accept = session::decode_accept(accept_env.header.payload);
  ASSERT_TRUE(accept.ok()) << accept.error().to_string();
  const json& af = v["accept"]["body"]["fields"];
  EXPECT_EQ(to_hex(accept->ephemeral_der), str(af["ephemeral"]));
  EXPECT_EQ(to_hex(accept->ephemeral_der), str(res["ephemeral"]["der"]));
  EXPECT_EQ(to_hex(accept->nonce), str(af["nonce"]));
  EXPECT_EQ(to_hex(accept->offer_id), str(af["offer_id"]));
  EXPECT_EQ(to_hex(accept->offer_id), to_hex(offer_env.header.message_id));
  EXPECT_EQ(to_hex(accept->static_ecdh_der), str(af["static_ecdh"]));
  EXPECT_EQ(to_hex(accept->static_ecdh_der), str(res["static_ecdh"]["der"]));
  EXPECT_EQ(to_hex(accept->credential), str(af["credential"]));
  expect_credential_form(accept->credential);
  EXPECT_EQ(to_hex(session::encode(*accept)), str(v["accept"]["body"]["bytes"]));
  EXPECT_EQ(to_hex(accept_env.header.payload), str(v["accept"]["body"]["bytes"]));
  for (const bytes* der : {&offer->ephemeral_der, &accept->ephemeral_der, &accept->static_ecdh_der})
    EXPECT_TRUE(session::ec_key_on_curve(*der, *curve).has_value());

  // The shares: Z_ee and Z_es (the accept carries the responder's static key); no Z_se.
  const json& z = v["ecdh"];
  EXPECT_TRUE(z["z_se"].is_null());
  expect_share(ini["ephemeral"], res["ephemeral"], z["z_ee"], "Z_ee = initiator eph x responder eph");
  expect_share(ini["ephemeral"], res["static_ecdh"], z["z_es"], "Z_es = initiator eph x responder static");
  EXPECT_EQ(hex(z["z_ee"]).size(), curve_bytes(*curve));
  EXPECT_EQ(hex(z["z_es"]).size(), curve_bytes(*curve));

  // T = offer signed part || accept signed part; th with the stronger MAC hash.
  const json& ks = v["key_schedule"];
  EXPECT_EQ(to_hex(concat({offer_env.signed_part, accept_env.signed_part})), str(v["transcript"]));
  const hash_algorithm h_t = hash_of(ks["hash"]);
  EXPECT_EQ(hash_size(h_t), std::max(hash_size(si.mac_hash), hash_size(sr.mac_hash)));
  EXPECT_EQ(h_t, hash_size(si.mac_hash) >= hash_size(sr.mac_hash) ? si.mac_hash : sr.mac_hash);
  const std::array<byte_view, 2> transcript{offer_env.signed_part, accept_env.signed_part};
  const bytes th = session::transcript_hash(si.mac_hash, sr.mac_hash, transcript);
  EXPECT_EQ(to_hex(th), str(ks["th"]));
  EXPECT_EQ(to_hex(crypto::digest(h_t, hex(v["transcript"]))), str(ks["th"]));

  // The schedule from its definition.
  // IKM = Z_ee || Z_es || A_R || A_I: the credentials' secrets after the shares, the
  // offer's first.
  const bytes ikm = concat({hex(z["z_ee"]), hex(z["z_es"]), hex(v["credential_secrets"]["a_r"]),
                            hex(v["credential_secrets"]["a_i"])});
  EXPECT_EQ(to_hex(ikm), str(ks["ikm"]));
  const bytes salt = concat({offer->nonce, accept->nonce});
  EXPECT_EQ(to_hex(salt), str(ks["salt"]));
  EXPECT_EQ(to_hex(info_of("e2e", i_name, r_name, th, "i2r")), str(ks["info_i2r"]));
  EXPECT_EQ(to_hex(info_of("e2e", i_name, r_name, th, "r2i")), str(ks["info_r2i"]));
  EXPECT_EQ(to_hex(info_of("e2e", i_name, r_name, th, "sid")), str(ks["info_sid"]));
  EXPECT_EQ(hash_of(ks["k_i2r_mac_hash"]), si.mac_hash);
  EXPECT_EQ(hash_of(ks["k_r2i_mac_hash"]), sr.mac_hash);
  EXPECT_EQ(to_hex(crypto::hkdf(h_t, ikm, salt, hex(ks["info_i2r"]), hash_size(si.mac_hash)).view()),
            str(ks["k_i2r"]));
  EXPECT_EQ(to_hex(crypto::hkdf(h_t, ikm, salt, hex(ks["info_r2i"]), hash_size(sr.mac_hash)).view()),
            str(ks["k_r2i"]));
  EXPECT_EQ(to_hex(crypto::hkdf(h_t, ikm, salt, hex(ks["info_sid"]), session::kSessionIdSize).view()), str(ks["sid"]));

  // session::agree at both ends, with the shares from the vector.
  const session::key_schedule_input in{"e2e", i_name, r_name, offer->nonce, accept->nonce, si.mac_hash, sr.mac_hash,
                                       transcript};
  session::ecdh_shares i_shares;
  i_shares.ephemeral = secret(z["z_ee"]);
  i_shares.peer_static = secret(z["z_es"]);
  i_shares.offer_credential = secret(v["credential_secrets"]["a_r"]);   // the initiator made it
  i_shares.accept_credential = secret(v["credential_secrets"]["a_i"]);  // its TPM2_ActivateCredential
  session::ecdh_shares r_shares;
  r_shares.ephemeral = secret(z["z_ee"]);
  r_shares.my_static = secret(z["z_es"]);  // the responder's TPM2_ECDH_ZGen
  r_shares.offer_credential = secret(v["credential_secrets"]["a_r"]);   // its TPM2_ActivateCredential
  r_shares.accept_credential = secret(v["credential_secrets"]["a_i"]);  // the responder made it
  const session::agreed_keys ki = session::agree(session::handshake_role::initiator, i_shares, in);
  const session::agreed_keys kr = session::agree(session::handshake_role::responder, r_shares, in);
  EXPECT_EQ(to_hex(ki.transcript_hash), str(ks["th"]));
  EXPECT_EQ(to_hex(kr.transcript_hash), str(ks["th"]));
  EXPECT_EQ(to_hex(ki.session_id), str(ks["sid"]));
  EXPECT_EQ(to_hex(kr.session_id), str(ks["sid"]));
  EXPECT_EQ(to_hex(ki.send.key.view()), str(ks["k_i2r"]));
  EXPECT_EQ(to_hex(ki.receive.key.view()), str(ks["k_r2i"]));
  EXPECT_EQ(to_hex(kr.send.key.view()), str(ks["k_r2i"]));
  EXPECT_EQ(to_hex(kr.receive.key.view()), str(ks["k_i2r"]));
  EXPECT_EQ(ki.send.key.size(), hash_size(si.mac_hash));
  EXPECT_EQ(kr.send.key.size(), hash_size(sr.mac_hash));
  EXPECT_EQ(ki.send.hash, si.mac_hash) << "each direction is MACed with its sender's hash";
  EXPECT_EQ(ki.receive.hash, sr.mac_hash);
  EXPECT_EQ(kr.send.hash, sr.mac_hash);
  EXPECT_EQ(kr.receive.hash, si.mac_hash);

  // An end-to-end MAC the initiator makes with K_i2r verifies at the responder.
  const bytes data = hex(v["transcript"]);
  EXPECT_TRUE(crypto::verify_hmac(kr.receive.hash, kr.receive.key.view(), data,
                                  crypto::hmac(ki.send.hash, ki.send.key.view(), data))
                  .ok());

  // A share the responder mixed in that the initiator left out gives other keys.
  session::ecdh_shares forgot;
  forgot.ephemeral = secret(z["z_ee"]);
  const session::agreed_keys other = session::agree(session::handshake_role::initiator, forgot, in);
  EXPECT_NE(to_hex(other.session_id), str(ks["sid"]));
}

}  // namespace
}  // namespace agentbus
