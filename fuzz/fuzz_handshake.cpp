// fuzz_handshake: every handshake and session body an unauthenticated or enrolled peer
// can send (schemas/protocol.md §3-§4): the first byte picks the decoder, the rest is
// the frame. Whatever decodes must re-encode to the very same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "session/handshake.hpp"

namespace {
using namespace agentbus;

template <typename Decode>
void round_trip(byte_view in, Decode decode) {
  auto m = decode(in);
  if (m && session::encode(*m) != bytes(in.begin(), in.end())) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const byte_view in(data + 1, size - 1);
  switch (data[0] % 11) {
    case 0: {
      auto h = session::decode_hello(in);
      if (h && session::encode(*h) != bytes(in.begin(), in.end())) std::abort();
      if (h) (void)session::hello_transcript(session::encode(*h, false));
      break;
    }
    case 1: round_trip(in, session::decode_challenge); break;
    case 2: round_trip(in, session::decode_proof); break;
    case 3: round_trip(in, session::decode_welcome); break;
    case 4: round_trip(in, session::decode_refused); break;
    case 5: round_trip(in, session::decode_error); break;
    case 6: round_trip(in, session::decode_cookie); break;
    case 7: round_trip(in, session::decode_offer); break;
    case 8: round_trip(in, session::decode_accept); break;
    case 9: round_trip(in, session::decode_evidence); break;
    case 10: round_trip(in, session::decode_ctrl); break;
  }
  return 0;
}
