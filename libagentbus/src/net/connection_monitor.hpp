// connection_monitor.hpp — connection events of one ZeroMQ socket (internal).
//
// A DEALER reconnects by itself, silently: after a broker restart (or a connection
// that ZMTP heartbeats declared dead) the new connection belongs to a broker that
// does not know the agent, and nothing tells the agent until it next speaks. The
// monitor makes the reconnection visible, so the agent speaks at once instead of
// sending a periodic application ping (which, multiplied by every idle agent, is
// traffic through the broker's message queues and memory it keeps touching).
#pragma once

#include <zmq.hpp>

#include <optional>
#include <string>
#include <utility>

namespace agentbus::net {

// connection_monitor watches `watched` through zmq_socket_monitor on an inproc
// endpoint of its own (connected, disconnected, handshake refused) and reads the
// events without blocking. It borrows the context and the watched socket: close it
// (or destroy it) before either, i.e. declare it after them. Held in place (not
// copied or moved); close() is idempotent and the destructor does not throw. The
// constructor throws zmq::error_t when the monitor cannot be set up. Not
// thread-safe: use it on the thread that uses the watched socket (creating it on
// one thread and handing both to another before use is fine, as for any socket).
class connection_monitor {
 public:
  connection_monitor(zmq::context_t& ctx, zmq::socket_t& watched);
  ~connection_monitor();
  connection_monitor(const connection_monitor&) = delete;
  connection_monitor& operator=(const connection_monitor&) = delete;

  // handle is the event socket, for a zmq::pollitem_t: readable when events wait.
  void* handle() noexcept { return events_.handle(); }

  // reconnected reads every waiting event and returns true when, among them, the
  // socket connected again after having been disconnected (the first connection
  // is not a reconnection). Each reconnection is reported once.
  bool reconnected();

  // take_refusal returns, once, why the peer turned the latest connection away during
  // the ZMTP handshake, as read by reconnected(), or nullopt. `final`: it will not
  // change by retrying (a ZAP handler refusing the client key, status 400, or a
  // mechanism mismatch: CurveZMQ on one side only); libzmq reconnects and retries
  // all the same. A handshake that succeeded since clears it (handshake_succeeded).
  struct refusal {
    std::string why;
    bool final = false;
  };
  std::optional<refusal> take_refusal();
  // handshake_succeeded: a ZMTP handshake completed since the last call (read by
  // reconnected()).
  bool take_handshake_succeeded() { return std::exchange(handshake_ok_, false); }

  // close stops the monitoring and closes the event socket. The watched socket must
  // still be open.
  void close() noexcept;

 private:
  zmq::socket_ref watched_;
  zmq::socket_t events_;
  bool disconnected_ = false;  // a DISCONNECTED not yet followed by a CONNECTED
  std::optional<refusal> refusal_;
  bool handshake_ok_ = false;
};

}  // namespace agentbus::net
