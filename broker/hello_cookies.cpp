#include "hello_cookies.hpp"

#include <openssl/crypto.h>


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

std::uint64_t hello_cookies::now_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(steady::now().time_since_epoch()).count());
}

bytes hello_cookies::issue(byte_view route, const session::hello_msg& h) const {
  const std::uint64_t now = now_ms();
  bytes out;
  out.reserve(kSize);
  put_u64(out, now);
  const bytes t = tag(now, route, h);
  out.insert(out.end(), t.begin(), t.end());
  return out;
}

hello_cookies::verdict hello_cookies::spend(byte_view cookie, byte_view route, const session::hello_msg& h) {
  if (cookie.size() != kSize) return verdict::invalid;
  std::uint64_t issued = 0;
  for (int i = 0; i < 8; ++i) issued = (issued << 8) | cookie[static_cast<std::size_t>(i)];
  const std::uint64_t now = now_ms();
  const auto lifetime = static_cast<std::uint64_t>(kLifetime.count());
  if (issued > now || now - issued > lifetime) return verdict::invalid;
  if (!crypto::constant_time_equal(tag(issued, route, h), cookie.subspan(8))) return verdict::invalid;
  while (!spent_order_.empty() && now - spent_order_.front().first > lifetime) {
    spent_.erase(spent_order_.front().second);
    spent_order_.pop_front();
  }
  std::string key(reinterpret_cast<const char*>(cookie.data()) + 8, kSize - 8);
  if (spent_.count(key) != 0) return verdict::spent;
  if (spent_.size() >= kMaxSpent) return verdict::busy;
  spent_.insert(key);
  spent_order_.emplace_back(issued, std::move(key));
  return verdict::fresh;
}

}  // namespace agentbus::broker
