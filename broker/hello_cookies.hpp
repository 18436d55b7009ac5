// hello_cookies.hpp — the broker's stateless HELLO cookies (schemas/protocol.md §3.1).
//
// A HELLO without a cookie is answered COOKIE and nothing else: no pending entry, no
// registry read, no evidence check, no TPM work. The cookie is a MAC, under a key
// that never leaves this process, over the moment it was issued, the connection
// (routing id) and the HELLO's name, role and identity key. So a HELLO that returns
// a valid one comes from a peer that read the broker's answer on that very
// connection within kLifetime, for that name and key: the round trip DTLS's
// HelloVerifyRequest and CurveZMQ's cookie ask for, and no table to fill.
//
// The format is the broker's own (agents return it as they got it):
//   u64be(issued) || HMAC-SHA256(K, "agentbus-v1 cookie" || 0x00 || u64be(issued)
//                                  || lp(route) || lp(name) || lp(role) || lp(identity))
// lp(x) = u32be(len(x)) || x; `issued` in milliseconds of this process's steady clock
// (the key lives no longer than the process: no wall-clock step can age or revive a
// cookie). K: 32 random bytes drawn at start (a restarted broker answers an old
// cookie with a new one).
//
// Event-loop thread only (spend keeps state).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_set>
#include <utility>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "session/handshake.hpp"

namespace agentbus::broker {

class hello_cookies {
 public:
  // kLifetime: how long a cookie is good for (an agent returns it within one round
  // trip and one TPM signature).
  static constexpr std::chrono::milliseconds kLifetime{10'000};
  static constexpr std::size_t kSize = 8 + 32;
  static constexpr std::size_t kMaxSpent = 1u << 17;

  enum class verdict { fresh, invalid, spent, busy };

  hello_cookies();

  bytes issue(byte_view route, const session::hello_msg& h) const;
  // spend: fresh when `cookie` is one this process issued for this route, name, role
  // and key no more than kLifetime ago and never spent before (now it is); invalid
  // (forged, expired, for another connection, name or key); spent (returned twice);
  // busy (kMaxSpent unexpired cookies were spent: none can be recorded now).
  verdict spend(byte_view cookie, byte_view route, const session::hello_msg& h);

 private:
  using steady = std::chrono::steady_clock;
  static std::uint64_t now_ms();
  bytes tag(std::uint64_t issued_ms, byte_view route, const session::hello_msg& h) const;
  crypto::hmac_key key_;
  std::unordered_set<std::string> spent_;                   // tags of spent cookies
  std::deque<std::pair<std::uint64_t, std::string>> spent_order_;  // (issued, tag), oldest first
};

}  // namespace agentbus::broker
