// envelope_codec.cpp — the signed part: canonical encoding, strict decoding, digest.
// schemas/envelope.md is the normative description; field numbers below are its.
#include <msgpack.hpp>

#include <cstdio>
#include <cstdlib>
#include <new>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "envelope/msgpack_reader.hpp"

namespace agentbus {

namespace envelope_wire {

void length_overflow(const char* what) noexcept {
  std::fprintf(stderr, "agentbus: envelope %s longer than 4 GiB cannot be encoded\n", what);
  std::abort();
}

}  // namespace envelope_wire

namespace {

using namespace envelope_wire;

constexpr std::uint64_t kMaxType = static_cast<std::uint64_t>(envelope_type::control);

bytes to_bytes(byte_view b) { return bytes(b.begin(), b.end()); }

// decode_fields is the second decoding layer: types, fixed sizes, per-field limits
// and value rules, in field order. The first layer (scan_object) has already proved
// the frame is one canonical object within the generic limits.
result<envelope_header> decode_fields(byte_view in, const decode_limits& limits) {
  cursor c(in);
  envelope_header h;
  std::size_t count = 0;
  std::uint64_t u = 0;
  std::string_view s;
  byte_view b;

  if (status st = c.read_array("signed part", count); !st) return st;
  if (status st = expect_fields("signed part", count, kSignedFields); !st) return st;

  // [0] version: check_version already proved it is 1.
  if (status st = c.read_uint("version", u); !st) return st;
  h.version = static_cast<std::uint32_t>(u);

  // [1] type
  if (status st = c.read_uint("type", u); !st) return st;
  if (u < 1 || u > kMaxType) return status{status_code::invalid_field, "type: " + std::to_string(u) + " is not 1..5"};
  h.type = static_cast<envelope_type>(u);

  // [2] message_id, [3] correlation_id
  if (status st = c.read_bin("message_id", b); !st) return st;
  if (b.size() != kMessageIdSize) return status{status_code::invalid_field, "message_id: not 16 bytes"};
  h.message_id = to_bytes(b);
  if (status st = c.read_bin("correlation_id", b); !st) return st;
  if (!b.empty() && b.size() != kMessageIdSize)
    return status{status_code::invalid_field, "correlation_id: neither empty nor 16 bytes"};
  h.correlation_id = to_bytes(b);

  // [4] sender
  if (status st = c.read_str("sender", s); !st) return st;
  if (status st = check_name("sender", s, limits.max_name, name_rule::token); !st) return st;
  h.sender = s;

  // [5] to_kind, [6] to: the kind decides the rule the name follows.
  if (status st = c.read_uint("to_kind", u); !st) return st;
  if (u > 1) return status{status_code::invalid_field, "to_kind: " + std::to_string(u) + " is not 0 or 1"};
  h.to_kind = static_cast<recipient_kind>(u);
  if (status st = c.read_str("to", s); !st) return st;
  if (status st = check_name("to", s, limits.max_name,
                             h.to_kind == recipient_kind::topic ? name_rule::topic : name_rule::token);
      !st)
    return st;
  h.to = s;

  // [7] sequence, [8] timestamp_ms: any uint64; replay rules live in the session layer.
  if (status st = c.read_uint("sequence", h.sequence); !st) return st;
  if (status st = c.read_uint("timestamp_ms", h.timestamp_ms); !st) return st;

  // [9] suite
  if (status st = c.read_str("suite", s); !st) return st;
  if (status st = check_name("suite", s, limits.max_name, name_rule::token); !st) return st;
  h.suite = s;

  // [10] content_type: may be empty (opaque payload).
  if (status st = c.read_str("content_type", s); !st) return st;
  if (s.size() > limits.max_string) return status{status_code::too_large, "content_type: too long"};
  if (!is_printable_ascii(s)) return status{status_code::invalid_field, "content_type: not printable ASCII"};
  h.content_type = s;

  // [11] headers
  if (status st = c.read_map("headers", count); !st) return st;
  if (count > limits.max_headers) return status{status_code::too_large, "headers: more than " + std::to_string(limits.max_headers)};
  h.headers.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::string_view key;
    std::string_view value;
    if (status st = c.read_str("header key", key); !st) return st;
    if (key.empty()) return status{status_code::invalid_field, "header key: empty"};
    if (key.size() > limits.max_string) return status{status_code::too_large, "header key: too long"};
    if (!is_token(key)) return status{status_code::invalid_field, "header key: not a valid name"};
    if (status st = c.read_str("header value", value); !st) return st;
    if (value.size() > limits.max_string) return status{status_code::too_large, "header value: too long"};
    if (!is_clean_utf8(value))
      return status{status_code::invalid_field, "header value: not UTF-8 or contains control characters"};
    h.headers.emplace_back(key, value);
  }
  if (has_duplicate(h.headers.size(), [&](std::size_t i) { return std::string_view(h.headers[i].first); }))
    return status{status_code::duplicate_key, "headers: a key appears twice"};

  // [12] payload
  if (status st = c.read_bin("payload", b); !st) return st;
  if (b.size() > limits.max_payload) return status{status_code::too_large, "payload: larger than " + std::to_string(limits.max_payload)};
  h.payload = to_bytes(b);

  // scan_object proved the frame is exactly one object and 13 fields were read.
  if (c.offset() != in.size()) return status{status_code::internal, "signed part: decoder out of step"};
  return h;
}

}  // namespace

bytes encode_signed_part(const envelope_header& h) {
  // One reservation: the payload dominates; names and headers are small and bounded.
  std::size_t estimate = 64 + h.message_id.size() + h.correlation_id.size() + h.sender.size() + h.to.size() +
                         h.suite.size() + h.content_type.size() + h.payload.size();
  for (const auto& [k, v] : h.headers) estimate += 10 + k.size() + v.size();
  bytes out;
  out.reserve(estimate);
  bytes_sink sink(out);
  msgpack::packer<bytes_sink> pk(sink);

  pk.pack_array(static_cast<std::uint32_t>(kSignedFields));
  pk.pack_uint32(h.version);
  pk.pack_uint8(static_cast<std::uint8_t>(h.type));
  pack_bin(pk, h.message_id);
  pack_bin(pk, h.correlation_id);
  pack_str(pk, h.sender);
  pk.pack_uint8(static_cast<std::uint8_t>(h.to_kind));
  pack_str(pk, h.to);
  pk.pack_uint64(h.sequence);
  pk.pack_uint64(h.timestamp_ms);
  pack_str(pk, h.suite);
  pack_str(pk, h.content_type);
  pk.pack_map(wire_length(h.headers.size(), "header map"));
  for (const auto& [k, v] : h.headers) {
    pack_str(pk, k);
    pack_str(pk, v);
  }
  pack_bin(pk, h.payload);
  return out;
}

result<envelope_header> decode_signed_part(byte_view in, const decode_limits& limits) {
  return guarded_decode(in, limits.max_signed_part, "signed part", limits, decode_fields);
}

bytes envelope_digest(hash_algorithm h, byte_view signed_part) { return crypto::digest(h, signed_part); }

}  // namespace agentbus
