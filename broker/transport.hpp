// transport.hpp — how the broker's parts put a message on a connection.
//
// Every part that sends (enrolment, control, the router) goes through `transport`,
// so each of them runs in a unit test against a recording fake instead of a ROUTER
// socket. `router_transport` is the real one: the broker's ROUTER socket with
// ROUTER_MANDATORY, so a send to a vanished peer fails (unreachable) and a full
// queue is told apart (would_block); nothing is dropped without the caller knowing.
//
// Used on the broker's event-loop thread only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <zmq.hpp>

#include "agentbus/bytes.hpp"
#include "net/zmq_util.hpp"

namespace agentbus::broker {

// queue_meter: the bytes of messages to one recipient that the broker still holds (in
// ZeroMQ's queue for it), and how many it has written out so far. Shared with
// ZeroMQ's I/O thread, which moves bytes from one to the other; see send_counted.
struct queue_meter {
  std::atomic<std::int64_t> queued{0};
  std::atomic<std::uint64_t> released{0};
};
using queued_bytes = std::shared_ptr<queue_meter>;

class transport {
 public:
  virtual ~transport() = default;
  // send puts one message on the connection `route`: parts[0] is its kind.
  virtual net::send_outcome send(const bytes& route, std::span<const byte_view> parts) = 0;
  // send_counted is send, with the parts' bytes added to `queued` until ZeroMQ has
  // written them out (or dropped them): what the broker holds for that recipient.
  virtual net::send_outcome send_counted(const bytes& route, std::span<const byte_view> parts, const queued_bytes& queued) {
    (void)queued;
    return send(route, parts);
  }
};

class router_transport final : public transport {
 public:
  explicit router_transport(zmq::socket_t& router) : router_(router) {}
  net::send_outcome send(const bytes& route, std::span<const byte_view> parts) override;
  // Each part goes as a zero-copy ZeroMQ message over a buffer of its own, whose free
  // callback (ZeroMQ's I/O thread, once the bytes are written) subtracts its size.
  net::send_outcome send_counted(const bytes& route, std::span<const byte_view> parts, const queued_bytes& queued) override;

 private:
  zmq::socket_t& router_;
};

}  // namespace agentbus::broker
