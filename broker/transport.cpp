#include "transport.hpp"

namespace agentbus::broker {

net::send_outcome router_transport::send(const bytes& route, std::span<const byte_view> parts) {
  return net::send_routed(router_, route, parts);
}

}  // namespace agentbus::broker
