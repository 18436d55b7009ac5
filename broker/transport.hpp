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

#include <span>
#include <zmq.hpp>

#include "agentbus/bytes.hpp"
#include "net/zmq_util.hpp"

namespace agentbus::broker {

class transport {
 public:
  virtual ~transport() = default;
  // send puts one message on the connection `route`: parts[0] is its kind.
  virtual net::send_outcome send(const bytes& route, std::span<const byte_view> parts) = 0;
};

class router_transport final : public transport {
 public:
  explicit router_transport(zmq::socket_t& router) : router_(router) {}
  net::send_outcome send(const bytes& route, std::span<const byte_view> parts) override;

 private:
  zmq::socket_t& router_;
};

}  // namespace agentbus::broker
