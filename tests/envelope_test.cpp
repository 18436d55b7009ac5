// envelope_test — the envelope codec: round trips of both parts, every decode
// limit and rejection with its status code, hostile length headers and nesting,
// a fixed-seed mutation loop, and the MAC inputs' binding of every field.
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "envelope/msgpack_reader.hpp"

namespace agentbus {
namespace {

// ---- Building blocks ----

template <typename F>
bytes pack(F f) {
  msgpack::sbuffer sb;
  msgpack::packer<msgpack::sbuffer> pk(sb);
  f(pk);
  return bytes(sb.data(), sb.data() + sb.size());
}

bytes mp_uint(std::uint64_t v) { return pack([&](auto& pk) { pk.pack_uint64(v); }); }
bytes mp_str(std::string_view s) {
  return pack([&](auto& pk) {
    pk.pack_str(static_cast<std::uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
  });
}
bytes mp_bin(std::size_t n, std::uint8_t fill = 0xab) {
  bytes body(n, fill);
  return pack([&](auto& pk) {
    pk.pack_bin(static_cast<std::uint32_t>(n));
    pk.pack_bin_body(reinterpret_cast<const char*>(body.data()), static_cast<std::uint32_t>(n));
  });
}
bytes mp_array(std::size_t n) { return pack([&](auto& pk) { pk.pack_array(static_cast<std::uint32_t>(n)); }); }
bytes mp_map(std::size_t n) { return pack([&](auto& pk) { pk.pack_map(static_cast<std::uint32_t>(n)); }); }
bytes raw(std::initializer_list<int> b) {
  bytes out;
  for (int x : b) out.push_back(static_cast<std::uint8_t>(x));
  return out;
}
bytes cat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
bytes nested_arrays(std::size_t depth) {
  bytes out(depth, 0x91);  // fixarray of one element, `depth` times
  out.push_back(0x01);
  return out;
}

// object_end returns the offset just past the object at `pos` (test inputs only).
std::size_t object_end(byte_view in, std::size_t pos) {
  envelope_wire::mp_head h;
  if (!envelope_wire::read_head(in, pos, h)) throw std::runtime_error("test input is not MessagePack");
  pos += h.size;
  switch (h.kind) {
    case envelope_wire::mp_kind::str:
    case envelope_wire::mp_kind::bin:
    case envelope_wire::mp_kind::ext:
      return pos + h.value;
    case envelope_wire::mp_kind::array:
      for (std::uint64_t i = 0; i < h.value; ++i) pos = object_end(in, pos);
      return pos;
    case envelope_wire::mp_kind::map:
      for (std::uint64_t i = 0; i < 2 * h.value; ++i) pos = object_end(in, pos);
      return pos;
    default:
      return pos;
  }
}

// elements splits a top-level array frame into the encodings of its elements.
std::vector<bytes> elements(const bytes& frame) {
  envelope_wire::mp_head h;
  if (!envelope_wire::read_head(frame, 0, h)) throw std::runtime_error("not an array");
  std::vector<bytes> out;
  std::size_t pos = h.size;
  for (std::uint64_t i = 0; i < h.value; ++i) {
    std::size_t end = object_end(frame, pos);
    out.emplace_back(frame.begin() + static_cast<std::ptrdiff_t>(pos), frame.begin() + static_cast<std::ptrdiff_t>(end));
    pos = end;
  }
  return out;
}

bytes assemble(const std::vector<bytes>& elems) {
  bytes out = mp_array(elems.size());
  for (const auto& e : elems) out.insert(out.end(), e.begin(), e.end());
  return out;
}

bytes with_element(const bytes& frame, std::size_t index, const bytes& replacement) {
  auto elems = elements(frame);
  elems.at(index) = replacement;
  return assemble(elems);
}

enum signed_field : std::size_t {
  kVersion, kType, kMessageId, kCorrelationId, kSender, kToKind, kTo, kSequence, kTimestamp, kSuite,
  kContentType, kHeaders, kPayload
};
enum auth_field : std::size_t { kAuthVersion, kAssurance, kKeyId, kSignature, kBatch, kHopMac, kE2eMacs };

envelope_header sample_header() {
  envelope_header h;
  h.type = envelope_type::request;
  h.message_id = bytes(16, 0x11);
  h.sender = "monitor-1";
  h.to_kind = recipient_kind::agent;
  h.to = "director-1";
  h.sequence = 7;
  h.timestamp_ms = 1767225600000;
  h.suite = "ecdsa-p256-sha256";
  h.content_type = "application/json";
  h.headers = {{"trace-id", "abc"}, {"priority", "high"}};
  h.payload = bytes{'{', '}'};
  return h;
}

envelope_auth sample_auth(assurance level = assurance::tpm) {
  envelope_auth a;
  a.level = level;
  a.key_id = bytes(32, 0x22);
  a.signature = bytes(71, 0x33);
  if (level == assurance::tpm_batch) a.batch = batch_proof{2, 5, {bytes(32, 1), bytes(32, 2), bytes(32, 3)}};
  a.hop_mac = session_mac{"", bytes(16, 0x44), bytes(32, 0x55)};
  a.e2e_macs = {session_mac{"director-1", bytes(16, 0x66), bytes(32, 0x77)}};
  return a;
}

template <typename T>
::testing::AssertionResult fails_with(const result<T>& r, status_code code) {
  if (r.ok()) return ::testing::AssertionFailure() << "decoded, expected " << status_code_name(code);
  if (r.error().code() != code)
    return ::testing::AssertionFailure() << "got " << r.error().to_string() << ", expected " << status_code_name(code);
  return ::testing::AssertionSuccess();
}

template <typename T>
::testing::AssertionResult decodes(const result<T>& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.error().to_string();
}

::testing::AssertionResult signed_fails(const envelope_header& h, status_code code, const decode_limits& l = {}) {
  return fails_with(decode_signed_part(encode_signed_part(h), l), code);
}
::testing::AssertionResult auth_fails(const envelope_auth& a, status_code code, const decode_limits& l = {}) {
  return fails_with(decode_auth_part(encode_auth_part(a), l), code);
}

void expect_signed_round_trip(const envelope_header& h, const decode_limits& l = {}) {
  const bytes wire = encode_signed_part(h);
  auto back = decode_signed_part(wire, l);
  ASSERT_TRUE(decodes(back));
  EXPECT_EQ(*back, h);
  EXPECT_EQ(encode_signed_part(*back), wire);
}

void expect_auth_round_trip(const envelope_auth& a, const decode_limits& l = {}) {
  const bytes wire = encode_auth_part(a);
  auto back = decode_auth_part(wire, l);
  ASSERT_TRUE(decodes(back));
  EXPECT_EQ(*back, a);
  EXPECT_EQ(encode_auth_part(*back), wire);
}

// ---- Round trips ----

TEST(envelope_signed_part, round_trips_every_type_and_recipient_kind) {
  for (auto type : {envelope_type::data, envelope_type::request, envelope_type::reply, envelope_type::error,
                    envelope_type::control}) {
    for (auto kind : {recipient_kind::agent, recipient_kind::topic}) {
      SCOPED_TRACE(static_cast<int>(type) * 10 + static_cast<int>(kind));
      envelope_header h = sample_header();
      h.type = type;
      h.to_kind = kind;
      h.to = kind == recipient_kind::topic ? "metrics/cpu/load.avg" : "optimizer_2";
      if (type == envelope_type::reply) h.correlation_id = bytes(16, 0x99);
      expect_signed_round_trip(h);
    }
  }
}

TEST(envelope_signed_part, round_trips_empty_and_maximum_payload) {
  envelope_header h = sample_header();
  h.payload.clear();
  h.headers.clear();
  h.content_type.clear();
  expect_signed_round_trip(h);
  const decode_limits limits;
  h.payload = bytes(limits.max_payload, 0x5a);
  h.payload.front() = 0x00;
  h.payload.back() = 0xff;
  expect_signed_round_trip(h);
}

TEST(envelope_signed_part, round_trips_integer_and_length_boundaries) {
  // Each boundary switches the MessagePack form (fixint, uint8/16/32/64; fixstr,
  // str8/16; bin8/16/32); the decoder must accept exactly the packer's choice.
  for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{127}, std::uint64_t{128}, std::uint64_t{255},
                          std::uint64_t{256}, std::uint64_t{65535}, std::uint64_t{65536}, std::uint64_t{0xffffffff},
                          std::uint64_t{0x100000000}, std::numeric_limits<std::uint64_t>::max()}) {
    SCOPED_TRACE(v);
    envelope_header h = sample_header();
    h.sequence = v;
    h.timestamp_ms = ~v;
    expect_signed_round_trip(h);
  }
  decode_limits wide;
  wide.max_string = 70000;
  for (std::size_t n : {31u, 32u, 255u, 256u, 65535u, 65536u}) {
    SCOPED_TRACE(n);
    envelope_header h = sample_header();
    h.headers = {{"k", std::string(n, 'v')}};
    h.payload = bytes(n, 0x01);
    expect_signed_round_trip(h, wide);
  }
}

TEST(envelope_signed_part, round_trips_names_and_headers_at_their_limits) {
  const decode_limits limits;
  envelope_header h = sample_header();
  h.sender = std::string(limits.max_name, 's');
  h.to = std::string(limits.max_name, 't');
  h.suite = std::string(limits.max_name, 'u');
  h.content_type = std::string(limits.max_string, 'c');
  h.correlation_id = bytes(16, 0xcc);
  h.headers.clear();
  for (std::size_t i = 0; i < limits.max_headers; ++i)
    h.headers.emplace_back(std::to_string(i) + std::string(limits.max_string - 3, 'k'), std::string(limits.max_string, 'v'));
  expect_signed_round_trip(h);
}

TEST(envelope_signed_part, keeps_header_order_and_unicode_values) {
  envelope_header h = sample_header();
  h.headers = {{"z", "last-first"}, {"a", "Grüße ✓ 😀"}, {"m.n_o-p", ""}};
  h.content_type = "text/plain; charset=utf-8";
  expect_signed_round_trip(h);
}

TEST(envelope_signed_part, encoding_is_plain_canonical_messagepack) {
  // A generic MessagePack library reads what we write, with the documented types.
  const envelope_header h = sample_header();
  const bytes wire = encode_signed_part(h);
  EXPECT_EQ(wire[0], 0x9d);  // fixarray of 13
  EXPECT_EQ(wire[1], 0x01);  // version 1
  EXPECT_EQ(wire[2], 0x02);  // request
  msgpack::unpack_limit limit(16, 16, 1024, 1 << 21, 0, 4);
  msgpack::object_handle oh =
      msgpack::unpack(reinterpret_cast<const char*>(wire.data()), wire.size(), nullptr, nullptr, limit);
  const msgpack::object& o = oh.get();
  ASSERT_EQ(o.type, msgpack::type::ARRAY);
  ASSERT_EQ(o.via.array.size, 13u);
  const msgpack::type::object_type expected[] = {
      msgpack::type::POSITIVE_INTEGER, msgpack::type::POSITIVE_INTEGER, msgpack::type::BIN, msgpack::type::BIN,
      msgpack::type::STR, msgpack::type::POSITIVE_INTEGER, msgpack::type::STR, msgpack::type::POSITIVE_INTEGER,
      msgpack::type::POSITIVE_INTEGER, msgpack::type::STR, msgpack::type::STR, msgpack::type::MAP, msgpack::type::BIN};
  for (std::size_t i = 0; i < 13; ++i) EXPECT_EQ(o.via.array.ptr[i].type, expected[i]) << "field " << i;
  EXPECT_EQ(o.via.array.ptr[4].as<std::string>(), "monitor-1");
  EXPECT_EQ(o.via.array.ptr[8].as<std::uint64_t>(), h.timestamp_ms);
  EXPECT_EQ(o.via.array.ptr[11].via.map.size, 2u);
}

TEST(envelope_auth_part, round_trips_every_assurance_and_mac_layout) {
  for (auto level : {assurance::tpm, assurance::tpm_batch, assurance::software}) {
    SCOPED_TRACE(std::string(assurance_name(level)));
    envelope_auth a = sample_auth(level);
    expect_auth_round_trip(a);
    a.hop_mac.reset();
    expect_auth_round_trip(a);
    a.e2e_macs.clear();
    expect_auth_round_trip(a);
  }
}

TEST(envelope_auth_part, round_trips_many_macs_and_size_limits) {
  const decode_limits limits;
  envelope_auth a = sample_auth();
  a.signature = bytes(limits.max_signature, 0x01);
  a.hop_mac->tag = bytes(limits.max_tag, 0x02);
  a.e2e_macs.clear();
  for (std::size_t i = 0; i < limits.max_macs; ++i)
    a.e2e_macs.push_back(session_mac{"agent-" + std::to_string(i), bytes(16, static_cast<std::uint8_t>(i)),
                                     bytes(i % limits.max_tag + 1, 0x03)});
  expect_auth_round_trip(a);
  a.signature = bytes(1, 0x30);
  a.e2e_macs.resize(1);
  a.e2e_macs[0].recipient = std::string(limits.max_name, 'r');
  expect_auth_round_trip(a);
}

TEST(envelope_auth_part, round_trips_batch_proofs_of_every_shape) {
  // leaf = H(0x00||d), node = H(0x01||l||r), an odd last node promoted: the path
  // length depends on index and count, and the decoder insists on the exact one.
  for (std::uint32_t count = 1; count <= 40; ++count) {
    for (std::uint32_t index = 0; index < count; ++index) {
      std::size_t expected = 0;
      for (std::uint64_t i = index, n = count; n > 1; i /= 2, n = (n + 1) / 2)
        if (i % 2 == 1 || i + 1 < n) ++expected;
      SCOPED_TRACE(std::to_string(index) + " of " + std::to_string(count));
      envelope_auth a = sample_auth(assurance::tpm_batch);
      a.batch = batch_proof{index, count, std::vector<bytes>(expected, bytes(48, 0x0b))};
      expect_auth_round_trip(a);
      a.batch->path.push_back(bytes(48, 0x0c));
      EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
      if (expected > 0) {
        a.batch->path.resize(expected - 1);
        EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
      }
    }
  }
  envelope_auth a = sample_auth(assurance::tpm_batch);
  a.batch = batch_proof{0, 0xffffffff, std::vector<bytes>(32, bytes(64, 0x0d))};  // the deepest tree
  expect_auth_round_trip(a);
}

// ---- Frame-level rejections ----

TEST(envelope_decode, rejects_empty_input) {
  EXPECT_TRUE(fails_with(decode_signed_part({}), status_code::malformed));
  EXPECT_TRUE(fails_with(decode_auth_part({}), status_code::malformed));
}

TEST(envelope_decode, rejects_frames_over_the_size_limit_before_parsing) {
  decode_limits limits;
  limits.max_signed_part = 64;
  limits.max_auth_part = 64;
  bytes junk(65, 0xc1);  // not even MessagePack: the size check comes first
  EXPECT_TRUE(fails_with(decode_signed_part(junk, limits), status_code::too_large));
  EXPECT_TRUE(fails_with(decode_auth_part(junk, limits), status_code::too_large));
  const decode_limits defaults;
  bytes big(defaults.max_signed_part + 1, 0x00);
  EXPECT_TRUE(fails_with(decode_signed_part(big), status_code::too_large));
  bytes big_auth(defaults.max_auth_part + 1, 0x00);
  EXPECT_TRUE(fails_with(decode_auth_part(big_auth), status_code::too_large));
}

TEST(envelope_decode, rejects_every_truncation) {
  const bytes s = encode_signed_part(sample_header());
  for (std::size_t n = 0; n < s.size(); ++n)
    EXPECT_TRUE(fails_with(decode_signed_part(byte_view(s).first(n)), status_code::malformed)) << n;
  const bytes a = encode_auth_part(sample_auth(assurance::tpm_batch));
  for (std::size_t n = 0; n < a.size(); ++n)
    EXPECT_TRUE(fails_with(decode_auth_part(byte_view(a).first(n)), status_code::malformed)) << n;
}

TEST(envelope_decode, rejects_a_wrong_top_level_type) {
  for (const bytes& b : {mp_map(0), cat({mp_map(1), mp_uint(1), mp_uint(1)}), mp_str("envelope"), mp_uint(1),
                         raw({0xc0}), raw({0xc3}), mp_bin(13), mp_array(0), raw({0xc1}), raw({0xd4, 0x01, 0x00})}) {
    SCOPED_TRACE(to_hex(b));
    EXPECT_TRUE(fails_with(decode_signed_part(b), status_code::malformed));
    EXPECT_TRUE(fails_with(decode_auth_part(b), status_code::malformed));
  }
}

TEST(envelope_decode, rejects_a_wrong_array_length) {
  auto s = elements(encode_signed_part(sample_header()));
  auto shorter = s;
  shorter.pop_back();
  auto longer = s;
  longer.push_back(mp_uint(0));
  EXPECT_TRUE(fails_with(decode_signed_part(assemble(shorter)), status_code::malformed));
  EXPECT_TRUE(fails_with(decode_signed_part(assemble(longer)), status_code::malformed));
  EXPECT_TRUE(fails_with(decode_signed_part(assemble({mp_uint(1)})), status_code::malformed));

  auto a = elements(encode_auth_part(sample_auth()));
  auto a_short = a;
  a_short.pop_back();
  auto a_long = a;
  a_long.push_back(raw({0xc0}));
  EXPECT_TRUE(fails_with(decode_auth_part(assemble(a_short)), status_code::malformed));
  EXPECT_TRUE(fails_with(decode_auth_part(assemble(a_long)), status_code::malformed));
}

TEST(envelope_decode, rejects_other_versions_whatever_their_layout) {
  for (std::uint32_t v : {0u, 2u, 255u, 0xffffffffu}) {
    SCOPED_TRACE(v);
    envelope_header h = sample_header();
    h.version = v;
    EXPECT_TRUE(signed_fails(h, status_code::unsupported_version));
    envelope_auth a = sample_auth();
    a.version = v;
    EXPECT_TRUE(auth_fails(a, status_code::unsupported_version));
  }
  // A future version may have other fields; it is still named for what it is.
  const bytes v2 = cat({mp_array(3), mp_uint(2), mp_str("x"), raw({0xc0})});
  EXPECT_TRUE(fails_with(decode_signed_part(v2), status_code::unsupported_version));
  EXPECT_TRUE(fails_with(decode_auth_part(v2), status_code::unsupported_version));
  EXPECT_TRUE(fails_with(decode_signed_part(cat({mp_array(1), mp_uint(0x100000001)})), status_code::unsupported_version));
  // A version that is not a uint is not a version.
  const bytes s = encode_signed_part(sample_header());
  EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kVersion, mp_str("1"))), status_code::malformed));
  EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kVersion, raw({0xd0, 0x01}))), status_code::malformed));
}

TEST(envelope_decode, rejects_huge_length_headers_without_allocating) {
  const auto started = std::chrono::steady_clock::now();
  struct hostile {
    bytes input;
    status_code code;
  };
  const bytes prefix = cat({mp_array(13), mp_uint(1), mp_uint(1)});  // up to a bin field
  // Enough bytes behind the hostile head that the outer array's 13 items could fit,
  // so the head itself is what gets judged.
  const bytes pad(16, 0x00);
  const std::vector<hostile> cases = {
      {raw({0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03}), status_code::too_large},       // array32 of 4G
      {raw({0xdd, 0xff, 0xff, 0xff, 0xff}), status_code::malformed},                         // and nothing behind
      {cat({prefix, raw({0xc6, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00}), pad}), status_code::too_large},  // bin32 of 4G
      {cat({prefix, raw({0xdb, 0xff, 0xff, 0xff, 0xff, 0x61}), pad}), status_code::too_large},    // str32 of 4G
      {cat({prefix, raw({0xdf, 0xff, 0xff, 0xff, 0xff, 0xa0}), pad}), status_code::too_large},    // map32 of 4G
      {cat({prefix, raw({0xdd, 0xff, 0xff, 0xff, 0xff, 0x90}), pad}), status_code::too_large},    // nested array32
      {cat({prefix, raw({0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}), pad}), status_code::malformed},    // ext32: never used
      {cat({prefix, raw({0xc6, 0x00, 0x10, 0x00, 0x00, 0x00}), pad}), status_code::malformed},    // 1 MiB promised, 17 there
      {cat({prefix, raw({0xdc, 0x00, 0xc8, 0x01}), pad}), status_code::malformed},                // 200 items promised, 17 bytes
      {cat({prefix, raw({0xde, 0x00, 0x20, 0xa1, 0x61}), pad}), status_code::malformed},          // 32 pairs promised
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(to_hex(c.input));
    EXPECT_TRUE(fails_with(decode_signed_part(c.input), c.code));
    EXPECT_TRUE(fails_with(decode_auth_part(c.input), c.code));
  }
  // Even limits of "anything goes" do not make a length header an allocation.
  decode_limits open;
  open.max_signed_part = open.max_auth_part = open.max_payload = open.max_string = open.max_name =
      open.max_headers = open.max_signature = open.max_macs = open.max_tag = open.max_path =
          std::numeric_limits<std::size_t>::max();
  for (const auto& c : cases) {
    SCOPED_TRACE(to_hex(c.input));
    auto r = decode_signed_part(c.input, open);
    EXPECT_FALSE(r.ok());
    auto q = decode_auth_part(c.input, open);
    EXPECT_FALSE(q.ok());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(envelope_decode, rejects_trailing_bytes) {
  const bytes s = encode_signed_part(sample_header());
  EXPECT_TRUE(fails_with(decode_signed_part(cat({s, raw({0x00})})), status_code::trailing_bytes));
  EXPECT_TRUE(fails_with(decode_signed_part(cat({s, s})), status_code::trailing_bytes));
  const bytes a = encode_auth_part(sample_auth());
  EXPECT_TRUE(fails_with(decode_auth_part(cat({a, raw({0xc0})})), status_code::trailing_bytes));
  EXPECT_TRUE(fails_with(decode_auth_part(cat({a, a})), status_code::trailing_bytes));
}

TEST(envelope_decode, rejects_deep_nesting) {
  const bytes s = encode_signed_part(sample_header());
  // 1000 nested arrays where a map, a bin or a str is expected.
  for (std::size_t field : {kHeaders, kPayload, kSender}) {
    SCOPED_TRACE(field);
    EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, field, nested_arrays(1000))), status_code::too_deep));
  }
  const bytes a = encode_auth_part(sample_auth());
  for (std::size_t field : {kBatch, kHopMac, kE2eMacs}) {
    SCOPED_TRACE(field);
    EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, field, nested_arrays(1000))), status_code::too_deep));
  }
  // Nesting within the limit but where the schema has none is a type error.
  EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kHeaders, nested_arrays(2))), status_code::malformed));
  // The top level nested: the version is not a uint.
  EXPECT_TRUE(fails_with(decode_signed_part(nested_arrays(1000)), status_code::malformed));

  // max_depth is honoured: the signed part nests 2 deep, the auth part 3.
  decode_limits limits;
  limits.max_depth = 1;
  EXPECT_TRUE(fails_with(decode_signed_part(s, limits), status_code::too_deep));
  limits.max_depth = 2;
  EXPECT_TRUE(decodes(decode_signed_part(s, limits)));
  EXPECT_TRUE(fails_with(decode_auth_part(a, limits), status_code::too_deep));
  limits.max_depth = 3;
  EXPECT_TRUE(decodes(decode_auth_part(a, limits)));
  limits.max_depth = 0;
  EXPECT_TRUE(fails_with(decode_signed_part(s, limits), status_code::too_deep));
}

// ---- Types and canonical form ----

struct candidate {
  const char* name;
  bytes encoding;
  envelope_wire::mp_kind kind;
};

std::vector<candidate> wrong_type_candidates() {
  using envelope_wire::mp_kind;
  return {
      {"uint", mp_uint(1), mp_kind::uint},
      {"str", mp_str("a"), mp_kind::str},
      {"bin", mp_bin(16), mp_kind::bin},
      {"map", mp_map(0), mp_kind::map},
      {"array", mp_array(0), mp_kind::array},
      {"nil", raw({0xc0}), mp_kind::nil},
      {"true", raw({0xc3}), mp_kind::boolean},
      {"float32", raw({0xca, 0, 0, 0, 0}), mp_kind::floating},
      {"float64", raw({0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}), mp_kind::floating},
      {"int8 holding 1", raw({0xd0, 0x01}), mp_kind::sint},
      {"negative fixint", raw({0xff}), mp_kind::sint},
      {"fixext1", raw({0xd4, 0x01, 0x00}), mp_kind::ext},
      {"0xc1", raw({0xc1}), mp_kind::ext},
  };
}

TEST(envelope_decode, rejects_wrong_types_in_every_signed_field) {
  using envelope_wire::mp_kind;
  const mp_kind schema[13] = {mp_kind::uint, mp_kind::uint, mp_kind::bin, mp_kind::bin, mp_kind::str,
                              mp_kind::uint, mp_kind::str,  mp_kind::uint, mp_kind::uint, mp_kind::str,
                              mp_kind::str,  mp_kind::map,  mp_kind::bin};
  const bytes s = encode_signed_part(sample_header());
  for (std::size_t field = 0; field < 13; ++field) {
    for (const auto& c : wrong_type_candidates()) {
      if (c.kind == schema[field]) continue;
      SCOPED_TRACE("field " + std::to_string(field) + " as " + c.name);
      EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, field, c.encoding)), status_code::malformed));
    }
  }
}

TEST(envelope_decode, rejects_wrong_types_in_every_auth_field) {
  using envelope_wire::mp_kind;
  const bytes a = encode_auth_part(sample_auth());
  for (std::size_t field = 0; field < 7; ++field) {
    for (const auto& c : wrong_type_candidates()) {
      const bool nullable = field == kBatch || field == kHopMac;
      if (field == kAuthVersion && c.kind == mp_kind::uint) continue;
      if (field == kAssurance && c.kind == mp_kind::str) continue;
      if ((field == kKeyId || field == kSignature) && c.kind == mp_kind::bin) continue;
      if (nullable && (c.kind == mp_kind::nil || c.kind == mp_kind::array)) continue;
      if (field == kE2eMacs && c.kind == mp_kind::array) continue;
      SCOPED_TRACE("field " + std::to_string(field) + " as " + c.name);
      EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, field, c.encoding)), status_code::malformed));
    }
  }
  // Inside the nested structures too.
  const bytes hop_tag_as_str = cat({mp_array(2), mp_bin(16), mp_str("tag")});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, kHopMac, hop_tag_as_str)), status_code::malformed));
  const bytes e2e_recipient_as_bin = cat({mp_array(1), mp_array(3), mp_bin(5), mp_bin(16), mp_bin(32)});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, kE2eMacs, e2e_recipient_as_bin)), status_code::malformed));
  const bytes e2e_entry_as_map = cat({mp_array(1), mp_map(0)});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, kE2eMacs, e2e_entry_as_map)), status_code::malformed));
  const bytes b = encode_auth_part(sample_auth(assurance::tpm_batch));
  const bytes index_as_str = cat({mp_array(3), mp_str("2"), mp_uint(5), mp_array(0)});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(b, kBatch, index_as_str)), status_code::malformed));
  const bytes path_node_as_str = cat({mp_array(3), mp_uint(0), mp_uint(2), mp_array(1), mp_str(std::string(32, 'x'))});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(b, kBatch, path_node_as_str)), status_code::malformed));
}

TEST(envelope_decode, rejects_header_map_with_non_str_keys_or_values) {
  const bytes s = encode_signed_part(sample_header());
  EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kHeaders, cat({mp_map(1), mp_uint(1), mp_str("v")}))),
                         status_code::malformed));
  EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kHeaders, cat({mp_map(1), mp_str("k"), mp_bin(1)}))),
                         status_code::malformed));
  EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kHeaders, cat({mp_map(1), mp_str("k"), raw({0xc0})}))),
                         status_code::malformed));
}

TEST(envelope_decode, rejects_non_canonical_encodings) {
  const bytes s = encode_signed_part(sample_header());
  struct variant {
    std::size_t field;
    bytes encoding;
  };
  const std::vector<variant> cases = {
      {kType, raw({0xcc, 0x02})},                              // uint8 for a fixint
      {kSequence, raw({0xcd, 0x00, 0x07})},                    // uint16 for a fixint
      {kSequence, raw({0xce, 0x00, 0x00, 0x01, 0x00})},        // uint32 for a uint16
      {kTimestamp, raw({0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})},  // uint64 for a uint32
      {kSender, cat({raw({0xd9, 0x03}), bytes{'a', 'b', 'c'}})},       // str8 for a fixstr
      {kSender, cat({raw({0xda, 0x00, 0x03}), bytes{'a', 'b', 'c'}})},  // str16 for a fixstr
      {kMessageId, cat({raw({0xc5, 0x00, 0x10}), bytes(16, 0x11)})},  // bin16 for a bin8
      {kPayload, cat({raw({0xc6, 0x00, 0x00, 0x00, 0x01}), bytes{0x00}})},  // bin32 for a bin8
      {kHeaders, raw({0xde, 0x00, 0x00})},                     // map16 for a fixmap
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(to_hex(c.encoding));
    EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, c.field, c.encoding)), status_code::malformed));
  }
  // An array16 holding the 13 fields instead of a fixarray.
  bytes array16 = cat({raw({0xdc, 0x00, 0x0d}), bytes(s.begin() + 1, s.end())});
  EXPECT_TRUE(fails_with(decode_signed_part(array16), status_code::malformed));
  const bytes a = encode_auth_part(sample_auth());
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, kE2eMacs, raw({0xdc, 0x00, 0x00}))), status_code::malformed));
}

// ---- Field values ----

TEST(envelope_decode, rejects_wrong_id_sizes) {
  for (std::size_t n : {0u, 1u, 15u, 17u, 32u}) {
    SCOPED_TRACE(n);
    envelope_header h = sample_header();
    h.message_id = bytes(n, 0x11);
    EXPECT_TRUE(signed_fails(h, status_code::invalid_field));
    if (n != 0) {
      h = sample_header();
      h.correlation_id = bytes(n, 0x12);
      EXPECT_TRUE(signed_fails(h, status_code::invalid_field));
    }
    envelope_auth a = sample_auth();
    a.hop_mac->session_id = bytes(n, 0x13);
    EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
    a = sample_auth();
    a.e2e_macs[0].session_id = bytes(n, 0x14);
    EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  }
  for (std::size_t n : {0u, 16u, 31u, 33u, 64u}) {
    envelope_auth a = sample_auth();
    a.key_id = bytes(n, 0x22);
    EXPECT_TRUE(auth_fails(a, status_code::invalid_field)) << n;
  }
}

TEST(envelope_decode, rejects_invalid_enum_values) {
  const bytes s = encode_signed_part(sample_header());
  for (std::uint64_t t : {0ull, 6ull, 127ull, 200ull, 0x10000ull, 0xffffffffffffffffull})
    EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kType, mp_uint(t))), status_code::invalid_field)) << t;
  for (std::uint64_t k : {2ull, 255ull, 0x100000000ull})
    EXPECT_TRUE(fails_with(decode_signed_part(with_element(s, kToKind, mp_uint(k))), status_code::invalid_field)) << k;
  const bytes a = encode_auth_part(sample_auth());
  for (const std::string& level : {std::string(""), std::string("TPM"), std::string("hardware"),
                                   std::string("tpm-batch "), std::string("tpm\0", 4)})
    EXPECT_TRUE(fails_with(decode_auth_part(with_element(a, kAssurance, mp_str(level))), status_code::invalid_field))
        << level;
}

TEST(envelope_decode, enforces_name_rules) {
  struct name_case {
    std::string value;
    status_code code;
  };
  const std::vector<name_case> tokens = {
      {"a", status_code::ok},           {"A.b_c-9", status_code::ok},     {"9lives", status_code::ok},
      {"", status_code::invalid_field}, {"a b", status_code::invalid_field}, {"a/b", status_code::invalid_field},
      {".x", status_code::invalid_field}, {"..", status_code::invalid_field}, {"-x", status_code::invalid_field},
      {"_x", status_code::invalid_field}, {"x*", status_code::invalid_field}, {"caf\xc3\xa9", status_code::invalid_field},
      {"a\nb", status_code::invalid_field}, {std::string("a\0b", 3), status_code::invalid_field},
      {std::string(129, 'a'), status_code::too_large},
  };
  for (const auto& c : tokens) {
    SCOPED_TRACE(c.value);
    for (int field = 0; field < 3; ++field) {
      envelope_header h = sample_header();
      (field == 0 ? h.sender : field == 1 ? h.to : h.suite) = c.value;
      if (c.code == status_code::ok) expect_signed_round_trip(h);
      else EXPECT_TRUE(signed_fails(h, c.code)) << "field " << field;
    }
    envelope_auth a = sample_auth();
    a.e2e_macs[0].recipient = c.value;
    if (c.code == status_code::ok) expect_auth_round_trip(a);
    else EXPECT_TRUE(auth_fails(a, c.code));
  }
  const std::vector<name_case> topics = {
      {"a", status_code::ok},          {"a/b", status_code::ok},          {"metrics/cpu.load/node-7", status_code::ok},
      {"a//b", status_code::invalid_field}, {"/a", status_code::invalid_field}, {"a/", status_code::invalid_field},
      {"/", status_code::invalid_field}, {"a/*", status_code::invalid_field}, {"a/#", status_code::invalid_field},
      {"a/>", status_code::invalid_field}, {"*", status_code::invalid_field}, {"a/.b", status_code::invalid_field},
      {"a/..", status_code::invalid_field}, {"", status_code::invalid_field},
      {std::string(64, 'a') + "/" + std::string(64, 'b'), status_code::too_large},
  };
  for (const auto& c : topics) {
    SCOPED_TRACE(c.value);
    envelope_header h = sample_header();
    h.to_kind = recipient_kind::topic;
    h.to = c.value;
    if (c.code == status_code::ok) expect_signed_round_trip(h);
    else EXPECT_TRUE(signed_fails(h, c.code));
  }
  // A name longer than 255 bytes is refused even when the limit allows it: the MAC
  // inputs carry a recipient's length in one byte.
  decode_limits wide;
  wide.max_name = 1000;
  envelope_header h = sample_header();
  h.sender = std::string(255, 's');
  expect_signed_round_trip(h, wide);
  h.sender = std::string(256, 's');
  EXPECT_TRUE(signed_fails(h, status_code::too_large, wide));
}

TEST(envelope_decode, enforces_string_rules) {
  struct string_case {
    std::string value;
    bool content_type_ok;
    bool header_value_ok;
  };
  const std::vector<string_case> cases = {
      {"text/plain; charset=utf-8", true, true},
      {"", true, true},
      {"Gr\xc3\xbc\xc3\x9f" "e \xe2\x9c\x93 \xf0\x9f\x98\x80", false, true},  // Grüße ✓ 😀
      {"\x01", false, false},
      {"a\tb", false, false},
      {"\x7f", false, false},
      {"\xc2\x80", false, false},          // U+0080, a C1 control
      {"\xc2\xa0", false, true},           // U+00A0
      {"\xff", false, false},              // never valid
      {"\xc0\xaf", false, false},          // overlong '/'
      {"\xe0\x80\xaf", false, false},      // overlong '/'
      {"\xed\xa0\x80", false, false},      // a surrogate
      {"\xf4\x90\x80\x80", false, false},  // above U+10FFFF
      {"\xe2\x9c", false, false},          // cut short
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(to_hex(as_bytes(c.value)));
    envelope_header h = sample_header();
    h.content_type = c.value;
    if (c.content_type_ok) expect_signed_round_trip(h);
    else EXPECT_TRUE(signed_fails(h, status_code::invalid_field));
    h = sample_header();
    h.headers = {{"k", c.value}};
    if (c.header_value_ok) expect_signed_round_trip(h);
    else EXPECT_TRUE(signed_fails(h, status_code::invalid_field));
  }
  for (const char* key : {"", "a b", "a:b", ".a", "\xc3\xa9"}) {
    envelope_header h = sample_header();
    h.headers = {{key, "v"}};
    EXPECT_TRUE(signed_fails(h, status_code::invalid_field)) << key;
  }
}

TEST(envelope_decode, rejects_each_field_over_its_limit) {
  const decode_limits limits;
  envelope_header h = sample_header();
  h.content_type = std::string(limits.max_string + 1, 'c');
  EXPECT_TRUE(signed_fails(h, status_code::too_large));
  h = sample_header();
  h.headers = {{std::string(limits.max_string + 1, 'k'), "v"}};
  EXPECT_TRUE(signed_fails(h, status_code::too_large));
  h = sample_header();
  h.headers = {{"k", std::string(limits.max_string + 1, 'v')}};
  EXPECT_TRUE(signed_fails(h, status_code::too_large));
  h = sample_header();
  h.headers.clear();
  for (std::size_t i = 0; i <= limits.max_headers; ++i) h.headers.emplace_back("h" + std::to_string(i), "v");
  EXPECT_TRUE(signed_fails(h, status_code::too_large));

  // Payload: the limit is inclusive, and the frame limit is not what trips here.
  decode_limits small;
  small.max_payload = 100;
  h = sample_header();
  h.payload = bytes(100, 0x01);
  expect_signed_round_trip(h, small);
  h.payload.push_back(0x02);
  EXPECT_TRUE(signed_fails(h, status_code::too_large, small));
  h.payload = bytes(limits.max_payload + 1, 0x01);
  decode_limits roomy;
  roomy.max_signed_part = 2 * limits.max_signed_part;
  EXPECT_TRUE(signed_fails(h, status_code::too_large, roomy));

  envelope_auth a = sample_auth();
  a.signature = bytes(limits.max_signature + 1, 0x01);
  EXPECT_TRUE(auth_fails(a, status_code::too_large));
  a = sample_auth();
  a.hop_mac->tag = bytes(limits.max_tag + 1, 0x01);
  EXPECT_TRUE(auth_fails(a, status_code::too_large));
  a = sample_auth();
  a.e2e_macs[0].tag = bytes(limits.max_tag + 1, 0x01);
  EXPECT_TRUE(auth_fails(a, status_code::too_large));
  a = sample_auth();
  a.e2e_macs.clear();
  for (std::size_t i = 0; i <= limits.max_macs; ++i)
    a.e2e_macs.push_back(session_mac{"r" + std::to_string(i), bytes(16, 0x01), bytes(32, 0x02)});
  EXPECT_TRUE(auth_fails(a, status_code::too_large));
  decode_limits few;
  few.max_macs = 2;
  a.e2e_macs.resize(3);
  EXPECT_TRUE(auth_fails(a, status_code::too_large, few));
  a.e2e_macs.resize(2);
  expect_auth_round_trip(a, few);

  // Path: index 0 of 8 needs 3 siblings.
  a = sample_auth(assurance::tpm_batch);
  a.batch = batch_proof{0, 8, std::vector<bytes>(3, bytes(32, 0x05))};
  decode_limits shallow;
  shallow.max_path = 2;
  EXPECT_TRUE(auth_fails(a, status_code::too_large, shallow));
  shallow.max_path = 3;
  expect_auth_round_trip(a, shallow);
  // More siblings than any uint32 leaf count allows.
  a.batch->path = std::vector<bytes>(limits.max_path + 1, bytes(32, 0x05));
  EXPECT_TRUE(auth_fails(a, status_code::too_large));

  // Signatures stop at 65535 bytes whatever the limit: the MAC input has a u16 length.
  decode_limits huge;
  huge.max_signature = 100000;
  huge.max_auth_part = 200000;
  a = sample_auth();
  a.signature = bytes(65535, 0x01);
  expect_auth_round_trip(a, huge);
  a.signature.push_back(0x02);
  EXPECT_TRUE(auth_fails(a, status_code::too_large, huge));
  decode_limits tight;
  tight.max_auth_part = 100;
  EXPECT_TRUE(auth_fails(sample_auth(), status_code::too_large, tight));
}

TEST(envelope_decode, rejects_duplicate_keys) {
  envelope_header h = sample_header();
  h.headers = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
  EXPECT_TRUE(signed_fails(h, status_code::duplicate_key));
  // Past the pairwise threshold the check sorts; same answer.
  decode_limits many;
  many.max_headers = 100;
  h.headers.clear();
  for (int i = 0; i < 100; ++i) h.headers.emplace_back("key" + std::to_string(i), "v");
  expect_signed_round_trip(h, many);
  h.headers[99].first = "key3";
  EXPECT_TRUE(signed_fails(h, status_code::duplicate_key, many));
  // Same-named keys differing only in case are different keys.
  h.headers = {{"Key", "1"}, {"key", "2"}};
  expect_signed_round_trip(h);

  envelope_auth a = sample_auth();
  a.e2e_macs.push_back(a.e2e_macs[0]);
  a.e2e_macs.back().tag = bytes(32, 0x01);
  EXPECT_TRUE(auth_fails(a, status_code::duplicate_key));
  a.e2e_macs.clear();
  for (int i = 0; i < 100; ++i) a.e2e_macs.push_back(session_mac{"agent-" + std::to_string(i), bytes(16, 1), bytes(32, 2)});
  expect_auth_round_trip(a);
  a.e2e_macs[0].recipient = "agent-77";
  EXPECT_TRUE(auth_fails(a, status_code::duplicate_key));
}

TEST(envelope_decode, batch_proof_follows_the_assurance) {
  envelope_auth a = sample_auth(assurance::tpm);
  a.batch = batch_proof{0, 1, {}};
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  a.level = assurance::software;
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  a = sample_auth(assurance::tpm_batch);
  a.batch.reset();
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
}

TEST(envelope_decode, rejects_impossible_batch_proofs) {
  envelope_auth a = sample_auth(assurance::tpm_batch);
  a.batch = batch_proof{5, 5, std::vector<bytes>(3, bytes(32, 1))};
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  a.batch = batch_proof{0, 0, {}};
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  for (std::size_t size : {0u, 16u, 31u, 65u, 128u}) {
    a.batch = batch_proof{0, 2, {bytes(size, 1)}};
    EXPECT_TRUE(auth_fails(a, status_code::invalid_field)) << size;
  }
  a.batch = batch_proof{0, 4, {bytes(32, 1), bytes(48, 2)}};  // mixed hash sizes
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  for (std::size_t size : {32u, 48u, 64u}) {
    a.batch = batch_proof{0, 4, {bytes(size, 1), bytes(size, 2)}};
    expect_auth_round_trip(a);
  }
  // Counts the struct cannot hold, written by hand.
  const bytes b = encode_auth_part(sample_auth(assurance::tpm_batch));
  const bytes count_2_32 = cat({mp_array(3), mp_uint(0), mp_uint(0x100000000), mp_array(32)});
  bytes path32;
  for (int i = 0; i < 32; ++i) path32 = cat({path32, mp_bin(32)});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(b, kBatch, cat({count_2_32, path32}))), status_code::invalid_field));
  const bytes index_huge = cat({mp_array(3), mp_uint(0xffffffffffffffff), mp_uint(2), mp_array(1), mp_bin(32)});
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(b, kBatch, index_huge)), status_code::invalid_field));
  // Wrong shapes of the proof itself.
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(b, kBatch, cat({mp_array(2), mp_uint(0), mp_uint(1)}))),
                         status_code::malformed));
  EXPECT_TRUE(fails_with(
      decode_auth_part(with_element(b, kBatch, cat({mp_array(4), mp_uint(0), mp_uint(1), mp_array(0), mp_uint(0)}))),
      status_code::malformed));
}

TEST(envelope_decode, rejects_bad_mac_entries) {
  envelope_auth a = sample_auth();
  a.hop_mac->tag.clear();
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  a = sample_auth();
  a.e2e_macs[0].tag.clear();
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  a = sample_auth();
  a.signature.clear();
  EXPECT_TRUE(auth_fails(a, status_code::invalid_field));
  const bytes s = encode_auth_part(sample_auth());
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(s, kHopMac, cat({mp_array(1), mp_bin(16)}))),
                         status_code::malformed));
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(s, kHopMac, cat({mp_array(3), mp_bin(16), mp_bin(32), mp_bin(1)}))),
                         status_code::malformed));
  EXPECT_TRUE(fails_with(decode_auth_part(with_element(s, kE2eMacs, cat({mp_array(1), mp_array(2), mp_str("a"), mp_bin(16)}))),
                         status_code::malformed));
  EXPECT_TRUE(fails_with(
      decode_auth_part(with_element(s, kE2eMacs, cat({mp_array(1), mp_array(4), mp_str("a"), mp_bin(16), mp_bin(32), raw({0xc0})}))),
      status_code::malformed));
  // The hop MAC's struct field `recipient` is not on the wire: it decodes empty.
  envelope_auth named = sample_auth();
  named.hop_mac->recipient = "ignored";
  auto back = decode_auth_part(encode_auth_part(named));
  ASSERT_TRUE(decodes(back));
  EXPECT_TRUE(back->hop_mac->recipient.empty());
}

// ---- Never crash, never throw ----

TEST(envelope_decode, survives_thousands_of_mutated_inputs) {
  std::mt19937_64 rng(0x61676e7462757331ull);  // fixed: failures must reproduce
  std::vector<bytes> signed_seeds;
  std::vector<bytes> auth_seeds;
  for (auto type : {envelope_type::data, envelope_type::reply}) {
    envelope_header h = sample_header();
    h.type = type;
    h.correlation_id = type == envelope_type::reply ? bytes(16, 0x42) : bytes{};
    signed_seeds.push_back(encode_signed_part(h));
    h.headers.clear();
    h.payload = bytes(300, 0x61);
    h.to_kind = recipient_kind::topic;
    h.to = "a/b/c";
    signed_seeds.push_back(encode_signed_part(h));
  }
  for (auto level : {assurance::tpm, assurance::tpm_batch, assurance::software}) {
    envelope_auth a = sample_auth(level);
    auth_seeds.push_back(encode_auth_part(a));
    a.hop_mac.reset();
    a.e2e_macs.push_back(session_mac{"x", bytes(16, 9), bytes(20, 8)});
    auth_seeds.push_back(encode_auth_part(a));
  }
  const std::uint8_t interesting[] = {0x00, 0x01, 0x0d, 0x0f, 0x10, 0x7f, 0x80, 0x8f, 0x90, 0x9d, 0x9f, 0xa0,
                                      0xbf, 0xc0, 0xc1, 0xc4, 0xc5, 0xc6, 0xca, 0xcc, 0xcf, 0xd0, 0xd4, 0xd9,
                                      0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  auto mutate = [&](bytes b) {
    const int rounds = 1 + static_cast<int>(pick(4));
    for (int r = 0; r < rounds; ++r) {
      switch (pick(8)) {
        case 0: if (!b.empty()) b[pick(b.size())] ^= static_cast<std::uint8_t>(1u << pick(8)); break;
        case 1: if (!b.empty()) b[pick(b.size())] = interesting[pick(sizeof interesting)]; break;
        case 2: if (!b.empty()) b[pick(b.size())] = static_cast<std::uint8_t>(rng()); break;
        case 3: b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size() + 1)), interesting[pick(sizeof interesting)]); break;
        case 4: if (!b.empty()) b.erase(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size()))); break;
        case 5: b.resize(pick(b.size() + 1)); break;
        case 6: {  // duplicate a slice somewhere
          if (b.empty()) break;
          std::size_t from = pick(b.size());
          std::size_t len = 1 + pick(std::min<std::size_t>(16, b.size() - from));
          bytes slice(b.begin() + static_cast<std::ptrdiff_t>(from), b.begin() + static_cast<std::ptrdiff_t>(from + len));
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size() + 1)), slice.begin(), slice.end());
          break;
        }
        default: {  // a 32-bit big-endian length somewhere
          if (b.size() < 5) break;
          std::size_t at = pick(b.size() - 4);
          std::uint32_t v = static_cast<std::uint32_t>(rng());
          for (int k = 0; k < 4; ++k) b[at + 1 + k] = static_cast<std::uint8_t>(v >> (24 - 8 * k));
          break;
        }
      }
    }
    return b;
  };

  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < 6000; ++i) {
    const bool is_signed = i % 2 == 0;
    bytes input;
    if (i % 10 == 9) {  // pure noise, sometimes starting like an envelope
      input.resize(pick(64));
      for (auto& x : input) x = static_cast<std::uint8_t>(rng());
      if (!input.empty() && pick(2)) input[0] = is_signed ? 0x9d : 0x97;
      if (input.size() > 1 && pick(2)) input[1] = 0x01;
    } else {
      const auto& seeds = is_signed ? signed_seeds : auth_seeds;
      input = mutate(seeds[pick(seeds.size())]);
    }
    SCOPED_TRACE("iteration " + std::to_string(i) + ": " + to_hex(input));
    try {
      if (is_signed) {
        auto r = decode_signed_part(input);
        if (r.ok()) {
          ++accepted;
          EXPECT_EQ(encode_signed_part(*r), input);  // accepted means canonical
        } else {
          ++rejected;
          EXPECT_NE(r.error().code(), status_code::ok);
          EXPECT_NE(r.error().code(), status_code::internal);
        }
      } else {
        auto r = decode_auth_part(input);
        if (r.ok()) {
          ++accepted;
          EXPECT_EQ(encode_auth_part(*r), input);
        } else {
          ++rejected;
          EXPECT_NE(r.error().code(), status_code::ok);
          EXPECT_NE(r.error().code(), status_code::internal);
        }
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "decode threw: " << e.what();
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // some mutations (a flipped payload bit) stay valid
}

// ---- Digest and MAC inputs ----

TEST(envelope_digest, is_the_suite_hash_of_the_bytes_as_sent) {
  const bytes s = encode_signed_part(sample_header());
  for (auto h : {hash_algorithm::sha256, hash_algorithm::sha384, hash_algorithm::sha3_256, hash_algorithm::sha3_384}) {
    EXPECT_EQ(envelope_digest(h, s), crypto::digest(h, s));
    EXPECT_EQ(envelope_digest(h, s).size(), hash_size(h));
  }
}

TEST(envelope_mac_input, has_the_documented_layout) {
  envelope_auth a;
  a.level = assurance::software;
  a.key_id = bytes{0xaa, 0xbb};
  a.signature = bytes{0x01, 0x02, 0x03};
  const bytes digest{0xd1, 0xd2};
  const bytes hop = hop_mac_input(digest, a);
  const bytes expected_hop = cat({bytes{'a', 'g', 'e', 'n', 't', 'b', 'u', 's', '-', 'v', '1', '-', 'h', 'o', 'p'},
                                  raw({0x00, 0x02, 0xd1, 0xd2, 0x03, 0x02, 0xaa, 0xbb, 0x00, 0x03, 0x01, 0x02, 0x03, 0x00})});
  EXPECT_EQ(to_hex(hop), to_hex(expected_hop));
  const bytes e2e = e2e_mac_input(digest, a, "bob");
  const bytes expected_e2e = cat({bytes{'a', 'g', 'e', 'n', 't', 'b', 'u', 's', '-', 'v', '1', '-', 'e', '2', 'e'},
                                  raw({0x00, 0x02, 0xd1, 0xd2, 0x03, 0x02, 0xaa, 0xbb, 0x00, 0x03, 0x01, 0x02, 0x03, 0x00,
                                       0x03, 'b', 'o', 'b'})});
  EXPECT_EQ(to_hex(e2e), to_hex(expected_e2e));

  a.level = assurance::tpm_batch;
  a.batch = batch_proof{0x01020304, 0x0a0b0c0d, {bytes{0xe1}, bytes{0xe2, 0xe3}}};
  const bytes batched = hop_mac_input(digest, a);
  const bytes expected_batched =
      cat({bytes{'a', 'g', 'e', 'n', 't', 'b', 'u', 's', '-', 'v', '1', '-', 'h', 'o', 'p'},
           raw({0x00, 0x02, 0xd1, 0xd2, 0x02, 0x02, 0xaa, 0xbb, 0x00, 0x03, 0x01, 0x02, 0x03, 0x01, 0x01, 0x02, 0x03,
                0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x02, 0x01, 0xe1, 0x02, 0xe2, 0xe3})});
  EXPECT_EQ(to_hex(batched), to_hex(expected_batched));
  a.level = assurance::tpm;
  a.batch.reset();
  EXPECT_EQ(hop_mac_input(digest, a)[15 + 1 + 1 + 2], 0x01);  // tpm = 1
}

TEST(envelope_mac_input, changes_when_any_bound_field_changes) {
  const bytes digest = crypto::digest(hash_algorithm::sha256, as_bytes("envelope"));
  const envelope_auth base = sample_auth(assurance::tpm_batch);
  const bytes hop = hop_mac_input(digest, base);
  const bytes e2e = e2e_mac_input(digest, base, "director-1");
  EXPECT_NE(hop, e2e);  // the labels separate the two
  EXPECT_NE(e2e, e2e_mac_input(digest, base, "director-2"));
  EXPECT_NE(e2e, e2e_mac_input(digest, base, "director-1x"));
  EXPECT_NE(e2e, e2e_mac_input(digest, base, ""));

  std::vector<std::pair<std::string, envelope_auth>> variants;
  auto add = [&](const std::string& what, auto change) {
    envelope_auth a = base;
    change(a);
    variants.emplace_back(what, a);
  };
  add("assurance tpm", [](envelope_auth& a) { a.level = assurance::tpm; a.batch.reset(); });
  add("assurance software", [](envelope_auth& a) { a.level = assurance::software; a.batch.reset(); });
  add("batch absent", [](envelope_auth& a) { a.batch.reset(); });
  add("key_id", [](envelope_auth& a) { a.key_id[31] ^= 1; });
  add("signature byte", [](envelope_auth& a) { a.signature[0] ^= 1; });
  add("signature length", [](envelope_auth& a) { a.signature.push_back(0); });
  add("leaf_index", [](envelope_auth& a) { a.batch->leaf_index = 1; });
  add("leaf_count", [](envelope_auth& a) { a.batch->leaf_count = 6; });
  add("path node", [](envelope_auth& a) { a.batch->path[1][7] ^= 1; });
  add("path order", [](envelope_auth& a) { std::swap(a.batch->path[0], a.batch->path[2]); });
  add("path length", [](envelope_auth& a) { a.batch->path.pop_back(); });
  // Moving a byte between adjacent fields must not give the same string.
  add("key_id/signature boundary", [](envelope_auth& a) {
    a.signature.insert(a.signature.begin(), a.key_id.back());
    a.key_id.pop_back();
  });
  for (const auto& [what, a] : variants) {
    SCOPED_TRACE(what);
    EXPECT_NE(hop_mac_input(digest, a), hop);
    EXPECT_NE(e2e_mac_input(digest, a, "director-1"), e2e);
  }
  bytes other_digest = digest;
  other_digest[0] ^= 1;
  EXPECT_NE(hop_mac_input(other_digest, base), hop);
  EXPECT_NE(e2e_mac_input(other_digest, base, "director-1"), e2e);
  bytes longer_digest = crypto::digest(hash_algorithm::sha384, as_bytes("envelope"));
  EXPECT_NE(hop_mac_input(longer_digest, base), hop);

  // The MACs themselves are not inputs: they can be computed before the auth part
  // is complete, and the hop MAC does not depend on the end-to-end MACs.
  envelope_auth macs_changed = base;
  macs_changed.hop_mac->tag[0] ^= 1;
  macs_changed.e2e_macs.clear();
  EXPECT_EQ(hop_mac_input(digest, macs_changed), hop);
  EXPECT_EQ(e2e_mac_input(digest, macs_changed, "director-1"), e2e);
}

TEST(envelope_mac_input, macs_over_it_detect_tampering) {
  const bytes signed_part = encode_signed_part(sample_header());
  const bytes digest = envelope_digest(hash_algorithm::sha256, signed_part);
  const bytes key(32, 0x5c);
  envelope_auth a = sample_auth();
  a.hop_mac->tag = crypto::hmac(hash_algorithm::sha256, key, hop_mac_input(digest, a));
  auto back = decode_auth_part(encode_auth_part(a));
  ASSERT_TRUE(decodes(back));
  EXPECT_TRUE(crypto::verify_hmac(hash_algorithm::sha256, key, hop_mac_input(digest, *back), back->hop_mac->tag).ok());
  back->signature[3] ^= 0x10;
  EXPECT_EQ(crypto::verify_hmac(hash_algorithm::sha256, key, hop_mac_input(digest, *back), back->hop_mac->tag).code(),
            status_code::bad_mac);
}

// The wire batch MAC input, rebuilt here from its description (schemas/envelope.md
// §7.3: label, 0x00, count, then per member its length and its hop MAC input), equals
// the library's, whole and fed in pieces; a MAC over the pieces equals the MAC over
// the whole.
TEST(envelope_mac_input, wire_batch_input_has_the_documented_layout_whole_and_in_pieces) {
  std::vector<bytes> digests;
  std::vector<envelope_auth> auths;
  for (int i = 0; i < 3; ++i) {
    digests.push_back(envelope_digest(hash_algorithm::sha256, bytes(40 + i, static_cast<std::uint8_t>(i))));
    envelope_auth a = sample_auth(i == 1 ? assurance::tpm : assurance::tpm_batch);
    a.hop_mac.reset();
    auths.push_back(a);
  }
  std::vector<wire_batch_item> items;
  for (int i = 0; i < 3; ++i) items.push_back({digests[i], &auths[i]});

  const std::string label = "agentbus-v1-hop-batch";
  bytes expected(label.begin(), label.end());
  expected.push_back(0x00);
  auto u32 = [&](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) expected.push_back(static_cast<std::uint8_t>(v >> shift));
  };
  u32(3);
  for (int i = 0; i < 3; ++i) {
    const bytes one = hop_mac_input(digests[i], auths[i]);
    u32(static_cast<std::uint32_t>(one.size()));
    expected.insert(expected.end(), one.begin(), one.end());
  }
  EXPECT_EQ(wire_batch_mac_input(items), expected);

  bytes joined;
  std::size_t pieces = 0;
  wire_batch_mac_input_pieces(items, [&](byte_view p) {
    joined.insert(joined.end(), p.begin(), p.end());
    ++pieces;
  });
  EXPECT_EQ(joined, expected);
  EXPECT_EQ(pieces, 4u);  // the header, then one per member

  const bytes key(32, 0x6d);
  const crypto::hmac_key prepared(hash_algorithm::sha256, key);
  const bytes whole = crypto::hmac(hash_algorithm::sha256, key, expected);
  EXPECT_EQ(prepared.tag_pieces([&](const std::function<void(byte_view)>& piece) { wire_batch_mac_input_pieces(items, piece); }),
            whole);
  EXPECT_EQ(prepared.tag(expected), whole);
}

}  // namespace
}  // namespace agentbus
