#include "hello_cookies.hpp"

#include <openssl/crypto.h>

#include <climits>

namespace agentbus::broker {
namespace {
void put_u64(bytes& out, std::uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}
void put_lp(bytes& out, byte_view v) {
  const auto n = static_cast<std::uint32_t>(v.size());
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(n >> s));
  out.insert(out.end(), v.begin(), v.end());
}
byte_view view_of(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }
}  // namespace

hello_cookies::hello_cookies() {
  bytes k = crypto::random_bytes(32);
  key_ = crypto::hmac_key(hash_algorithm::sha256, k);
  OPENSSL_cleanse(k.data(), k.size());  // the key lives on only inside OpenSSL's context
}

bytes hello_cookies::tag(std::uint64_t issued_ms, byte_view route, const session::hello_msg& h) const {
  std::string_view label = "agentbus-v1 cookie";
  bytes in(label.begin(), label.end());
  in.push_back(0);
  put_u64(in, issued_ms);
  put_lp(in, route);
  put_lp(in, view_of(h.name));
  put_lp(in, view_of(h.role));
  put_lp(in, h.identity_der);
  return key_.tag(in);
}

bytes hello_cookies::issue(byte_view route, const session::hello_msg& h, std::int64_t now_ms) const {
  bytes out;
  out.reserve(kSize);
  put_u64(out, static_cast<std::uint64_t>(now_ms));
  const bytes t = tag(static_cast<std::uint64_t>(now_ms), route, h);
  out.insert(out.end(), t.begin(), t.end());
  return out;
}

bool hello_cookies::valid(byte_view cookie, byte_view route, const session::hello_msg& h, std::int64_t now_ms) const {
  if (cookie.size() != kSize) return false;
  std::uint64_t issued = 0;
  for (int i = 0; i < 8; ++i) issued = (issued << 8) | cookie[static_cast<std::size_t>(i)];
  const auto at = static_cast<std::int64_t>(issued);
  if (issued > static_cast<std::uint64_t>(INT64_MAX) || at > now_ms + 1000 || now_ms - at > kLifetime.count()) return false;
  return crypto::constant_time_equal(tag(issued, route, h), cookie.subspan(8));
}

}  // namespace agentbus::broker
