#include "agentbus/bytes.hpp"

#include <openssl/crypto.h>

namespace agentbus {

std::string to_hex(byte_view data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (std::uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bytes from_hex(std::string_view hex, bool* ok) {
  bytes out;
  if (ok) *ok = false;
  if (hex.size() % 2 != 0) return {};
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  if (ok) *ok = true;
  return out;
}

secret_bytes::secret_bytes(std::size_t size) : buf_(size, 0) {}

secret_bytes::secret_bytes(const std::uint8_t* data, std::size_t size) : buf_(data, data + size) {}

secret_bytes::~secret_bytes() { clear(); }

secret_bytes::secret_bytes(secret_bytes&& other) noexcept : buf_(std::move(other.buf_)) {
  other.buf_.clear();
}

secret_bytes& secret_bytes::operator=(secret_bytes&& other) noexcept {
  if (this != &other) {
    clear();
    buf_ = std::move(other.buf_);
    other.buf_.clear();
  }
  return *this;
}

void secret_bytes::clear() noexcept {
  // Wipe the whole capacity: a shrink earlier may have left key bytes beyond size().
  if (buf_.capacity() > 0) OPENSSL_cleanse(buf_.data(), buf_.capacity());
  buf_.clear();
}

}  // namespace agentbus
