// random_id_pool.hpp — random identifiers drawn from a buffer (internal).
//
// Every envelope carries a fresh 16-byte random message_id (schemas/envelope.md §3).
// One RAND_bytes call per envelope cost 8% of all CPU in a tpm-batch bench run on the
// development machine: OpenSSL's DRBG checks for a fork with getpid(), a syscall, on
// every call. Message ids are public (they travel in clear): they must be unique and
// unpredictable, not secret. Drawing 4 KiB at a time from the same CSPRNG keeps both
// properties at 1/256 of the calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "agentbus/bytes.hpp"

namespace agentbus::crypto {

// random_id_pool hands out kIdSize-byte identifiers from a buffer refilled with
// RAND_bytes; each byte is handed out once. For public identifiers only: keys,
// nonces and anything secret use random_bytes. Thread-safe. Throws crypto_error if
// RAND_bytes fails. Not fork-safe (a forked child must make its own pool).
class random_id_pool {
 public:
  static constexpr std::size_t kIdSize = 16;
  bytes next();

 private:
  static constexpr std::size_t kBufferSize = 4096;
  std::mutex mu_;
  std::array<std::uint8_t, kBufferSize> buffer_{};
  std::size_t used_ = kBufferSize;  // empty until the first call
};

}  // namespace agentbus::crypto
