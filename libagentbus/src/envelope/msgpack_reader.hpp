// msgpack_reader.hpp — the strict MessagePack reader and field rules shared by the
// envelope decoders (internal to libagentbus; schemas/envelope.md is normative).
//
// Why a hand-rolled reader rather than msgpack::unpack with an unpack_limit:
//  * msgpack-cxx builds an object tree in a zone and sizes each array's element table
//    from the declared count before a single element has arrived. An unpack_limit caps
//    that, but one limit per MessagePack type serves every field, so the per-field
//    limits need a second walk over the tree anyway.
//  * msgpack-cxx reports every violation by throwing. On a bus that takes frames from
//    the network, rejecting garbage is a normal outcome and must stay cheap: a thrown
//    exception costs microseconds and the unwinder's global locks on every core.
//  * msgpack-cxx accepts non-canonical encodings (a 1 written as 0xcf + 8 bytes) and
//    signed formats holding non-negative values as unsigned. The envelope contract
//    rejects everything encode_* would not produce, which makes the encoding of a
//    valid envelope unique (encode(decode(x)) == x).
// This reader only decodes heads (the type byte plus its length or value). Str and
// bin bodies stay views into the caller's buffer until the decoder copies them into
// the result. It never allocates, never throws and never reads past the end: every
// length is compared with its limit and with the bytes that remain before it is used.
// Encoding uses msgpack-cxx's packer, which writes the canonical (smallest) forms.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/status.hpp"

namespace agentbus::envelope_wire {

// Wire-format caps that hold whatever decode_limits say, because the MAC inputs
// carry these lengths in one byte (names, digests, path elements) or two (signatures).
inline constexpr std::size_t kMaxNameCap = 255;
inline constexpr std::size_t kMaxSignatureCap = 65535;
inline constexpr std::size_t kMinHashSize = 32;
inline constexpr std::size_t kMaxHashSize = 64;
inline constexpr std::size_t kSessionIdSize = 16;
inline constexpr std::size_t kSignedFields = 13;
inline constexpr std::size_t kAuthFields = 7;
// The scanner's nesting stack lives on the C++ stack; valid envelopes nest 3 deep.
inline constexpr std::size_t kMaxScanDepth = 16;

enum class mp_kind : std::uint8_t { nil, boolean, uint, sint, floating, str, bin, array, map, ext };

// mp_head is one decoded MessagePack head.
struct mp_head {
  mp_kind kind = mp_kind::nil;
  std::uint64_t value = 0;  // uint: the value; str/bin/ext: body length; array/map: count
  std::size_t size = 0;     // head bytes, including fixed-size scalar data (9 for 0xcf)
  bool canonical = true;    // the smallest form for this value (what the packer writes)
};

inline std::uint64_t load_be(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = v << 8 | p[i];
  return v;
}

// read_head decodes the head at `pos`. It returns false if the head is cut off by
// the end of `in` or the byte is 0xc1 (never used). Bodies are not checked here.
inline bool read_head(byte_view in, std::size_t pos, mp_head& h) noexcept {
  if (pos >= in.size()) return false;
  const std::uint8_t* p = in.data() + pos;
  const std::size_t avail = in.size() - pos;
  const std::uint8_t b = p[0];
  h = mp_head{};
  h.size = 1;
  // Fixed-length leading-byte forms first: they are the common case.
  if (b <= 0x7f) { h.kind = mp_kind::uint; h.value = b; return true; }
  if (b >= 0xe0) { h.kind = mp_kind::sint; return true; }
  if (b <= 0x8f) { h.kind = mp_kind::map; h.value = b & 0x0fu; return true; }
  if (b <= 0x9f) { h.kind = mp_kind::array; h.value = b & 0x0fu; return true; }
  if (b <= 0xbf) { h.kind = mp_kind::str; h.value = b & 0x1fu; return true; }

  // Forms with `n` bytes of length or value after the type byte; `min` is the
  // smallest value for which this form is the canonical one.
  std::size_t n = 0;
  std::uint64_t min = 0;
  std::size_t extra = 0;  // ext: one type byte after the length
  switch (b) {
    case 0xc0: h.kind = mp_kind::nil; return true;
    case 0xc2: case 0xc3: h.kind = mp_kind::boolean; return true;
    case 0xc4: h.kind = mp_kind::bin; n = 1; min = 0; break;
    case 0xc5: h.kind = mp_kind::bin; n = 2; min = 1u << 8; break;
    case 0xc6: h.kind = mp_kind::bin; n = 4; min = 1u << 16; break;
    case 0xc7: h.kind = mp_kind::ext; n = 1; extra = 1; break;
    case 0xc8: h.kind = mp_kind::ext; n = 2; extra = 1; break;
    case 0xc9: h.kind = mp_kind::ext; n = 4; extra = 1; break;
    case 0xca: h.kind = mp_kind::floating; h.size = 5; return h.size <= avail;
    case 0xcb: h.kind = mp_kind::floating; h.size = 9; return h.size <= avail;
    case 0xcc: h.kind = mp_kind::uint; n = 1; min = 1u << 7; break;
    case 0xcd: h.kind = mp_kind::uint; n = 2; min = 1u << 8; break;
    case 0xce: h.kind = mp_kind::uint; n = 4; min = 1u << 16; break;
    case 0xcf: h.kind = mp_kind::uint; n = 8; min = std::uint64_t{1} << 32; break;
    case 0xd0: h.kind = mp_kind::sint; h.size = 2; return h.size <= avail;
    case 0xd1: h.kind = mp_kind::sint; h.size = 3; return h.size <= avail;
    case 0xd2: h.kind = mp_kind::sint; h.size = 5; return h.size <= avail;
    case 0xd3: h.kind = mp_kind::sint; h.size = 9; return h.size <= avail;
    case 0xd4: h.kind = mp_kind::ext; h.value = 1; h.size = 2; return h.size <= avail;
    case 0xd5: h.kind = mp_kind::ext; h.value = 2; h.size = 2; return h.size <= avail;
    case 0xd6: h.kind = mp_kind::ext; h.value = 4; h.size = 2; return h.size <= avail;
    case 0xd7: h.kind = mp_kind::ext; h.value = 8; h.size = 2; return h.size <= avail;
    case 0xd8: h.kind = mp_kind::ext; h.value = 16; h.size = 2; return h.size <= avail;
    case 0xd9: h.kind = mp_kind::str; n = 1; min = 32; break;
    case 0xda: h.kind = mp_kind::str; n = 2; min = 1u << 8; break;
    case 0xdb: h.kind = mp_kind::str; n = 4; min = 1u << 16; break;
    case 0xdc: h.kind = mp_kind::array; n = 2; min = 16; break;
    case 0xdd: h.kind = mp_kind::array; n = 4; min = 1u << 16; break;
    case 0xde: h.kind = mp_kind::map; n = 2; min = 16; break;
    case 0xdf: h.kind = mp_kind::map; n = 4; min = 1u << 16; break;
    default: return false;  // 0xc1
  }
  h.size = 1 + n + extra;
  if (h.size > avail) return false;
  h.value = load_be(p + 1, n);
  h.canonical = h.value >= min;
  return true;
}

// scan_limits are the generic limits of the first decoding layer: what a MessagePack
// library's unpack_limit would say (one bound per type, none per field).
struct scan_limits {
  std::size_t max_str = 0;
  std::size_t max_bin = 0;
  std::size_t max_array = 0;
  std::size_t max_map = 0;
  std::size_t max_depth = 0;
};

// generic_limits derives the first layer's bounds from the per-field limits: the
// largest any field may legitimately need.
inline scan_limits generic_limits(const decode_limits& l) noexcept {
  scan_limits s;
  // 16: room for the assurance names whatever the configured string limits.
  s.max_str = std::max({std::min(l.max_name, kMaxNameCap), l.max_string, std::size_t{16}});
  s.max_bin = std::max({l.max_payload, std::min(l.max_signature, kMaxSignatureCap), l.max_tag,
                        kMaxHashSize, kKeyIdSize});
  s.max_array = std::max({kSignedFields, kAuthFields, l.max_macs, l.max_path});
  s.max_map = l.max_headers;
  s.max_depth = std::min(l.max_depth, kMaxScanDepth);
  return s;
}

inline std::string at_byte(std::size_t pos) { return "at byte " + std::to_string(pos) + ": "; }

// scan_object checks that `in` is exactly one well-formed MessagePack object in
// canonical form, within `lim`, without extension types. Codes: malformed
// (truncated, 0xc1, ext, non-canonical head), too_large (a length or count over its
// limit), too_deep (a container nested deeper than max_depth), trailing_bytes. It
// walks iteratively with a fixed stack: hostile nesting cannot overflow anything.
inline status scan_object(byte_view in, const scan_limits& lim) {
  std::array<std::uint64_t, kMaxScanDepth + 1> left{};  // items still due per open container
  std::size_t depth = 0;
  std::size_t pos = 0;
  do {
    mp_head h;
    if (!read_head(in, pos, h)) return {status_code::malformed, at_byte(pos) + "truncated or invalid head"};
    if (!h.canonical) return {status_code::malformed, at_byte(pos) + "non-canonical MessagePack encoding"};
    const std::size_t rest = in.size() - pos - h.size;  // read_head checked h.size fits
    bool opened = false;
    switch (h.kind) {
      case mp_kind::ext:
        return {status_code::malformed, at_byte(pos) + "extension types are not used"};
      case mp_kind::str:
      case mp_kind::bin: {
        const std::size_t max = h.kind == mp_kind::str ? lim.max_str : lim.max_bin;
        if (h.value > max)
          return {status_code::too_large, at_byte(pos) + "length " + std::to_string(h.value) +
                                              " exceeds " + std::to_string(max)};
        if (h.value > rest) return {status_code::malformed, at_byte(pos) + "truncated body"};
        pos += h.size + static_cast<std::size_t>(h.value);
        break;
      }
      case mp_kind::array:
      case mp_kind::map: {
        const std::size_t max = h.kind == mp_kind::array ? lim.max_array : lim.max_map;
        if (h.value > max)
          return {status_code::too_large, at_byte(pos) + "count " + std::to_string(h.value) +
                                              " exceeds " + std::to_string(max)};
        if (depth + 1 > lim.max_depth)
          return {status_code::too_deep, at_byte(pos) + "nesting exceeds " + std::to_string(lim.max_depth)};
        // Every item needs at least one byte: a cheap bound before walking them.
        const std::uint64_t items = h.kind == mp_kind::map ? 2 * h.value : h.value;
        if (items > rest) return {status_code::malformed, at_byte(pos) + "truncated container"};
        pos += h.size;
        if (items > 0) {
          left[++depth] = items;
          opened = true;
        }
        break;
      }
      default:  // scalars: the head is the whole object
        pos += h.size;
        break;
    }
    // A finished object counts against its container; a finished container in turn
    // counts against its parent.
    if (!opened)
      while (depth > 0 && --left[depth] == 0) --depth;
  } while (depth > 0);
  if (pos != in.size())
    return {status_code::trailing_bytes, std::to_string(in.size() - pos) + " bytes after the object"};
  return {};
}

// check_version reads only the outer array head and the version that every
// envelope version keeps as its first element, so a frame of a version this build
// does not speak is reported as such whatever its layout.
inline status check_version(byte_view in, const char* part) {
  mp_head outer;
  mp_head version;
  if (!read_head(in, 0, outer)) return {status_code::malformed, std::string(part) + ": empty or truncated"};
  if (outer.kind != mp_kind::array || outer.value == 0)
    return {status_code::malformed, std::string(part) + ": not a non-empty MessagePack array"};
  if (!read_head(in, outer.size, version)) return {status_code::malformed, std::string(part) + ": truncated"};
  if (version.kind != mp_kind::uint) return {status_code::malformed, std::string(part) + ": version is not a uint"};
  if (version.value != kEnvelopeVersion)
    return {status_code::unsupported_version,
            std::string(part) + ": version " + std::to_string(version.value) + ", this build speaks " +
                std::to_string(kEnvelopeVersion)};
  return {};
}

// guarded_decode is the shell both part decoders share: 1. frame size, before
// looking at a byte; 2. version (a frame of another version is named as such
// whatever its layout); 3. generic structure (one canonical object, bounded
// lengths and nesting); 4. the part's own fields. Nothing escapes as an exception.
template <typename Fields>
auto guarded_decode(byte_view in, std::size_t max_size, const char* part, const decode_limits& limits,
                    Fields&& decode_fields) -> decltype(decode_fields(in, limits)) {
  try {
    if (in.size() > max_size)
      return status{status_code::too_large,
                    std::string(part) + ": " + std::to_string(in.size()) + " bytes exceeds " + std::to_string(max_size)};
    if (status st = check_version(in, part); !st) return st;
    if (status st = scan_object(in, generic_limits(limits)); !st) return st;
    return decode_fields(in, limits);
  } catch (const std::bad_alloc&) {
    return status{status_code::internal, "out of memory"};
  } catch (const std::exception&) {
    return status{status_code::internal, "exception"};
  }
}

// cursor reads typed objects in order. It runs after scan_object accepted the
// frame, so its own bounds checks only guard against misuse; its job is the types.
class cursor {
 public:
  explicit cursor(byte_view in) noexcept : in_(in) {}
  std::size_t offset() const noexcept { return pos_; }

  status read_array(const char* what, std::size_t& count) { return read_count(what, mp_kind::array, count); }
  status read_map(const char* what, std::size_t& count) { return read_count(what, mp_kind::map, count); }

  status read_uint(const char* what, std::uint64_t& v) {
    mp_head h;
    if (status st = head(what, mp_kind::uint, "uint", h); !st) return st;
    v = h.value;
    pos_ += h.size;
    return {};
  }

  status read_str(const char* what, std::string_view& s) {
    byte_view b;
    if (status st = read_body(what, mp_kind::str, "str", b); !st) return st;
    s = std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
    return {};
  }

  status read_bin(const char* what, byte_view& b) { return read_body(what, mp_kind::bin, "bin", b); }

  // take_nil consumes a nil and returns true, or returns false and consumes nothing.
  bool take_nil() noexcept {
    if (pos_ < in_.size() && in_[pos_] == 0xc0) {
      ++pos_;
      return true;
    }
    return false;
  }

 private:
  status head(const char* what, mp_kind kind, const char* type_name, mp_head& h) const {
    if (!read_head(in_, pos_, h)) return {status_code::malformed, std::string(what) + ": truncated"};
    if (h.kind != kind) return {status_code::malformed, std::string(what) + ": expected " + type_name};
    return {};
  }

  status read_count(const char* what, mp_kind kind, std::size_t& count) {
    mp_head h;
    if (status st = head(what, kind, kind == mp_kind::array ? "array" : "map", h); !st) return st;
    pos_ += h.size;
    count = static_cast<std::size_t>(h.value);
    return {};
  }

  status read_body(const char* what, mp_kind kind, const char* type_name, byte_view& b) {
    mp_head h;
    if (status st = head(what, kind, type_name, h); !st) return st;
    if (h.value > in_.size() - pos_ - h.size) return {status_code::malformed, std::string(what) + ": truncated"};
    b = in_.subspan(pos_ + h.size, static_cast<std::size_t>(h.value));
    pos_ += h.size + b.size();
    return {};
  }

  byte_view in_;
  std::size_t pos_ = 0;
};

// ---- Field rules (schemas/envelope.md, "Names and strings") ----

inline bool is_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// is_token: one or more of [A-Za-z0-9._-], the first alphanumeric. Agent names,
// suite names, topic segments and header keys are tokens. A leading alphanumeric
// keeps ".", ".." and "-option" out of file names and command lines.
inline bool is_token(std::string_view s) noexcept {
  if (s.empty() || !is_alnum(s[0])) return false;
  for (char c : s)
    if (!is_alnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

// is_topic: tokens joined by '/', so no empty, leading or trailing segment. Wildcards
// ('*', '>', '#') belong to subscriptions, never to a published envelope.
inline bool is_topic(std::string_view s) noexcept {
  for (;;) {
    const std::size_t slash = s.find('/');
    if (!is_token(s.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    s.remove_prefix(slash + 1);
  }
}

inline bool is_printable_ascii(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// is_clean_utf8: well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF) without control characters (U+0000-U+001F, U+007F-U+009F), so a
// header value can be logged as it is.
inline bool is_clean_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto cont = [&](std::size_t k, std::uint8_t lo = 0x80, std::uint8_t hi = 0xbf) {
    return k < n && p[k] >= lo && p[k] <= hi;
  };
  while (i < n) {
    const std::uint8_t b = p[i];
    if (b < 0x80) {
      if (b < 0x20 || b == 0x7f) return false;
      i += 1;
    } else if (b >= 0xc2 && b <= 0xdf) {
      if (!cont(i + 1)) return false;
      if (b == 0xc2 && p[i + 1] <= 0x9f) return false;  // C1 controls
      i += 2;
    } else if (b >= 0xe0 && b <= 0xef) {
      const std::uint8_t lo = b == 0xe0 ? 0xa0 : 0x80;
      const std::uint8_t hi = b == 0xed ? 0x9f : 0xbf;
      if (!cont(i + 1, lo, hi) || !cont(i + 2)) return false;
      i += 3;
    } else if (b >= 0xf0 && b <= 0xf4) {
      const std::uint8_t lo = b == 0xf0 ? 0x90 : 0x80;
      const std::uint8_t hi = b == 0xf4 ? 0x8f : 0xbf;
      if (!cont(i + 1, lo, hi) || !cont(i + 2) || !cont(i + 3)) return false;
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

enum class name_rule { token, topic };

// check_name applies a name's rules in a fixed order: empty (invalid_field), too
// long (too_large), characters (invalid_field).
inline status check_name(const char* what, std::string_view s, std::size_t max, name_rule rule) {
  if (s.empty()) return {status_code::invalid_field, std::string(what) + ": empty"};
  if (s.size() > std::min(max, kMaxNameCap))
    return {status_code::too_large, std::string(what) + ": longer than " + std::to_string(std::min(max, kMaxNameCap))};
  if (rule == name_rule::token ? !is_token(s) : !is_topic(s))
    return {status_code::invalid_field, std::string(what) + ": not a valid " +
                                            (rule == name_rule::token ? "name" : "topic")};
  return {};
}

// has_duplicate reports whether two of the n keys key(0..n-1) are equal. Small
// counts compare pairwise without allocating; larger ones (a raised limit) sort, so
// a hostile frame cannot buy quadratic work.
template <typename KeyAt>
bool has_duplicate(std::size_t n, KeyAt key) {
  if (n <= 32) {
    for (std::size_t i = 1; i < n; ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (key(i) == key(j)) return true;
    return false;
  }
  std::vector<std::string_view> keys;
  keys.reserve(n);
  for (std::size_t i = 0; i < n; ++i) keys.push_back(key(i));
  std::sort(keys.begin(), keys.end());
  return std::adjacent_find(keys.begin(), keys.end()) != keys.end();
}

inline status expect_fields(const char* what, std::size_t got, std::size_t want) {
  if (got == want) return {};
  return {status_code::malformed,
          std::string(what) + ": " + std::to_string(got) + " elements, expected " + std::to_string(want)};
}

}  // namespace agentbus::envelope_wire

namespace agentbus::envelope_wire {

// ---- Encoding helpers (msgpack-cxx's packer writes the canonical forms) ----

// bytes_sink is the packer's stream: it appends straight to the output vector, so
// a payload is copied once (into the frame) rather than via an sbuffer.
class bytes_sink {
 public:
  explicit bytes_sink(bytes& out) noexcept : out_(out) {}
  void write(const char* p, std::size_t n) {
    const auto* b = reinterpret_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }

 private:
  bytes& out_;
};

// wire_length checks a length the packer takes as uint32. Only a caller bypassing
// every limit (a 4 GiB payload) can exceed it: a programming error, so abort.
[[noreturn]] void length_overflow(const char* what) noexcept;
inline std::uint32_t wire_length(std::size_t n, const char* what) noexcept {
  if (n > 0xffffffffu) length_overflow(what);
  return static_cast<std::uint32_t>(n);
}

template <typename Packer>
void pack_str(Packer& pk, std::string_view s) {
  const std::uint32_t n = wire_length(s.size(), "str");
  pk.pack_str(n);
  pk.pack_str_body(s.data(), n);
}

template <typename Packer>
void pack_bin(Packer& pk, byte_view b) {
  const std::uint32_t n = wire_length(b.size(), "bin");
  pk.pack_bin(n);
  pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), n);
}

}  // namespace agentbus::envelope_wire
