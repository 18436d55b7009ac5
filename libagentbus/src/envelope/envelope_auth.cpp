// envelope_auth.cpp — the auth part: canonical encoding, strict decoding, and the
// byte strings the hop MAC and the end-to-end MACs authenticate.
// schemas/envelope.md is the normative description; field numbers below are its.
#include <msgpack.hpp>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>

#include "agentbus/envelope.hpp"
#include "envelope/merkle.hpp"
#include "envelope/msgpack_reader.hpp"

namespace agentbus {
namespace {

using namespace envelope_wire;

constexpr std::string_view kHopLabel = "agentbus-v1-hop";
constexpr std::string_view kE2eLabel = "agentbus-v1-e2e";
constexpr std::string_view kWireBatchLabel = "agentbus-v1-hop-batch";

bytes to_bytes(byte_view b) { return bytes(b.begin(), b.end()); }

status read_session_id(cursor& c, const char* what, bytes& out) {
  byte_view b;
  if (status st = c.read_bin(what, b); !st) return st;
  if (b.size() != kSessionIdSize) return {status_code::invalid_field, std::string(what) + ": not 16 bytes"};
  out = to_bytes(b);
  return {};
}

status read_tag(cursor& c, const char* what, std::size_t max_tag, bytes& out) {
  byte_view b;
  if (status st = c.read_bin(what, b); !st) return st;
  if (b.empty()) return {status_code::invalid_field, std::string(what) + ": empty"};
  if (b.size() > max_tag) return {status_code::too_large, std::string(what) + ": longer than " + std::to_string(max_tag)};
  out = to_bytes(b);
  return {};
}

status read_batch_proof(cursor& c, const decode_limits& limits, batch_proof& proof) {
  std::size_t count = 0;
  std::uint64_t index = 0;
  std::uint64_t leaves = 0;
  if (status st = c.read_array("batch", count); !st) return st;
  if (status st = expect_fields("batch", count, 3); !st) return st;
  if (status st = c.read_uint("batch.leaf_index", index); !st) return st;
  if (status st = c.read_uint("batch.leaf_count", leaves); !st) return st;
  if (leaves == 0 || leaves > 0xffffffffu) return {status_code::invalid_field, "batch.leaf_count: not 1..2^32-1"};
  if (index >= leaves) return {status_code::invalid_field, "batch.leaf_index: not below leaf_count"};
  if (status st = c.read_array("batch.path", count); !st) return st;
  if (count > limits.max_path) return {status_code::too_large, "batch.path: longer than " + std::to_string(limits.max_path)};
  // Range-checked above, so the narrowing is exact; one definition of the tree shape.
  if (count != merkle::path_length(static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(leaves)))
    return {status_code::invalid_field, "batch.path: length does not fit leaf_index and leaf_count"};
  proof.leaf_index = static_cast<std::uint32_t>(index);
  proof.leaf_count = static_cast<std::uint32_t>(leaves);
  proof.path.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    byte_view b;
    if (status st = c.read_bin("batch.path[]", b); !st) return st;
    // The suite (in the signed part) fixes the hash size; here every node just has
    // to be one plausible hash and all the same size.
    if (b.size() < kMinHashSize || b.size() > kMaxHashSize || (i > 0 && b.size() != proof.path[0].size()))
      return {status_code::invalid_field, "batch.path[]: not one hash size of 32..64 bytes"};
    proof.path.push_back(to_bytes(b));
  }
  return {};
}

result<envelope_auth> decode_fields(byte_view in, const decode_limits& limits) {
  cursor c(in);
  envelope_auth a;
  std::size_t count = 0;
  std::uint64_t u = 0;
  std::string_view s;
  byte_view b;

  if (status st = c.read_array("auth part", count); !st) return st;
  if (status st = expect_fields("auth part", count, kAuthFields); !st) return st;

  // [0] version: check_version already proved it is 1.
  if (status st = c.read_uint("version", u); !st) return st;
  a.version = static_cast<std::uint32_t>(u);

  // [1] assurance
  if (status st = c.read_str("assurance", s); !st) return st;
  auto level = parse_assurance(s);
  if (!level) return status{status_code::invalid_field, "assurance: not tpm, tpm-batch or software"};
  a.level = *level;

  // [2] key_id
  if (status st = c.read_bin("key_id", b); !st) return st;
  if (b.size() != kKeyIdSize) return status{status_code::invalid_field, "key_id: not 32 bytes"};
  a.key_id = to_bytes(b);

  // [3] signature
  if (status st = c.read_bin("signature", b); !st) return st;
  if (b.empty()) return status{status_code::invalid_field, "signature: empty"};
  const std::size_t max_signature = std::min(limits.max_signature, kMaxSignatureCap);
  if (b.size() > max_signature)
    return status{status_code::too_large, "signature: longer than " + std::to_string(max_signature)};
  a.signature = to_bytes(b);

  // [4] batch proof: present exactly when the assurance says the signature covers
  // a Merkle root, so a verifier never has to guess which mode applies.
  if (!c.take_nil()) {
    batch_proof proof;
    if (status st = read_batch_proof(c, limits, proof); !st) return st;
    a.batch = std::move(proof);
  }
  if (a.batch.has_value() != (a.level == assurance::tpm_batch))
    return status{status_code::invalid_field, a.batch ? "batch: present but assurance is not tpm-batch"
                                                      : "batch: absent but assurance is tpm-batch"};

  // [5] hop MAC
  if (!c.take_nil()) {
    session_mac mac;
    if (status st = c.read_array("hop_mac", count); !st) return st;
    if (status st = expect_fields("hop_mac", count, 2); !st) return st;
    if (status st = read_session_id(c, "hop_mac.session_id", mac.session_id); !st) return st;
    if (status st = read_tag(c, "hop_mac.tag", limits.max_tag, mac.tag); !st) return st;
    a.hop_mac = std::move(mac);
  }

  // [6] end-to-end MACs
  if (status st = c.read_array("e2e_macs", count); !st) return st;
  if (count > limits.max_macs) return status{status_code::too_large, "e2e_macs: more than " + std::to_string(limits.max_macs)};
  a.e2e_macs.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t fields = 0;
    session_mac mac;
    if (status st = c.read_array("e2e_macs[]", fields); !st) return st;
    if (status st = expect_fields("e2e_macs[]", fields, 3); !st) return st;
    if (status st = c.read_str("e2e_macs[].recipient", s); !st) return st;
    if (status st = check_name("e2e_macs[].recipient", s, limits.max_name, name_rule::token); !st) return st;
    mac.recipient = s;
    if (status st = read_session_id(c, "e2e_macs[].session_id", mac.session_id); !st) return st;
    if (status st = read_tag(c, "e2e_macs[].tag", limits.max_tag, mac.tag); !st) return st;
    a.e2e_macs.push_back(std::move(mac));
  }
  // A recipient looks its MAC up by name: two for one name would make "which one"
  // a verifier's guess.
  if (has_duplicate(a.e2e_macs.size(), [&](std::size_t i) { return std::string_view(a.e2e_macs[i].recipient); }))
    return status{status_code::duplicate_key, "e2e_macs: a recipient appears twice"};

  if (c.offset() != in.size()) return status{status_code::internal, "auth part: decoder out of step"};
  return a;
}

std::uint8_t assurance_code(assurance level) noexcept {
  switch (level) {
    case assurance::tpm: return 1;
    case assurance::tpm_batch: return 2;
    case assurance::software: return 3;
  }
  return 0;
}

// MAC inputs carry lengths in one or two bytes; the decoder's caps keep untrusted
// fields within them, so only a local caller passing nonsense gets here.
[[noreturn]] void mac_input_overflow(const char* what) noexcept {
  std::fprintf(stderr, "agentbus: MAC input field %s exceeds its length prefix\n", what);
  std::abort();
}

void put_u8_len(bytes& out, byte_view field, const char* what) {
  if (field.size() > 0xff) mac_input_overflow(what);
  out.push_back(static_cast<std::uint8_t>(field.size()));
  out.insert(out.end(), field.begin(), field.end());
}

void put_u32(bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

// mac_input builds label || 0x00 || the common body (schemas/envelope.md, "MAC
// inputs") and reserves room for `tail` more bytes.
// append_mac_input appends it to `out` (a buffer reused across envelopes).
void append_mac_input(bytes& out, std::string_view label, byte_view digest, const envelope_auth& a, std::size_t tail) {
  std::size_t size = label.size() + 1 + 1 + digest.size() + 1 + 1 + a.key_id.size() + 2 + a.signature.size() + 1 + tail;
  if (a.batch) {
    size += 9;
    for (const auto& node : a.batch->path) size += 1 + node.size();
  }
  out.reserve(out.size() + size);
  out.insert(out.end(), label.begin(), label.end());
  out.push_back(0x00);
  put_u8_len(out, digest, "digest");
  out.push_back(assurance_code(a.level));
  put_u8_len(out, a.key_id, "key_id");
  if (a.signature.size() > 0xffff) mac_input_overflow("signature");
  out.push_back(static_cast<std::uint8_t>(a.signature.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(a.signature.size()));
  out.insert(out.end(), a.signature.begin(), a.signature.end());
  // The batch proof is bound too: otherwise leaf_index/leaf_count could be changed
  // in transit without breaking the MACs (e.g. index 2 of 3 and index 1 of 2 hash
  // the same way), and the MAC would not cover everything a verifier acts on.
  if (!a.batch) {
    out.push_back(0x00);
  } else {
    out.push_back(0x01);
    put_u32(out, a.batch->leaf_index);
    put_u32(out, a.batch->leaf_count);
    if (a.batch->path.size() > 0xff) mac_input_overflow("batch path");
    out.push_back(static_cast<std::uint8_t>(a.batch->path.size()));
    for (const auto& node : a.batch->path) put_u8_len(out, node, "batch path node");
  }
}

bytes mac_input(std::string_view label, byte_view digest, const envelope_auth& a, std::size_t tail) {
  bytes out;
  append_mac_input(out, label, digest, a, tail);
  return out;
}

}  // namespace

bytes encode_auth_part(const envelope_auth& a) { return encode_auth_part(a, a.hop_mac ? &*a.hop_mac : nullptr); }

bytes encode_auth_part(const envelope_auth& a, const session_mac* hop_mac) {
  bytes out;
  out.reserve(128 + a.signature.size() + 48 * (a.batch ? a.batch->path.size() : 0) + 96 * a.e2e_macs.size());
  bytes_sink sink(out);
  msgpack::packer<bytes_sink> pk(sink);

  pk.pack_array(static_cast<std::uint32_t>(kAuthFields));
  pk.pack_uint32(a.version);
  pack_str(pk, assurance_name(a.level));
  pack_bin(pk, a.key_id);
  pack_bin(pk, a.signature);
  if (a.batch) {
    pk.pack_array(3);
    pk.pack_uint32(a.batch->leaf_index);
    pk.pack_uint32(a.batch->leaf_count);
    pk.pack_array(wire_length(a.batch->path.size(), "batch path"));
    for (const auto& node : a.batch->path) pack_bin(pk, node);
  } else {
    pk.pack_nil();
  }
  if (hop_mac) {
    pk.pack_array(2);
    pack_bin(pk, hop_mac->session_id);
    pack_bin(pk, hop_mac->tag);
  } else {
    pk.pack_nil();
  }
  pk.pack_array(wire_length(a.e2e_macs.size(), "e2e MAC list"));
  for (const auto& mac : a.e2e_macs) {
    pk.pack_array(3);
    pack_str(pk, mac.recipient);
    pack_bin(pk, mac.session_id);
    pack_bin(pk, mac.tag);
  }
  return out;
}

result<envelope_auth> decode_auth_part(byte_view in, const decode_limits& limits) {
  return guarded_decode(in, limits.max_auth_part, "auth part", limits, decode_fields);
}

bytes hop_mac_input(byte_view digest, const envelope_auth& auth) { return mac_input(kHopLabel, digest, auth, 0); }

bytes e2e_mac_input(byte_view digest, const envelope_auth& auth, std::string_view recipient) {
  bytes out = mac_input(kE2eLabel, digest, auth, 1 + recipient.size());
  put_u8_len(out, as_bytes(recipient), "recipient");
  return out;
}

void wire_batch_mac_input_pieces(std::span<const wire_batch_item> items, const std::function<void(byte_view)>& piece) {
  if (items.size() > 0xffffffffu) mac_input_overflow("wire batch count");
  bytes buffer;  // one buffer for the header and every member's input
  buffer.insert(buffer.end(), kWireBatchLabel.begin(), kWireBatchLabel.end());
  buffer.push_back(0x00);
  put_u32(buffer, static_cast<std::uint32_t>(items.size()));
  piece(buffer);
  for (const auto& item : items) {
    buffer.assign(4, 0);  // the member's length, filled in below
    append_mac_input(buffer, kHopLabel, item.digest, *item.auth, 0);
    const auto length = static_cast<std::uint32_t>(buffer.size() - 4);
    for (int i = 0; i < 4; ++i) buffer[i] = static_cast<std::uint8_t>(length >> (24 - 8 * i));
    piece(buffer);
  }
}

bytes wire_batch_mac_input(std::span<const wire_batch_item> items) {
  bytes out;
  wire_batch_mac_input_pieces(items, [&](byte_view p) { out.insert(out.end(), p.begin(), p.end()); });
  return out;
}

}  // namespace agentbus
