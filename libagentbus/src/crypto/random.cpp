#include <openssl/rand.h>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

bytes random_bytes(std::size_t n) {
  bytes out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw_crypto_error("RAND_bytes");
  return out;
}

}  // namespace agentbus::crypto
