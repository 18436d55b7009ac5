#include "connection_guard.hpp"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <map>
#include <queue>
#include <unordered_map>

#include "util/log_limiter.hpp"

namespace agentbus::broker {

namespace {

using steady = std::chrono::steady_clock;

std::string next_monitor_endpoint() {
  static std::atomic<std::uint64_t> counter{0};
  return "inproc://agentbus-connection-guard-" + std::to_string(counter.fetch_add(1));
}

struct peer_name {
  std::string ip, ip_port;  // "" if not a connected TCP socket
};

peer_name tcp_peer(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    if (::inet_ntop(AF_INET, &v4.sin_addr, host, sizeof host) == nullptr) return {};
    return {host, std::string(host) + ":" + std::to_string(ntohs(v4.sin_port))};
  }
  if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    if (::inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof host) == nullptr) return {};
    return {host, "[" + std::string(host) + "]:" + std::to_string(ntohs(v6.sin6_port))};
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
  peer_name peer;
  steady::time_point accepted_at;
  bool admitted = false, authenticated = false;
};

// A request made at `at` concerns the connection that held the socket then. The guard
// reads ACCEPTED a little after libzmq accepted (it polls every few ms), so one
// accepted up to this much after the request is still taken to be that connection: a
// socket closed and reused inside this window by a peer that raced for its number
// is the residual (docs/threat-model.md).
constexpr std::chrono::milliseconds kRequestSlack{250};

// Victim order within one source: lower first.
int victim_class(const unauthenticated_connection& c, steady::time_point now) {
  if (c.bytes_received > kSmallConnectionBytes) return 0;
  if (!c.admitted && now - c.accepted_at >= kHandshakeGrace) return 1;
  return c.admitted ? 2 : 3;
}

}  // namespace

std::vector<int> choose_shutdowns(std::vector<unauthenticated_connection> connections, std::uint64_t budget,
                                  steady::time_point now) {
  std::uint64_t total = 0;
  for (const auto& c : connections) total += c.bytes_received + kConnectionOverhead;
  std::vector<int> out;
  if (total <= budget) return out;
  // Each source's connections in victim order, and what the source holds.
  std::sort(connections.begin(), connections.end(), [&](const auto& a, const auto& b) {
    if (a.source != b.source) return a.source < b.source;
    const int ca = victim_class(a, now), cb = victim_class(b, now);
    if (ca != cb) return ca < cb;
    if (ca == 0 && a.bytes_received != b.bytes_received) return a.bytes_received > b.bytes_received;
    return a.accepted_at < b.accepted_at;
  });
  struct source_state {
    std::uint64_t held = 0;
    std::size_t next = 0, end = 0;  // its connections: [next, end)
  };
  std::vector<source_state> sources;
  for (std::size_t i = 0; i < connections.size(); ++i) {
    if (i == 0 || connections[i].source != connections[i - 1].source) sources.push_back({0, i, i});
    sources.back().held += connections[i].bytes_received + kConnectionOverhead;
    sources.back().end = i + 1;
  }
  // The source holding the most first (its index breaks ties, for a stable order).
  auto less_held = [&](std::size_t a, std::size_t b) {
    if (sources[a].held != sources[b].held) return sources[a].held < sources[b].held;
    return a > b;
  };
  std::priority_queue<std::size_t, std::vector<std::size_t>, decltype(less_held)> heap(less_held);
  for (std::size_t i = 0; i < sources.size(); ++i) heap.push(i);
  while (total > budget && !heap.empty()) {
    const std::size_t s = heap.top();
    heap.pop();
    source_state& src = sources[s];
    const unauthenticated_connection& victim = connections[src.next++];
    const std::uint64_t cost = victim.bytes_received + kConnectionOverhead;
    out.push_back(victim.fd);
    total -= cost;
    src.held -= cost;
    if (src.next < src.end) heap.push(s);
  }
  return out;
}

connection_guard::connection_guard(zmq::context_t& ctx, zmq::socket_t& router, metrics& stats,
                                   std::uint64_t max_unauthenticated_bytes)
    : router_(router.handle()), stats_(stats), budget_(max_unauthenticated_bytes / 8 * 3) {
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

void connection_guard::request(request_kind kind, int fd) {
  if (fd < 0) return;
  std::lock_guard lock(mu_);
  requests_.push_back({kind, fd, steady::now()});
}

void connection_guard::run() {
  std::unordered_map<int, tracked> conns;
  std::vector<pending_request> waiting;  // requests for a socket whose ACCEPTED is not read yet
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
        peer_name peer = tcp_peer(fd);
        if (peer.ip.empty()) conns.erase(fd);  // ipc://, or already gone
        else conns[fd] = tracked{std::move(peer), steady::now()};
      }
    }
    {
      std::lock_guard lock(mu_);
      waiting.insert(waiting.end(), requests_.begin(), requests_.end());
      requests_.clear();
    }
    std::vector<pending_request> still_waiting;
    for (const pending_request& r : waiting) {
      auto it = conns.find(r.fd);
      if (it == conns.end()) {
        // Not (yet) known as a TCP connection: ipc://, gone, or its ACCEPTED not read.
        if (r.kind != request_kind::closed && steady::now() - r.at < kRequestSlack) still_waiting.push_back(r);
        continue;
      }
      tracked& t = it->second;
      if (t.accepted_at > r.at + kRequestSlack) continue;  // the socket was reused since the request
      switch (r.kind) {
        case request_kind::admitted: t.admitted = true; break;
        case request_kind::authenticated: t.authenticated = true; break;
        case request_kind::closed:
          // Only the connection the agent had: a newer one on the same number is not
          // authenticated (the broker does not ask for one another record still has).
          if (t.authenticated && tcp_peer(r.fd).ip_port == t.peer.ip_port) ::shutdown(r.fd, SHUT_RDWR);
          conns.erase(it);
          break;
      }
    }
    waiting = std::move(still_waiting);
    if (steady::now() < next_sweep) continue;

    const auto now = steady::now();
    std::vector<unauthenticated_connection> open;
    std::uint64_t held = 0;
    for (auto& [fd, t] : conns) {
      if (t.authenticated) continue;
      std::uint64_t received = 0;
      if (!bytes_received(fd, received)) continue;  // gone; its DISCONNECTED follows
      open.push_back({fd, received, t.accepted_at, t.peer.ip, t.admitted});
      held += received + kConnectionOverhead;
    }
    next_sweep = now + (held > budget_ / 2 ? kAlertSweepInterval : kSweepInterval);
    stats_.set_gauge("unauthenticated_connections", "", static_cast<double>(open.size()));
    stats_.set_gauge("unauthenticated_bytes", "", static_cast<double>(held));
    for (int fd : choose_shutdowns(std::move(open), budget_, now)) {
      auto it = conns.find(fd);
      // The socket may have been closed and its number reused since its ACCEPTED.
      if (it == conns.end() || tcp_peer(fd).ip_port != it->second.peer.ip_port) continue;
      ::shutdown(fd, SHUT_RDWR);
      stats_.increment("unauthenticated_connections_closed_total");
      if (limiter.allow("shutdown", "connection guard"))
        spdlog::warn("connection guard: closed unauthenticated connection from {}: unauthenticated connections held "
                     "{} KiB, more than 3/8 of max_unauthenticated_bytes ({} KiB)",
                     it->second.peer.ip_port, held >> 10, budget_ >> 10);
      conns.erase(it);
    }
  }
}

}  // namespace agentbus::broker
