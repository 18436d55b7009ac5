#include "transport.hpp"

#include <cstring>
#include <memory>
#include <vector>

namespace agentbus::broker {

net::send_outcome router_transport::send(const bytes& route, std::span<const byte_view> parts) {
  return net::send_routed(router_, route, parts);
}

namespace {
struct counted_part {
  queued_bytes queued;
  std::int64_t size;
  bool handed_over = false;  // given to ZeroMQ to send (else freed unsent: not "released")
};
extern "C" void release_counted(void* data, void* hint) {
  auto* part = static_cast<counted_part*>(hint);
  part->queued->queued.fetch_sub(part->size, std::memory_order_relaxed);
  if (part->handed_over)
    part->queued->released.fetch_add(static_cast<std::uint64_t>(part->size), std::memory_order_relaxed);
  delete part;
  delete[] static_cast<std::uint8_t*>(data);
}

// prepared: the parts as ZeroMQ messages, built before anything is sent (so that no
// allocation can fail half-way through a multipart message); closed if not sent.
class prepared {
 public:
  prepared(std::span<const byte_view> parts, const queued_bytes& queued) : msgs_(parts.size()), hints_(parts.size()) {
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const byte_view part = parts[i];
      auto buf = std::make_unique<std::uint8_t[]>(part.empty() ? 1 : part.size());
      if (!part.empty()) std::memcpy(buf.get(), part.data(), part.size());
      auto hint = std::make_unique<counted_part>(counted_part{queued, static_cast<std::int64_t>(part.size())});
      if (zmq_msg_init_data(&msgs_[i], buf.get(), part.size(), release_counted, hint.get()) != 0) throw zmq::error_t();
      queued->queued.fetch_add(hint->size, std::memory_order_relaxed);  // before ZeroMQ can release it
      buf.release();
      hints_[i] = hint.release();
      built_ = i + 1;
    }
  }
  ~prepared() {
    for (std::size_t i = sent_; i < built_; ++i) zmq_msg_close(&msgs_[i]);  // runs release_counted
  }
  prepared(const prepared&) = delete;
  prepared& operator=(const prepared&) = delete;
  // hand_over: part i is about to be sent (after a successful send ZeroMQ owns it, and
  // what it frees then was written out); take_back: the send failed.
  zmq_msg_t* hand_over(std::size_t i) {
    hints_[i]->handed_over = true;
    return &msgs_[i];
  }
  void take_back(std::size_t i) { hints_[i]->handed_over = false; }
  void mark_sent(std::size_t i) { sent_ = i + 1; }
  std::size_t size() const { return msgs_.size(); }

 private:
  std::vector<zmq_msg_t> msgs_;
  std::vector<counted_part*> hints_;  // owned by their messages
  std::size_t built_ = 0, sent_ = 0;
};
}  // namespace

net::send_outcome router_transport::send_counted(const bytes& route, std::span<const byte_view> parts,
                                                 const queued_bytes& queued) {
  prepared msgs(parts, queued);
  // The routing id first: a multipart message is refused (full queue, peer gone) on its
  // first frame or not at all.
  for (;;) {
    try {
      if (!router_.send(zmq::buffer(route.data(), route.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
        return net::send_outcome::would_block;
      break;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      if (e.num() == EHOSTUNREACH) return net::send_outcome::unreachable;
      throw;
    }
  }
  // Once the routing id is in, the message must be finished whatever happens, or the
  // next message on this socket would be appended to it (another recipient's frames
  // delivered here): EINTR is retried; anything else ends it with an empty frame,
  // which the recipient refuses as malformed.
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const bool last = i + 1 == msgs.size();
    int rc;
    do rc = zmq_msg_send(msgs.hand_over(i), router_.handle(), (last ? 0 : ZMQ_SNDMORE) | ZMQ_DONTWAIT);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0) {
      const int err = zmq_errno();
      msgs.take_back(i);
      int end;
      do end = zmq_send(router_.handle(), "", 0, ZMQ_DONTWAIT);
      while (end < 0 && zmq_errno() == EINTR);
      throw zmq::error_t(err);
    }
    msgs.mark_sent(i);
  }
  return net::send_outcome::sent;
}

}  // namespace agentbus::broker
