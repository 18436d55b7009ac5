#include "crypto/random_id_pool.hpp"

#include <openssl/rand.h>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

bytes random_id_pool::next() {
  std::lock_guard lock(mu_);
  if (used_ + kIdSize > buffer_.size()) {
    if (RAND_bytes(buffer_.data(), static_cast<int>(buffer_.size())) != 1) throw_crypto_error("RAND_bytes");
    used_ = 0;
  }
  const auto first = buffer_.begin() + static_cast<std::ptrdiff_t>(used_);
  bytes id(first, first + static_cast<std::ptrdiff_t>(kIdSize));
  used_ += kIdSize;
  return id;
}

}  // namespace agentbus::crypto
