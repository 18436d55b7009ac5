#include "net/connection_monitor.hpp"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace agentbus::net {
namespace {

// inproc names are per context, and each agent has its own; the counter keeps them
// unique even for two monitors sharing a context.
std::string next_endpoint() {
  static std::atomic<std::uint64_t> counter{0};
  return "inproc://agentbus-connection-monitor-" + std::to_string(counter.fetch_add(1));
}

}  // namespace

connection_monitor::connection_monitor(zmq::context_t& ctx, zmq::socket_t& watched) : watched_(watched) {
  const std::string endpoint = next_endpoint();
  // libzmq binds its end of the pair here; ours connects below.
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(),
                         ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
    throw zmq::error_t();
  try {
    events_ = zmq::socket_t(ctx, zmq::socket_type::pair);
    events_.set(zmq::sockopt::linger, 0);
    events_.connect(endpoint);
  } catch (...) {
    (void)zmq_socket_monitor(watched.handle(), nullptr, 0);
    throw;
  }
}

connection_monitor::~connection_monitor() { close(); }

void connection_monitor::close() noexcept {
  if (!events_) return;
  (void)zmq_socket_monitor(watched_.handle(), nullptr, 0);  // libzmq closes its end
  events_.close();
}

bool connection_monitor::reconnected() {
  bool again = false;
  zmq::message_t part;
  // An event is two frames: 6 bytes (u16 event, u32 value, host order), then the
  // endpoint.
  while (events_.recv(part, zmq::recv_flags::dontwait)) {
    std::uint16_t event = 0;
    std::uint32_t value = 0;
    if (part.size() >= sizeof event + sizeof value) {
      std::memcpy(&event, part.data(), sizeof event);
      std::memcpy(&value, part.data<std::uint8_t>() + sizeof event, sizeof value);
    }
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      refusal_.reset();
      handshake_ok_ = true;
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      // ZAP (RFC 27): 400 refuses the key; 300 and 500 are temporary.
      refusal_ = value == 400
                     ? refusal{"the broker's transport refused this agent's CurveZMQ key (ZAP status 400): it admits "
                               "the key of a usable enrolment token or of an enrolled agent",
                               true}
                     : refusal{"the broker's transport could not admit this agent now (ZAP status " +
                                   std::to_string(value) + "); retrying",
                               false};
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      refusal_ = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                     ? refusal{"the broker's transport uses another security mechanism (CurveZMQ on one side only: "
                               "set broker_transport_key, or insecure_plain_tcp for a broker with [transport] "
                               "curve = false)",
                               true}
                     : refusal{"the ZMTP handshake with the broker failed (protocol error " + std::to_string(value) +
                                   "); retrying",
                               false};
    }
    if (event == ZMQ_EVENT_DISCONNECTED) {
      disconnected_ = true;
    } else if (event == ZMQ_EVENT_CONNECTED && disconnected_) {
      disconnected_ = false;
      again = true;
    }
  }
  return again;
}

std::optional<connection_monitor::refusal> connection_monitor::take_refusal() { return std::exchange(refusal_, std::nullopt); }

}  // namespace agentbus::net
