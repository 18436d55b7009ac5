// envelope.hpp — the agentbus envelope (wire format version 1).
//
// An envelope travels as two ZeroMQ frames: the *signed part* and the *auth part*,
// each one MessagePack array with a fixed field order (schemas/envelope.md is the
// normative description). The signed part's bytes, exactly as received, are what is
// hashed and signed: nobody re-encodes before verifying.
//
// Decoding takes untrusted bytes and enforces hard limits (total size, field sizes,
// string lengths, collection sizes, nesting, trailing bytes, duplicate map keys);
// every violation is a status with a stable code, never an exception or an abort.
// All functions here are pure and thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

inline constexpr std::uint32_t kEnvelopeVersion = 1;
inline constexpr std::size_t kMessageIdSize = 16;
inline constexpr std::size_t kKeyIdSize = 32;  // SHA-256 of the DER public key

enum class envelope_type : std::uint8_t { data = 1, request = 2, reply = 3, error = 4, control = 5 };
enum class recipient_kind : std::uint8_t { agent = 0, topic = 1 };

// envelope_header is the decoded signed part.
struct envelope_header {
  std::uint32_t version = kEnvelopeVersion;
  envelope_type type = envelope_type::data;
  bytes message_id;          // exactly kMessageIdSize random bytes
  bytes correlation_id;      // empty, or the message_id a reply answers
  std::string sender;        // agent name
  recipient_kind to_kind = recipient_kind::agent;
  std::string to;            // agent name or topic
  std::uint64_t sequence = 0;      // per-sender, strictly increasing
  std::uint64_t timestamp_ms = 0;  // sender's clock, Unix epoch milliseconds
  std::string suite;         // declared suite name, e.g. "ecdsa-p256-sha256"
  std::string content_type;  // e.g. "application/json"
  std::vector<std::pair<std::string, std::string>> headers;  // unique keys, order kept
  bytes payload;

  bool operator==(const envelope_header&) const = default;
};

// batch_proof places an envelope's digest as leaf `leaf_index` of a Merkle tree of
// `leaf_count` leaves whose root the signature covers (assurance tpm-batch).
struct batch_proof {
  std::uint32_t leaf_index = 0;
  std::uint32_t leaf_count = 0;
  std::vector<bytes> path;  // sibling hashes, leaf level first
  bool operator==(const batch_proof&) const = default;
};

// session_mac is one MAC under an ECDH session key. For the hop MAC `recipient` is
// empty (the broker); for end-to-end MACs it names the recipient agent.
struct session_mac {
  std::string recipient;
  bytes session_id;  // 16 bytes, names the session key (and its epoch)
  bytes tag;         // HMAC output
  bool operator==(const session_mac&) const = default;
};

// envelope_auth is the decoded auth part.
struct envelope_auth {
  std::uint32_t version = kEnvelopeVersion;
  assurance level = assurance::tpm;
  bytes key_id;      // kKeyIdSize bytes: fingerprint of the signing key
  bytes signature;   // DER ECDSA or RSA-PSS, over the digest (or the batch root)
  std::optional<batch_proof> batch;   // present iff level == tpm_batch
  std::optional<session_mac> hop_mac;
  std::vector<session_mac> e2e_macs;
  bool operator==(const envelope_auth&) const = default;
};

// decode_limits bounds what a decoder accepts. The defaults suit the bus; a
// broker may lower them. Every limit is inclusive.
struct decode_limits {
  std::size_t max_signed_part = 1u << 20 | 8192;  // payload plus header room
  std::size_t max_payload = 1u << 20;
  std::size_t max_name = 128;          // sender, recipient, topic, suite
  std::size_t max_string = 256;        // content type, header keys and values
  std::size_t max_headers = 32;
  std::size_t max_auth_part = 64u << 10;
  std::size_t max_signature = 1024;
  std::size_t max_macs = 256;          // end-to-end MACs (one per topic recipient)
  std::size_t max_tag = 64;
  // max_path: more path nodes are too_large before any is read. A 32-bit leaf_count
  // needs at most 32, and a path must have exactly the length its (leaf_index,
  // leaf_count) implies (invalid_field otherwise): 32 refuses no valid path.
  std::size_t max_path = 32;
  std::size_t max_depth = 4;           // MessagePack nesting
};

// encode_signed_part serialises a header to its canonical MessagePack bytes.
bytes encode_signed_part(const envelope_header& header);

// decode_signed_part parses and validates untrusted bytes. It rejects anything
// that encode_signed_part would not produce for a valid header: wrong types,
// wrong array lengths, over-limit sizes, duplicate header keys, trailing bytes.
result<envelope_header> decode_signed_part(byte_view bytes, const decode_limits& limits = {});

bytes encode_auth_part(const envelope_auth& auth);
// This form encodes `hop_mac` (nullptr: none) in place of auth.hop_mac: a broker
// re-MACs every forwarded envelope without copying its auth part first.
bytes encode_auth_part(const envelope_auth& auth, const session_mac* hop_mac);
result<envelope_auth> decode_auth_part(byte_view bytes, const decode_limits& limits = {});

// envelope_digest is H(signed part bytes) with the suite's envelope hash. The
// signature in direct mode signs this digest, so `openssl dgst -<hash> -verify`
// over the signed-part bytes checks it.
bytes envelope_digest(hash_algorithm h, byte_view signed_part);

// hop_mac_input and e2e_mac_input build the byte strings that the hop MAC and an
// end-to-end MAC authenticate (schemas/envelope.md, "MAC inputs"). They bind the
// digest, the assurance level, the key id and the signature, so a MAC cannot be
// moved to another envelope or another signature.
bytes hop_mac_input(byte_view digest, const envelope_auth& auth);
bytes e2e_mac_input(byte_view digest, const envelope_auth& auth, std::string_view recipient);

// A wire batch carries several envelopes in one multipart message under a single
// hop MAC (schemas/envelope.md §7.3): the envelopes' auth parts have no hop MAC of
// their own; the batch MAC authenticates every envelope's hop_mac_input, in frame
// order, each with its length, so no envelope can be added, dropped, reordered or
// altered without breaking it.
struct wire_batch_item {
  byte_view digest;
  const envelope_auth* auth = nullptr;
};
bytes wire_batch_mac_input(std::span<const wire_batch_item> items);
// The same bytes handed over in pieces (each valid only during the call), so a MAC
// can absorb a batch without building the whole input (~0.5 KB per envelope).
void wire_batch_mac_input_pieces(std::span<const wire_batch_item> items, const std::function<void(byte_view)>& piece);

}  // namespace agentbus

#pragma GCC visibility pop
