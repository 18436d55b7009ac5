#include "client/zmq_util.hpp"

namespace agentbus::net {

std::optional<frames> recv_multipart(zmq::socket_t& socket, std::size_t max_frames) {
  frames out;
  bool overflow = false;
  for (;;) {
    zmq::message_t msg;
    auto got = socket.recv(msg, out.empty() && !overflow ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
    if (!got) return std::nullopt;  // nothing waiting (only possible for the first frame)
    if (out.size() < max_frames) out.emplace_back(msg.data<std::uint8_t>(), msg.data<std::uint8_t>() + msg.size());
    else overflow = true;
    if (!msg.more()) break;
  }
  if (overflow) out.resize(1);  // keep the first frame (a ROUTER's routing id) so the sender can be told
  return out;
}

send_outcome send_frames(zmq::socket_t& socket, const frames& parts, bool dont_wait) {
  for (std::size_t i = 0; i < parts.size(); ++i) {
    auto flags = (i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (dont_wait) flags = flags | zmq::send_flags::dontwait;
    try {
      // Multipart messages are atomic: EAGAIN/EHOSTUNREACH can only happen on the first frame.
      if (!socket.send(zmq::buffer(parts[i].data(), parts[i].size()), flags)) return send_outcome::would_block;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return send_outcome::unreachable;
      throw;
    }
  }
  return send_outcome::sent;
}

}  // namespace agentbus::net
