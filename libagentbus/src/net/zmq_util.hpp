// zmq_util.hpp — multipart helpers over cppzmq (internal).
#pragma once

#include <zmq.hpp>

#include <span>
#include <vector>

#include "agentbus/bytes.hpp"

namespace agentbus::net {

using frames = std::vector<bytes>;

// recv_multipart_into reads one whole message without blocking into `out`, reusing
// its buffers: a receive loop that keeps one `frames` allocates nothing per message
// once warm (only copies). False if no message is waiting (`out` is then
// unchanged). A message of more than max_frames frames is read whole and dropped:
// `out` then holds only its first frame (a ROUTER's routing id, so the sender can
// be told), which no handler accepts as a message.
//
// facts: when set and the message's second frame (a ROUTER's first after the routing
// id) equals facts->kind or facts->also, facts->out receives what libzmq knows of the
// connection it came over (connection_facts); otherwise facts->out is left alone.
// Asked only for those kinds, so other messages pay nothing for it.
struct connection_facts {
  std::string address;  // "Peer-Address" ("" where the transport has none: ipc://)
  std::string user_id;  // "User-Id": what a ZAP handler named the peer ("" without one)
  int fd = -1;          // the connection's socket (libzmq's private "__fd", what ZMQ_SRCFD reads; -1 if absent)
  void clear() {
    address.clear();
    user_id.clear();
    fd = -1;
  }
};
struct facts_of {
  std::string_view kind, also;
  connection_facts* out = nullptr;
};
bool recv_multipart_into(zmq::socket_t& socket, frames& out, std::size_t max_frames = 8,
                         const facts_of* facts = nullptr);

// set_heartbeats turns on ZMTP heartbeats on `socket` (ZeroMQ's own PING/PONG, outside
// the message queues): a PING every interval_ms, the connection dropped when nothing
// arrives for 3 intervals, and a TTL of 3 intervals asking the peer to drop it likewise
// (capped at libzmq's 6553.5 s). libzmq arms that TTL only at a PING and cancels it at
// any other traffic: a peer gone silent right after data is caught by the side's own
// heartbeats, not by the TTL. Set before connect/bind; interval_ms > 0.
void set_heartbeats(zmq::socket_t& socket, int interval_ms);

// send_outcome distinguishes a full queue (EAGAIN at the high-water mark) from a
// peer that is gone (EHOSTUNREACH under ROUTER_MANDATORY).
enum class send_outcome { sent, would_block, unreachable };

// send_frames sends all frames without blocking (unless dont_wait is false).
send_outcome send_frames(zmq::socket_t& socket, const frames& parts, bool dont_wait = true);

// send_routed sends `route` (a ROUTER's routing id) followed by `parts`, without
// gathering them into one container first.
send_outcome send_routed(zmq::socket_t& socket, byte_view route, std::span<const byte_view> parts, bool dont_wait = true);

// send_multipart: true when sent.
inline bool send_multipart(zmq::socket_t& socket, const frames& parts, bool dont_wait = true) {
  return send_frames(socket, parts, dont_wait) == send_outcome::sent;
}

inline bytes to_bytes(std::string_view s) { return bytes(s.begin(), s.end()); }
inline std::string_view as_string(const bytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

}  // namespace agentbus::net
