// fuzz_wire_batch: a wire batch (schemas/envelope.md §7.3) as the broker and a receiver
// open it, before its MAC can decide: the shape, every member's decoding, one sender
// and suite. The input is split into frames: a count byte, then each frame as a
// 16-bit big-endian length and its bytes. The MAC key is random, so the fuzzer reaches
// everything up to the MAC (which it cannot forge) and the refusal path that names
// each member.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agentbus/policy.hpp"
#include "session/session_keys.hpp"
#include "session/verifier.hpp"

namespace {
using namespace agentbus;

class hooks final : public session::enforcement_hooks {
 public:
  explicit hooks(const policy& pol) : suite_(*pol.suite_for("MONITOR")) {}
  session::verdict sender(const envelope_header& h, session::sender_facts& out, status&) override {
    name_ = h.sender;
    out = {name_, "MONITOR", &suite_, nullptr, {}, protection::tpm};
    return session::verdict::accept;
  }
  status acl(const envelope_header&, const session::sender_facts&) override { return {}; }

 private:
  suite suite_;
  std::string name_;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const policy pol = policy::builtin_default();
  static const session::session_state state;  // no keys: the MAC never verifies
  if (size < 1) return 0;
  std::vector<bytes> frames;
  std::size_t at = 1;
  for (std::size_t n = 0; n < data[0] && at + 2 <= size; ++n) {
    const std::size_t len = (std::size_t{data[at]} << 8) | data[at + 1];
    at += 2;
    const std::size_t take = len < size - at ? len : size - at;
    frames.emplace_back(data + at, data + at + take);
    at += take;
  }
  session::verifier v(pol, {}, nullptr);
  hooks h(pol);
  std::vector<session::opened_envelope> out;
  session::sender_facts sender;
  status why;
  const session::state_hop hop(state);
  if (v.open_batch(frames, 1u << 20, hop, h, out, sender, why) != session::verdict::accept)
    session::for_each_member(frames, [](const std::optional<envelope_header>&) {});
  return 0;
}
