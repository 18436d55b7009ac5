// fuzz_envelope: the envelope's two parts as a receiver or the broker decodes them
// (schemas/envelope.md). Whatever decodes must re-encode to the very same bytes (the
// decoders accept only the canonical encoding), and nothing may crash or leak.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "agentbus/envelope.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const agentbus::byte_view in(data + 1, size - 1);
  if (data[0] & 1) {
    auto h = agentbus::decode_signed_part(in);
    if (h && agentbus::encode_signed_part(*h) != agentbus::bytes(in.begin(), in.end())) std::abort();
  } else {
    auto a = agentbus::decode_auth_part(in);
    if (a && agentbus::encode_auth_part(*a) != agentbus::bytes(in.begin(), in.end())) std::abort();
  }
  return 0;
}
