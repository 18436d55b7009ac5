// tpm_marshal.hpp — TPM structures to and from their wire bytes (tss2-mu), for the
// TPM worker and the attestation verifier (internal).
#pragma once

#include <tss2/tss2_mu.h>

#include <optional>

#include "agentbus/bytes.hpp"
#include "agentbus/tpm.hpp"

namespace agentbus::tpm {

template <typename T, TSS2_RC (*Marshal)(const T*, uint8_t[], size_t, size_t*)>
bytes marshal(const T& value) {
  bytes out(sizeof(T) + 16);
  size_t offset = 0;
  if (Marshal(&value, out.data(), out.size(), &offset) != TSS2_RC_SUCCESS) throw tpm_error("marshalling a TPM structure failed");
  out.resize(offset);
  return out;
}

// unmarshal parses exactly `data` (trailing bytes are a failure).
template <typename T, TSS2_RC (*Unmarshal)(const uint8_t[], size_t, size_t*, T*)>
std::optional<T> unmarshal(byte_view data) {
  T value{};
  size_t offset = 0;
  if (Unmarshal(data.data(), data.size(), &offset, &value) != TSS2_RC_SUCCESS || offset != data.size()) return std::nullopt;
  return value;
}

inline std::optional<TPM2B_PUBLIC> parse_public(byte_view b) {
  return unmarshal<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Unmarshal>(b);
}

}  // namespace agentbus::tpm
