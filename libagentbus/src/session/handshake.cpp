#include "session/handshake.hpp"

#include <msgpack.hpp>

#include "agentbus/crypto.hpp"

#include "envelope/msgpack_reader.hpp"
#include "session/session_keys.hpp"
#include "session/wire_codec.hpp"

namespace agentbus::session {
namespace mpw = agentbus::envelope_wire;
namespace {

using wire_codec::finish;
using wire_codec::reader;
using wire_codec::writer;


hash_algorithm parse_hash_or(std::string_view s, bool& ok) {
  auto h = parse_hash(s);
  ok = h.has_value();
  return h.value_or(hash_algorithm::sha256);
}

constexpr std::size_t kMaxKeyDer = 2048;
constexpr std::size_t kMaxSig = 1024;

}  // namespace

bytes encode(const hello_msg& m, bool with_proofs) {
  writer w(with_proofs ? 15 : 13);
  w.uint(kHandshakeVersion).str(m.name).str(m.role).str(m.suite).str(protection_name(m.key_protection)).bin(m.identity_der)
      .str(m.tpm_manufacturer).uint(m.tpm_simulator ? 1 : 0).bin(m.ephemeral_der).bin(m.static_ecdh_der).bin(m.nonce)
      .bin(m.evidence).bin(m.cookie);
  if (with_proofs) w.bin(m.possession).bin(m.token_proof);
  return w.done();
}

bytes encode(const cookie_msg& m) { return writer(1).bin(m.cookie).done(); }
result<cookie_msg> decode_cookie(byte_view in) {
  cookie_msg m;
  reader r(in, "COOKIE", 1, kMaxHandshakeFrame);
  r.bin("cookie", m.cookie, 1, kMaxCookie);
  return finish(r, std::move(m));
}

bytes encode(const evidence_msg& m) {
  return writer(9)
      .bin(m.ek_certificate).bin(m.ek_public).bin(m.ak_public).bin(m.identity_public).bin(m.identity_attest)
      .bin(m.identity_signature).bin(m.ecdh_public).bin(m.ecdh_attest).bin(m.ecdh_signature)
      .done();
}

result<evidence_msg> decode_evidence(byte_view in) {
  evidence_msg m;
  reader r(in, "evidence", 9, kMaxEvidence);
  r.bin("ek_certificate", m.ek_certificate, 1, 4096).bin("ek_public", m.ek_public, 1, 1024)
      .bin("ak_public", m.ak_public, 1, 1024).bin("identity_public", m.identity_public, 1, 1024)
      .bin("identity_attest", m.identity_attest, 1, 1024).bin("identity_signature", m.identity_signature, 1, 512)
      .bin("ecdh_public", m.ecdh_public, 0, 1024).bin("ecdh_attest", m.ecdh_attest, 0, 1024)
      .bin("ecdh_signature", m.ecdh_signature, 0, 512);
  if (!r.ok()) return r.error();
  const bool any = !m.ecdh_public.empty() || !m.ecdh_attest.empty() || !m.ecdh_signature.empty();
  const bool all = !m.ecdh_public.empty() && !m.ecdh_attest.empty() && !m.ecdh_signature.empty();
  if (any && !all) return status{status_code::invalid_field, "evidence: the ECDH certification is incomplete"};
  return m;
}

result<hello_msg> decode_hello(byte_view in) {
  hello_msg m;
  std::uint64_t version = 0;
  std::string prot;
  std::uint64_t simulator = 0;  // 0/1: the strict reader has no bool type
  // The version is read first on its own: a HELLO of another version may have
  // another field count, and deserves unsupported_version rather than malformed.
  {
    mpw::cursor c(in);
    std::size_t n = 0;
    std::uint64_t v = 0;
    if (in.size() <= kMaxHandshakeFrame && c.read_array("HELLO", n).ok() && n >= 1 && c.read_uint("version", v).ok() &&
        v != kHandshakeVersion)
      return status{status_code::unsupported_version,
                    "HELLO version " + std::to_string(v) + " (this broker speaks " + std::to_string(kHandshakeVersion) + ")"};
  }
  reader r(in, "HELLO", 15, kMaxHandshakeFrame, 15);
  r.uint("version", version).str("name", m.name, 128).str("role", m.role, 64).str("suite", m.suite, 128)
      .str("protection", prot, 16).bin("identity", m.identity_der, 32, kMaxKeyDer)
      .str("tpm_manufacturer", m.tpm_manufacturer, 16).uint("tpm_simulator", simulator)
      .bin("ephemeral", m.ephemeral_der, 32, kMaxKeyDer).bin("static_ecdh", m.static_ecdh_der, 0, kMaxKeyDer)
      .bin("nonce", m.nonce, kNonceSize, kNonceSize).bin("evidence", m.evidence, 0, kMaxEvidence)
      .bin("cookie", m.cookie, 0, kMaxCookie).bin("possession", m.possession, 0, kMaxSig)
      .bin("token_proof", m.token_proof, 0, kTokenProofSize);
  if (!r.ok()) return r.error();
  if (m.cookie.empty() && (!m.possession.empty() || !m.token_proof.empty()))
    return status{status_code::invalid_field, "HELLO without a cookie carries no possession or token proof"};
  if (!m.cookie.empty() && m.possession.empty())
    return status{status_code::invalid_field, "HELLO with a cookie must carry the possession signature"};
  if (!m.token_proof.empty() && m.token_proof.size() != kTokenProofSize)
    return status{status_code::invalid_field, "HELLO token_proof must be empty or 32 bytes"};
  if (simulator > 1) return status{status_code::invalid_field, "HELLO tpm_simulator must be 0 or 1"};
  m.tpm_simulator = simulator == 1;
  auto p = parse_protection(prot);
  if (!p) return status{status_code::invalid_field, "HELLO protection must be tpm or software"};
  m.key_protection = *p;
  if (!mpw::is_token(m.name)) return status{status_code::invalid_field, "HELLO name is not a valid agent name"};
  return m;
}

bytes encode(const challenge_msg& m, bool with_signature) {
  writer w(with_signature ? 8 : 7);
  w.bin(m.nonce).bin(m.ephemeral_der).bin(m.static_ecdh_der).str(m.broker_name).bin(m.broker_identity_der)
      .str(hash_name(m.broker_hash)).bin(m.credential);
  if (with_signature) w.bin(m.signature);
  return w.done();
}

result<challenge_msg> decode_challenge(byte_view in) {
  challenge_msg m;
  std::string hash;
  reader r(in, "CHALLENGE", 8, kMaxHandshakeFrame);
  r.bin("nonce", m.nonce, kNonceSize, kNonceSize).bin("ephemeral", m.ephemeral_der, 32, kMaxKeyDer)
      .bin("static_ecdh", m.static_ecdh_der, 0, kMaxKeyDer).str("broker_name", m.broker_name, 128)
      .bin("broker_identity", m.broker_identity_der, 32, kMaxKeyDer).str("broker_hash", hash, 16)
      .bin("credential", m.credential, 0, kMaxCredential).bin("signature", m.signature, 1, kMaxSig);
  if (!r.ok()) return r.error();
  bool ok = false;
  m.broker_hash = parse_hash_or(hash, ok);
  if (!ok) return status{status_code::invalid_field, "CHALLENGE broker_hash unknown"};
  return m;
}

// A peer answer's blob holds a key and its evidence (control.cpp): within the control
// blob limit below.
static_assert(2 + kMaxKeyDer + kMaxEvidence <= 16 * 1024, "a peer answer must fit a control blob");

bytes encode(const proof_msg& m) { return writer(3).bin(m.signature).bin(m.sealed_token).bin(m.activation).done(); }
result<proof_msg> decode_proof(byte_view in) {
  proof_msg m;
  reader r(in, "PROOF", 3, kMaxHandshakeFrame);
  // A sealed token is 32 bytes and a tag of 32 or 48 (the MAC hash): open_enrolment_token checks which.
  r.bin("signature", m.signature, 1, kMaxSig).bin("sealed_token", m.sealed_token, 0, 96)
      .bin("activation", m.activation, 0, kActivationSize);
  return finish(r, std::move(m));
}

bytes encode(const welcome_msg& m) {
  return writer(4).bin(m.session_id).bin(m.confirm_tag).uint(m.rekey_after_messages).uint(m.rekey_after_seconds).done();
}
result<welcome_msg> decode_welcome(byte_view in) {
  welcome_msg m;
  reader r(in, "WELCOME", 4, kMaxHandshakeFrame);
  r.bin("session_id", m.session_id, kSessionIdSize, kSessionIdSize).bin("confirm", m.confirm_tag, 32, 64)
      .uint("rekey_after_messages", m.rekey_after_messages).uint("rekey_after_seconds", m.rekey_after_seconds);
  return finish(r, std::move(m));
}

bytes encode(const refused_msg& m) { return writer(2).uint(static_cast<std::uint64_t>(m.code)).str(m.reason).done(); }
result<refused_msg> decode_refused(byte_view in) {
  refused_msg m;
  std::uint64_t code = 0;
  reader r(in, "REFUSED", 2, kMaxHandshakeFrame);
  r.uint("code", code).str("reason", m.reason, 1024);
  if (!r.ok()) return r.error();
  auto refusal = error_code_from_wire(code);
  if (!refusal) return status{status_code::invalid_field, "REFUSED code out of range"};
  m.code = *refusal;
  return m;
}

bytes encode(const error_msg& m) {
  return writer(3).uint(static_cast<std::uint64_t>(m.code)).str(m.detail).bin(m.message_id).done();
}
result<error_msg> decode_error(byte_view in) {
  error_msg m;
  std::uint64_t code = 0;
  reader r(in, "ERR", 3, kMaxHandshakeFrame);
  r.uint("code", code).str("detail", m.detail, 1024).bin("message_id", m.message_id, 0, kMessageIdSize);
  if (!r.ok()) return r.error();
  auto refusal = error_code_from_wire(code);
  if (!refusal) return status{status_code::invalid_field, "ERR code out of range"};
  if (!m.message_id.empty() && m.message_id.size() != kMessageIdSize)
    return status{status_code::invalid_field, "ERR message_id size"};
  m.code = *refusal;
  return m;
}

bytes encode(const offer_msg& m) {
  return writer(6)
      .bin(m.ephemeral_der).bin(m.nonce).str(m.curve).bin(m.rekey_of).bin(m.static_ecdh_der).bin(m.credential)
      .done();
}
result<offer_msg> decode_offer(byte_view in) {
  offer_msg m;
  reader r(in, "session offer", 6, kMaxHandshakeFrame);
  r.bin("ephemeral", m.ephemeral_der, 32, kMaxKeyDer).bin("nonce", m.nonce, kNonceSize, kNonceSize)
      .str("curve", m.curve, 8).bin("rekey_of", m.rekey_of, 0, kSessionIdSize)
      .bin("static_ecdh", m.static_ecdh_der, 0, kMaxKeyDer).bin("credential", m.credential, 0, kMaxCredential);
  if (!r.ok()) return r.error();
  if (!parse_curve(m.curve)) return status{status_code::invalid_field, "session offer curve unknown"};
  if (!m.rekey_of.empty() && m.rekey_of.size() != kSessionIdSize) return status{status_code::invalid_field, "rekey_of size"};
  return m;
}

bytes encode(const accept_msg& m) {
  return writer(5).bin(m.ephemeral_der).bin(m.nonce).bin(m.offer_id).bin(m.static_ecdh_der).bin(m.credential).done();
}
result<accept_msg> decode_accept(byte_view in) {
  accept_msg m;
  reader r(in, "session accept", 5, kMaxHandshakeFrame);
  r.bin("ephemeral", m.ephemeral_der, 32, kMaxKeyDer).bin("nonce", m.nonce, kNonceSize, kNonceSize)
      .bin("offer_id", m.offer_id, 16, 16).bin("static_ecdh", m.static_ecdh_der, 0, kMaxKeyDer)
      .bin("credential", m.credential, 0, kMaxCredential);
  return finish(r, std::move(m));
}

bytes encode(const ctrl_msg& m) {
  return writer(5).uint(m.seq).str(m.op).strings(m.strings).bin(m.blob).uint(m.number).done();
}
result<ctrl_msg> decode_ctrl(byte_view in) {
  ctrl_msg m;
  reader r(in, "CTRL", 5, kMaxControlFrame, 4096);
  r.uint("seq", m.seq).str("op", m.op, 32).strings("strings", m.strings, 4096, 64 * 1024).bin("blob", m.blob, 0, 16 * 1024)
      .uint("number", m.number);
  return finish(r, std::move(m));
}

static bytes labelled(std::string_view label, std::initializer_list<byte_view> parts) {
  bytes out(label.begin(), label.end());
  out.push_back(0);
  for (byte_view p : parts) {
    std::uint32_t n = static_cast<std::uint32_t>(p.size());
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(n >> s));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

bytes hello_transcript(byte_view hello_unsigned) { return labelled("agentbus-v1 hello", {hello_unsigned}); }
bytes hello_token_proof(byte_view token_hash, byte_view hello_unsigned) {
  return crypto::hmac(hash_algorithm::sha256, token_hash, labelled("agentbus-v1 token hello", {hello_unsigned}));
}

bytes challenge_transcript(byte_view hello, byte_view challenge_unsigned) {
  return labelled("agentbus-v1 challenge", {hello, challenge_unsigned});
}
bytes proof_transcript(byte_view hello, byte_view challenge) { return labelled("agentbus-v1 proof", {hello, challenge}); }
bytes welcome_confirm_input(byte_view transcript_hash, std::uint64_t rekey_after_messages,
                            std::uint64_t rekey_after_seconds) {
  std::string_view label = "agentbus-v1 welcome";
  bytes out(label.begin(), label.end());
  out.push_back(0);
  out.insert(out.end(), transcript_hash.begin(), transcript_hash.end());
  for (std::uint64_t v : {rekey_after_messages, rekey_after_seconds})
    for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  return out;
}

bytes ctrl_mac_input(byte_view session_id, byte_view body) { return labelled("agentbus-v1 ctrl", {session_id, body}); }

std::optional<status_code> error_code_from_wire(std::uint64_t code) noexcept {
  if (code == 0 || code > 0xffff) return std::nullopt;
  return static_cast<status_code>(code);
}

bool is_session_control(const envelope_header& h) noexcept {
  return h.type == envelope_type::control && h.to_kind == recipient_kind::agent &&
         (h.content_type == kOfferContentType || h.content_type == kAcceptContentType);
}

}  // namespace agentbus::session
