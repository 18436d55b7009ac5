// handshake.hpp — frames and messages of the bus protocol besides envelopes
// (internal; schemas/protocol.md is the normative description).
//
// Every message is one MessagePack array in its own ZeroMQ frame, preceded by a
// frame naming its kind. Decoding is strict (same reader as envelopes): size cap
// first, one canonical object, exact field count and types, no trailing bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::session {

// First frame of every message: what follows.
namespace frame {
inline constexpr std::string_view kHello = "HELLO";          // agent → broker
inline constexpr std::string_view kCookie = "COOKIE";        // broker → agent: return it in HELLO
inline constexpr std::string_view kChallenge = "CHALLENGE";  // broker → agent
inline constexpr std::string_view kProof = "PROOF";          // agent → broker
inline constexpr std::string_view kWelcome = "WELCOME";      // broker → agent
inline constexpr std::string_view kRefused = "REFUSED";      // broker → agent, enrolment refused
inline constexpr std::string_view kEnvelope = "ENV";         // both ways: signed part, auth part
inline constexpr std::string_view kWireBatch = "BATCH";     // both ways: session id, MAC, then envelope pairs
inline constexpr std::string_view kControl = "CTRL";         // both ways: session id, body, hop MAC
inline constexpr std::string_view kError = "ERR";            // broker → unauthenticated peer: error body
}  // namespace frame

// Wire batch limits (schemas/envelope.md §7.3): a sender splits larger batches; the
// broker refuses a wire batch beyond either as malformed / too large.
inline constexpr std::size_t kMaxWireBatchEnvelopes = 1024;
inline constexpr std::size_t kMaxWireBatchBytes = 4u << 20;  // sum of its envelope frames
// kWireBatchEnvelopes: how many envelopes a sender, and the broker's fan-out, put in
// one wire batch (far below the limit above, which is for interoperability). Measured
// on the 2-core development machine (tpm-batch, 256 B, medians of 4 runs): 8-16 a
// batch 66k env/s at 2.7 CPU s per 100k; 32: 62k; up to 1024 (a whole signed batch):
// 52k; envelope by envelope: 63k at 2.8. Every member of a wire batch is decoded before
// its one MAC decides, then visited again: a batch much larger than what stays in the
// cache costs more in misses than it saves in MACs and messages.
inline constexpr std::size_t kWireBatchEnvelopes = 16;
// kWireBatchBytes: and at most this many bytes of envelopes (a larger envelope goes
// alone). With 16 KiB payloads: 64 KiB batches 7.3-8.2k env/s, 16 envelopes (256 KiB)
// 5.2-6.1k, envelope by envelope 6.2-9.5k (3 runs each).
inline constexpr std::size_t kWireBatchBytes = 64u << 10;

inline constexpr std::size_t kMaxHandshakeFrame = 16 * 1024;
inline constexpr std::size_t kMaxControlFrame = 256 * 1024;

// HELLO: who the agent is and its ephemeral ECDH key for the hop session. Sent twice
// (schemas/protocol.md §3.1): first without a cookie (the broker answers COOKIE and
// keeps nothing), then with the broker's cookie, a signature by the identity key
// over the HELLO's first 13 fields (possession) and, when the agent holds an
// enrolment token, an HMAC keyed with the token's hash (token_proof). Only such a
// HELLO costs the broker state or TPM work.
struct hello_msg {
  std::string name, role, suite;
  protection key_protection = protection::tpm;
  bytes identity_der;        // SubjectPublicKeyInfo of the identity key
  std::string tpm_manufacturer;
  bool tpm_simulator = false;
  bytes ephemeral_der;       // ECDH public key on the role's curve
  bytes static_ecdh_der;     // TPM-resident ECDH key, or empty
  bytes nonce;               // kNonceSize
  bytes evidence;            // encode(evidence_msg), or empty (schemas/protocol.md §3.9)
  bytes cookie;              // empty, or the broker's COOKIE returned
  bytes possession;          // with a cookie: Sign_identity(H_env(hello_transcript(HU)))
  bytes token_proof;         // empty, or hello_token_proof(SHA-256(token), HU)
};

// COOKIE: the broker's answer to a HELLO without one. Opaque to the agent, valid for
// a few seconds on that connection for that name and key.
struct cookie_msg {
  bytes cookie;
};

// evidence_msg: the TPM's proof that the identity key (and the static ECDH key)
// live in it: the EK certificate and public area, an AK, and the AK's TPM2_Certify
// of each key (qualifying data empty: freshness comes from the credential the
// broker wraps for the AK in CHALLENGE). The ECDH fields are empty when HELLO
// carries no static key. All TPM structures are their marshalled wire bytes.
struct evidence_msg {
  bytes ek_certificate;      // X.509 DER
  bytes ek_public;           // TPM2B_PUBLIC
  bytes ak_public;           // TPM2B_PUBLIC
  bytes identity_public, identity_attest, identity_signature;  // TPM2B_PUBLIC, TPMS_ATTEST, DER ECDSA
  bytes ecdh_public, ecdh_attest, ecdh_signature;
};

// CHALLENGE: the broker's nonce and ephemeral key, signed by the broker's identity
// over "agentbus-v1 challenge" || HELLO || the unsigned CHALLENGE fields.
struct challenge_msg {
  bytes nonce;
  bytes ephemeral_der;
  bytes static_ecdh_der;
  std::string broker_name;
  bytes broker_identity_der;
  hash_algorithm broker_hash = hash_algorithm::sha256;
  bytes credential;          // TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET for the HELLO's AK, or empty
  bytes signature;
};

// PROOF: the agent's identity signature over "agentbus-v1 proof" || HELLO || CHALLENGE,
// and its enrolment token sealed for the broker (empty when it has none).
struct proof_msg {
  bytes signature;
  bytes sealed_token;
  bytes activation;          // the secret the TPM recovered from CHALLENGE's credential, or empty
};

// WELCOME: the hop session's id and a key-confirmation MAC under the broker→agent key.
struct welcome_msg {
  bytes session_id;
  bytes confirm_tag;
  std::uint64_t rekey_after_messages = 0;
  std::uint64_t rekey_after_seconds = 0;
};

struct refused_msg {
  status_code code = status_code::refused;
  std::string reason;
};

// ERR: the broker's answer to a frame it cannot attribute to an enrolled agent (a
// connection it does not know, a handshake message out of order): ["ERR", text, body],
// the text for people and older agents, this body the typed answer. Not
// authenticated: an agent acts on it only as far as an attacker on the path could
// make it act anyway (re-enrol, report). message_id names the refused envelope
// when the frame was an envelope whose signed part decoded (so the sender learns
// which envelopes a restarted broker dropped), else it is empty.
struct error_msg {
  status_code code = status_code::malformed;
  std::string detail;
  bytes message_id;
};

// error_code_from_wire reads a refusal's status code as REFUSED, ERR and the
// control answers carry it: 1..0xffff (0 would read as success); nullopt otherwise.
std::optional<status_code> error_code_from_wire(std::uint64_t code) noexcept;

// Agent↔agent session offer and acceptance travel as control envelopes
// (content types below): the envelope signature authenticates them.
inline constexpr std::string_view kOfferContentType = "application/agentbus-session-offer";
inline constexpr std::string_view kAcceptContentType = "application/agentbus-session-accept";
// is_session_control: an offer or acceptance, which travel only agent to agent (a
// topic-addressed offer would make every subscriber sign an acceptance).
bool is_session_control(const envelope_header& h) noexcept;
struct offer_msg {
  bytes ephemeral_der;
  bytes nonce;
  std::string curve;         // "P-256" / "P-384"
  bytes rekey_of;            // empty, or the session id being replaced
  bytes static_ecdh_der;     // the initiator's TPM-resident ECDH key on `curve`, or empty
  bytes credential;          // a credential for the responder's AK (protocol.md §4.3), or empty
};
struct accept_msg {
  bytes ephemeral_der;
  bytes nonce;
  bytes offer_id;            // message id of the offer it answers
  bytes static_ecdh_der;     // the responder's TPM-resident ECDH key, or empty
  bytes credential;          // a credential for the initiator's AK (protocol.md §4.3), or empty
};

// ctrl_msg is a hop-authenticated control message: subscribe, peer lookup, topic
// membership, rejection notices (nack), stats. Generic fields keep the codec small.
struct ctrl_msg {
  std::uint64_t seq = 0;     // per direction, strictly increasing (replay)
  std::string op;
  std::vector<std::string> strings;
  bytes blob;
  std::uint64_t number = 0;
};

// encode(hello, false) is HU: fields 0..12 (through the cookie) as a fixarray of 13,
// what the possession signature and the token proof cover.
bytes encode(const hello_msg& m, bool with_proofs = true);
bytes encode(const cookie_msg& m);
bytes encode(const evidence_msg& m);
bytes encode(const challenge_msg& m, bool with_signature = true);
bytes encode(const proof_msg& m);
bytes encode(const welcome_msg& m);
bytes encode(const refused_msg& m);
bytes encode(const error_msg& m);
bytes encode(const offer_msg& m);
bytes encode(const accept_msg& m);
bytes encode(const ctrl_msg& m);

result<hello_msg> decode_hello(byte_view in);
result<cookie_msg> decode_cookie(byte_view in);
result<evidence_msg> decode_evidence(byte_view in);
result<challenge_msg> decode_challenge(byte_view in);
result<proof_msg> decode_proof(byte_view in);
result<welcome_msg> decode_welcome(byte_view in);
result<refused_msg> decode_refused(byte_view in);
result<error_msg> decode_error(byte_view in);
result<offer_msg> decode_offer(byte_view in);
result<accept_msg> decode_accept(byte_view in);
result<ctrl_msg> decode_ctrl(byte_view in);

// Transcripts that identity keys sign. Each starts with an ASCII label, never a
// MessagePack array head (0x90-0x9f, 0xdc, 0xdd), so a handshake signature can
// never be mistaken for an envelope signature over a signed part.
bytes hello_transcript(byte_view hello_unsigned);
bytes challenge_transcript(byte_view hello, byte_view challenge_unsigned);
bytes proof_transcript(byte_view hello, byte_view challenge);

// hello_token_proof: HMAC-SHA256(token_hash, "agentbus-v1 token hello" || 0x00 ||
// u32be(len(HU)) || HU), token_hash the 32-byte SHA-256 of the enrolment token (what
// the broker keeps): proves, before the broker does any work, that the agent holds
// a token, without showing it (PROOF carries the token itself, sealed).
bytes hello_token_proof(byte_view token_hash, byte_view hello_unsigned);

// welcome_confirm_input is what WELCOME's key-confirmation MAC (under the
// broker→agent hop key) covers: "agentbus-v1 welcome" || 0x00 || transcript hash
// || u64be(rekey_after_messages) || u64be(rekey_after_seconds).
bytes welcome_confirm_input(byte_view transcript_hash, std::uint64_t rekey_after_messages,
                            std::uint64_t rekey_after_seconds);

// kHandshakeVersion is HELLO's version field.
inline constexpr std::uint64_t kHandshakeVersion = 3;
inline constexpr std::size_t kMaxCookie = 64;
inline constexpr std::size_t kTokenProofSize = 32;
// Field limits of the attestation fields.
inline constexpr std::size_t kMaxEvidence = 12 * 1024;
inline constexpr std::size_t kMaxCredential = 1024;
inline constexpr std::size_t kActivationSize = 32;

// ctrl_mac_input binds a control body to its session.
bytes ctrl_mac_input(byte_view session_id, byte_view body);

}  // namespace agentbus::session
