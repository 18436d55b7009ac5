// fuzz_control: control bodies after their hop MAC (schemas/protocol.md §5): requests
// an agent sends the broker, answers the broker sends an agent. Whatever decodes must
// re-encode to the very same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "session/control.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace agentbus;
  using namespace agentbus::session;
  if (size < 1) return 0;
  const byte_view in(data + 1, size - 1);
  if (data[0] & 1) {
    auto r = control::decode_request(in);
    if (r && control::encode(r->seq, r->message) != bytes(in.begin(), in.end())) std::abort();
  } else {
    auto a = control::decode_answer(in);
    if (a && control::encode(a->seq, a->message) != bytes(in.begin(), in.end())) std::abort();
  }
  return 0;
}
