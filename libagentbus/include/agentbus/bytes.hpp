// bytes.hpp — byte buffers, views and a secret buffer that wipes itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

using bytes = std::vector<std::uint8_t>;
using byte_view = std::span<const std::uint8_t>;

// as_bytes views the characters of a string as bytes (no copy).
inline byte_view as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// to_hex renders lowercase hex; from_hex accepts upper or lower case and returns an
// empty vector and sets *ok=false on odd length or a non-hex character.
std::string to_hex(byte_view data);
bytes from_hex(std::string_view hex, bool* ok = nullptr);

// secret_bytes owns key material. Its storage is wiped with OPENSSL_cleanse when it
// is destroyed, cleared or moved from, so a derived key never outlives its owner in
// memory the allocator hands out again. It is move-only: copies of secrets are
// explicit (`clone()`). It never prints its content.
class secret_bytes {
 public:
  secret_bytes() = default;
  explicit secret_bytes(std::size_t size);
  secret_bytes(const std::uint8_t* data, std::size_t size);
  explicit secret_bytes(byte_view data) : secret_bytes(data.data(), data.size()) {}
  ~secret_bytes();

  secret_bytes(secret_bytes&& other) noexcept;
  secret_bytes& operator=(secret_bytes&& other) noexcept;
  secret_bytes(const secret_bytes&) = delete;
  secret_bytes& operator=(const secret_bytes&) = delete;

  secret_bytes clone() const { return secret_bytes(data(), size()); }
  void clear() noexcept;

  std::uint8_t* data() noexcept { return buf_.data(); }
  const std::uint8_t* data() const noexcept { return buf_.data(); }
  std::size_t size() const noexcept { return buf_.size(); }
  bool empty() const noexcept { return buf_.empty(); }
  byte_view view() const noexcept { return {buf_.data(), buf_.size()}; }

 private:
  std::vector<std::uint8_t> buf_;
};

}  // namespace agentbus

#pragma GCC visibility pop
