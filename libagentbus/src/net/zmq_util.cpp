#include "net/zmq_util.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>

namespace agentbus::net {

bool recv_multipart_into(zmq::socket_t& socket, frames& out, std::size_t max_frames, const facts_of* facts) {
  std::size_t n = 0;
  bool overflow = false;
  zmq::message_t msg;
  for (;;) {
    auto got = socket.recv(msg, n == 0 && !overflow ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
    if (!got) return false;  // nothing waiting (only possible for the first frame)
    if (n < max_frames) {
      if (n == out.size()) out.emplace_back();
      out[n++].assign(msg.data<std::uint8_t>(), msg.data<std::uint8_t>() + msg.size());
      // Every frame of a message carries its connection's metadata; read it from
      // the kind frame while that frame is at hand.
      if (n == 2 && facts != nullptr && facts->out != nullptr &&
          (std::string_view(msg.data<char>(), msg.size()) == facts->kind ||
           (!facts->also.empty() && std::string_view(msg.data<char>(), msg.size()) == facts->also))) {
        const char* a = zmq_msg_gets(msg.handle(), "Peer-Address");
        facts->out->address = a != nullptr ? a : "";
        const char* u = zmq_msg_gets(msg.handle(), "User-Id");
        facts->out->user_id = u != nullptr ? u : "";
        const char* fd = zmq_msg_gets(msg.handle(), "__fd");  // what ZMQ_SRCFD reads
        facts->out->fd = fd != nullptr ? std::atoi(fd) : -1;
      }
    } else {
      overflow = true;
    }
    if (!msg.more()) break;
  }
  // Too many frames: keep the first (a ROUTER's routing id) so the sender can be told.
  out.resize(overflow ? 1 : n);
  return true;
}

void set_heartbeats(zmq::socket_t& socket, int interval_ms) {
  socket.set(zmq::sockopt::heartbeat_ivl, interval_ms);
  socket.set(zmq::sockopt::heartbeat_timeout, 3 * interval_ms);
  socket.set(zmq::sockopt::heartbeat_ttl, std::min(3 * interval_ms, 6'553'500));
}

namespace {
template <typename Parts>
send_outcome send_parts(zmq::socket_t& socket, const Parts& parts, bool dont_wait, std::size_t after = 0) {
  std::size_t left = parts.size() + after;
  for (const auto& part : parts) {
    auto flags = (--left > 0 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (dont_wait) flags = flags | zmq::send_flags::dontwait;
    for (;;) {
      try {
        // Multipart messages are atomic: EAGAIN/EHOSTUNREACH can only happen on the
        // first frame. EINTR (a signal) can happen on any: retried, so that a message
        // is never left half-sent (the next one would be appended to it).
        if (!socket.send(zmq::buffer(part.data(), part.size()), flags)) return send_outcome::would_block;
        break;
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        if (e.num() == EHOSTUNREACH) return send_outcome::unreachable;
        throw;
      }
    }
  }
  return send_outcome::sent;
}
}  // namespace

send_outcome send_routed(zmq::socket_t& socket, byte_view route, std::span<const byte_view> parts, bool dont_wait) {
  // The routing id leads with the MORE flag; the message is sent only with its last part.
  const std::array<byte_view, 1> head{route};
  if (send_outcome o = send_parts(socket, head, dont_wait, parts.size()); o != send_outcome::sent) return o;
  return send_parts(socket, parts, dont_wait);
}

send_outcome send_frames(zmq::socket_t& socket, const frames& parts, bool dont_wait) {
  return send_parts(socket, parts, dont_wait);
}

}  // namespace agentbus::net
