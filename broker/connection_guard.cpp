#include "connection_guard.hpp"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <cstring>
#include <unordered_map>

#include "util/log_limiter.hpp"

namespace agentbus::broker {

namespace {

using steady = std::chrono::steady_clock;

std::string next_monitor_endpoint() {
  static std::atomic<std::uint64_t> counter{0};
  return "inproc://agentbus-connection-guard-" + std::to_string(counter.fetch_add(1));
}

// tcp_peer: "ip:port" of a TCP socket's peer, "" if `fd` is not a connected TCP socket.
std::string tcp_peer(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    if (::inet_ntop(AF_INET, &v4.sin_addr, host, sizeof host) == nullptr) return {};
    return std::string(host) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    if (::inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof host) == nullptr) return {};
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(v6.sin6_port));
  }
  return {};  // ipc:// (AF_UNIX): file permissions guard those
}

bool bytes_received(int fd, std::uint64_t& out) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
  out = len >= offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received ? info.tcpi_bytes_received : 0;
  return true;
}

struct tracked {
  std::string peer;
  steady::time_point accepted_at;
  bool authenticated = false;
};

}  // namespace

std::vector<int> choose_shutdowns(std::vector<unauthenticated_connection> connections, std::uint64_t budget) {
  std::uint64_t total = 0;
  for (const auto& c : connections) total += c.bytes_received + kConnectionOverhead;
  std::vector<int> out;
  if (total <= budget) return out;
  std::sort(connections.begin(), connections.end(), [](const auto& a, const auto& b) {
    if (a.bytes_received != b.bytes_received) return a.bytes_received > b.bytes_received;
    return a.accepted_at < b.accepted_at;
  });
  for (const auto& c : connections) {
    if (total <= budget) break;
    out.push_back(c.fd);
    total -= c.bytes_received + kConnectionOverhead;
  }
  return out;
}

connection_guard::connection_guard(zmq::context_t& ctx, zmq::socket_t& router, metrics& stats,
                                   std::uint64_t max_unauthenticated_bytes)
    : router_(router.handle()), stats_(stats), budget_(max_unauthenticated_bytes / 2) {
  const std::string endpoint = next_monitor_endpoint();
  if (zmq_socket_monitor(router.handle(), endpoint.c_str(), ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0)
    throw zmq::error_t();
  events_ = zmq::socket_t(ctx, zmq::socket_type::pair);
  events_.set(zmq::sockopt::linger, 0);
  events_.connect(endpoint);  // before the ROUTER binds: no event is missed
  thread_ = std::thread([this] { run(); });
}

connection_guard::~connection_guard() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  (void)zmq_socket_monitor(router_, nullptr, 0);
}

void connection_guard::authenticated(int fd) {
  std::lock_guard lock(mu_);
  newly_authenticated_.push_back(fd);
}

void connection_guard::run() {
  std::unordered_map<int, tracked> conns;
  std::vector<int> early;  // authenticated() before its ACCEPTED was read: kept one sweep
  util::log_limiter limiter;
  auto next_sweep = steady::now();
  while (!stop_.load()) {
    zmq::pollitem_t item{events_.handle(), 0, ZMQ_POLLIN, 0};
    const auto wait = std::max<steady::duration>(next_sweep - steady::now(), steady::duration::zero());
    try {
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(wait));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    // An event: [u16 event, u32 value (the socket)], then the endpoint.
    zmq::message_t part;
    while (events_.recv(part, zmq::recv_flags::dontwait)) {
      std::uint16_t event = 0;
      std::uint32_t value = 0;
      if (part.size() >= 6) {
        std::memcpy(&event, part.data(), 2);
        std::memcpy(&value, part.data<std::uint8_t>() + 2, 4);
      }
      while (part.more() && events_.recv(part, zmq::recv_flags::dontwait)) {
      }
      const int fd = static_cast<int>(value);
      if (event == ZMQ_EVENT_DISCONNECTED) {
        conns.erase(fd);
      } else if (event == ZMQ_EVENT_ACCEPTED) {
        std::string peer = tcp_peer(fd);
        if (peer.empty()) conns.erase(fd);  // ipc://, or already gone
        else conns[fd] = tracked{std::move(peer), steady::now(), false};
      }
    }
    {
      std::lock_guard lock(mu_);
      early.insert(early.end(), newly_authenticated_.begin(), newly_authenticated_.end());
      newly_authenticated_.clear();
    }
    std::vector<int> still_early;
    for (int fd : early) {
      if (auto it = conns.find(fd); it != conns.end()) it->second.authenticated = true;
      else still_early.push_back(fd);
    }
    if (steady::now() < next_sweep) {
      early = std::move(still_early);
      continue;
    }
    early.clear();  // an authentication for a socket never seen accepted is dropped after one sweep
    early.swap(still_early);

    std::vector<unauthenticated_connection> open;
    std::uint64_t held = 0;
    for (auto& [fd, t] : conns) {
      if (t.authenticated) continue;
      std::uint64_t received = 0;
      if (!bytes_received(fd, received)) continue;  // gone; its DISCONNECTED follows
      open.push_back({fd, received, t.accepted_at});
      held += received + kConnectionOverhead;
    }
    next_sweep = steady::now() + (held > budget_ / 2 ? kAlertSweepInterval : kSweepInterval);
    stats_.set_gauge("unauthenticated_connections", "", static_cast<double>(open.size()));
    stats_.set_gauge("unauthenticated_bytes", "", static_cast<double>(held));
    for (int fd : choose_shutdowns(std::move(open), budget_)) {
      auto it = conns.find(fd);
      // The socket may have been closed and its number reused since its ACCEPTED.
      if (it == conns.end() || tcp_peer(fd) != it->second.peer) continue;
      ::shutdown(fd, SHUT_RDWR);
      stats_.increment("unauthenticated_connections_closed_total");
      if (limiter.allow("shutdown", "connection guard"))
        spdlog::warn("connection guard: closed unauthenticated connection from {}: unauthenticated connections held "
                     "{} KiB, more than half of max_unauthenticated_bytes ({} KiB)",
                     it->second.peer, held >> 10, budget_ >> 10);
      conns.erase(it);
    }
  }
}

}  // namespace agentbus::broker
