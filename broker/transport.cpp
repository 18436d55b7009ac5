#include "transport.hpp"

#include <cstring>

namespace agentbus::broker {

net::send_outcome router_transport::send(const bytes& route, std::span<const byte_view> parts) {
  return net::send_routed(router_, route, parts);
}

namespace {
struct counted_part {
  queued_bytes queued;
  std::int64_t size;
};
extern "C" void release_counted(void* data, void* hint) {
  auto* part = static_cast<counted_part*>(hint);
  part->queued->queued.fetch_sub(part->size, std::memory_order_relaxed);
  part->queued->released.fetch_add(static_cast<std::uint64_t>(part->size), std::memory_order_relaxed);
  delete part;
  delete[] static_cast<std::uint8_t*>(data);
}
}  // namespace

net::send_outcome router_transport::send_counted(const bytes& route, std::span<const byte_view> parts,
                                                 const queued_bytes& queued) {
  // The routing id first: a multipart message is refused (full queue, peer gone) on its
  // first frame or not at all.
  try {
    if (!router_.send(zmq::buffer(route.data(), route.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      return net::send_outcome::would_block;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return net::send_outcome::unreachable;
    throw;
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const byte_view part = parts[i];
    const int flags = (i + 1 < parts.size() ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
    zmq_msg_t msg;
    auto* buf = new std::uint8_t[part.size() == 0 ? 1 : part.size()];
    if (!part.empty()) std::memcpy(buf, part.data(), part.size());
    auto* hint = new counted_part{queued, static_cast<std::int64_t>(part.size())};
    queued->queued.fetch_add(hint->size, std::memory_order_relaxed);
    if (zmq_msg_init_data(&msg, buf, part.size(), release_counted, hint) != 0) {
      release_counted(buf, hint);
      throw zmq::error_t();
    }
    if (zmq_msg_send(&msg, router_.handle(), flags) < 0) {
      const int err = zmq_errno();
      zmq_msg_close(&msg);  // runs release_counted
      throw zmq::error_t(err);  // not after the first frame (see above)
    }
  }
  return net::send_outcome::sent;
}

}  // namespace agentbus::broker
