// wire_codec.hpp — the writer and strict reader for the protocol's fixed-shape
// MessagePack arrays (handshake messages, control bodies, federation records):
// canonical encodings out; in, one object scanned within limits first
// (envelope/msgpack_reader.hpp says why that reader is our own), then typed fields in
// order, the first failure kept. Internal.
#pragma once

#include <msgpack.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/status.hpp"
#include "envelope/msgpack_reader.hpp"

namespace agentbus::session::wire_codec {
namespace mpw = agentbus::envelope_wire;

// writer packs one array with canonical (smallest) encodings.
class writer {
 public:
  explicit writer(std::size_t fields) : pk_(buf_) { pk_.pack_array(static_cast<std::uint32_t>(fields)); }
  writer& uint(std::uint64_t v) { pk_.pack(v); return *this; }
  writer& str(std::string_view s) { pk_.pack_str(static_cast<std::uint32_t>(s.size())); pk_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size())); return *this; }
  writer& bin(byte_view b) { pk_.pack_bin(static_cast<std::uint32_t>(b.size())); pk_.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<std::uint32_t>(b.size())); return *this; }
  writer& strings(const std::vector<std::string>& v) {
    pk_.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const auto& s : v) str(s);
    return *this;
  }
  bytes done() const { return bytes(buf_.data(), buf_.data() + buf_.size()); }

 private:
  msgpack::sbuffer buf_;
  msgpack::packer<msgpack::sbuffer> pk_;
};

// reader: cap, scan (one canonical object within limits), then typed fields.
class reader {
 public:
  reader(byte_view in, const char* what, std::size_t fields, std::size_t max_frame, std::size_t max_array = 12)
      : cur_(in) {
    if (in.size() > max_frame) {
      st_ = {status_code::too_large, std::string(what) + ": " + std::to_string(in.size()) + " bytes, limit " + std::to_string(max_frame)};
      return;
    }
    mpw::scan_limits lim;
    lim.max_str = max_frame;
    lim.max_bin = max_frame;
    lim.max_array = max_array;
    lim.max_map = 0;
    lim.max_depth = 2;
    if (status st = mpw::scan_object(in, lim); !st) {
      st_ = status(st.code(), std::string(what) + ": " + st.detail());
      return;
    }
    std::size_t n = 0;
    if (status st = cur_.read_array(what, n); !st) { st_ = st; return; }
    if (n != fields) st_ = {status_code::malformed, std::string(what) + ": " + std::to_string(n) + " fields, expected " + std::to_string(fields)};
  }
  bool ok() const { return st_.ok(); }
  const status& error() const { return st_; }

  reader& uint(const char* field, std::uint64_t& v) { if (ok()) st_ = cur_.read_uint(field, v); return *this; }
  reader& str(const char* field, std::string& v, std::size_t max) {
    std::string_view s;
    if (ok()) st_ = cur_.read_str(field, s);
    if (ok() && s.size() > max) st_ = {status_code::too_large, std::string(field) + " too long"};
    if (ok()) v.assign(s);
    return *this;
  }
  reader& bin(const char* field, bytes& v, std::size_t min, std::size_t max) {
    byte_view b;
    if (ok()) st_ = cur_.read_bin(field, b);
    if (ok() && (b.size() < min || b.size() > max))
      st_ = {status_code::invalid_field, std::string(field) + ": " + std::to_string(b.size()) + " bytes, expected " + std::to_string(min) + ".." + std::to_string(max)};
    if (ok()) v.assign(b.begin(), b.end());
    return *this;
  }
  reader& strings(const char* field, std::vector<std::string>& v, std::size_t max_count, std::size_t max_len) {
    std::size_t n = 0;
    if (ok()) st_ = cur_.read_array(field, n);
    if (ok() && n > max_count) st_ = {status_code::too_large, std::string(field) + ": too many entries"};
    for (std::size_t i = 0; ok() && i < n; ++i) {
      std::string s;
      str(field, s, max_len);
      if (ok()) v.push_back(std::move(s));
    }
    return *this;
  }

 private:
  mpw::cursor cur_;
  status st_;
};

template <typename T>
result<T> finish(const reader& r, T value) {
  if (!r.ok()) return r.error();
  return value;
}

}  // namespace agentbus::session::wire_codec
