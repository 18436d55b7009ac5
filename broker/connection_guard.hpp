// connection_guard.hpp — the bound on what unauthenticated TCP connections can make
// the broker hold (issue 12, case 1; docs/threat-model.md).
//
// libzmq reads every connection as fast as its peer sends: it allocates a frame's
// declared size (up to max_frame_bytes) before the CurveZMQ handshake has
// authenticated anyone, and it buffers a multipart message whole before the broker
// sees any of it. Nothing the broker does after recv can bound that, so the guard
// watches the TCP connections themselves. A connection is unauthenticated until an
// agent has enrolled over it (enrolment tells the guard, authenticated()); what it
// can have made the broker hold is at most the bytes the kernel received on it
// (TCP_INFO tcpi_bytes_received) plus kConnectionOverhead. When the sum over all
// unauthenticated connections exceeds 3/8 of [transport] max_unauthenticated_bytes,
// the guard shuts connections down (shutdown(2): libzmq sees the connection end and
// frees what it held; the guard never closes a descriptor libzmq owns). The other
// 5/8 are headroom for what arrives between two sweeps (kAlertSweepInterval; a
// loopback peer sends 1-2 GiB/s) and for freed memory the allocator has not yet
// reused, so that the process's resident set stays within the budget
// (tests/hostile_transport_test.cpp measures its peak).
//
// Thread: its own, started by the constructor and joined by the destructor. It reads
// a zmq_socket_monitor of the ROUTER (ACCEPTED and DISCONNECTED carry the socket) and
// sweeps every kSweepInterval, or every kAlertSweepInterval while unauthenticated
// connections hold more than half of what it leaves (a sweep costs one getsockopt
// per unauthenticated connection). authenticated() may be called from any thread. The
// constructor must run on the thread that owns the ROUTER, before it binds.
//
// A monitor event arrives after the fact, so a descriptor may have been closed and
// reused by the time the guard acts on it: before shutting one down the guard checks
// that it is still a TCP socket with the peer address recorded at its ACCEPTED.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "metrics.hpp"

namespace agentbus::broker {

// unauthenticated_connection is what a sweep knows of one connection.
struct unauthenticated_connection {
  int fd = -1;
  std::uint64_t bytes_received = 0;
  std::chrono::steady_clock::time_point accepted_at{};
  std::string source;     // the peer's IP address (no port)
  bool admitted = false;  // it has sent a HELLO: its transport handshake (and ZAP) passed
};

// A connection younger than this that has not sent a HELLO yet is taken to be in its
// handshake (a legitimate one finishes in a few round trips) and is shut down last.
inline constexpr std::chrono::seconds kHandshakeGrace{1};
// What a legitimate connection sends before it has enrolled stays under this (the
// ZMTP and CurveZMQ handshakes, two HELLOs with TPM evidence, a PROOF: ~15 KiB).
inline constexpr std::uint64_t kSmallConnectionBytes = 64 * 1024;

// What one connection costs besides the bytes it sent: libzmq's engine with its 8 KiB
// input and output batches, the session, the kernel's socket (measured in
// tests/hostile_transport_test.cpp).
inline constexpr std::uint64_t kConnectionOverhead = 32 * 1024;

// choose_shutdowns returns the connections to shut down so that the rest hold at most
// `budget` bytes (each counted as bytes_received + kConnectionOverhead). Each victim
// comes from the source address that holds the most at that point, so that a flooding
// host loses its own connections first; within a source: connections that sent more
// than kSmallConnectionBytes (largest first), then, oldest first, small ones past
// kHandshakeGrace that never sent a HELLO, small ones that did, and small ones still
// within the grace. Pure; the guard's policy, tested on its own.
std::vector<int> choose_shutdowns(std::vector<unauthenticated_connection> connections, std::uint64_t budget,
                                  std::chrono::steady_clock::time_point now);

class connection_guard {
 public:
  static constexpr std::chrono::milliseconds kSweepInterval{10};
  static constexpr std::chrono::milliseconds kAlertSweepInterval{2};

  connection_guard(zmq::context_t& ctx, zmq::socket_t& router, metrics& stats, std::uint64_t max_unauthenticated_bytes);
  ~connection_guard();
  connection_guard(const connection_guard&) = delete;
  connection_guard& operator=(const connection_guard&) = delete;

  // admitted: a HELLO came over the TCP connection whose socket is `fd` (its transport
  // handshake passed). authenticated: an agent enrolled over it (with a credential):
  // from now on it is the agent's, not counted. closed: the broker closed that agent's
  // record (bye, revocation, a key approval, a stuck consumer, a newer connection):
  // the connection is shut down, so that what ZeroMQ holds for it goes and a revoked
  // agent keeps no connection. Any thread; applied at the guard's next wake-up, to the
  // connection the socket held at the call (not one that reused its number since).
  void admitted(int fd) { request(request_kind::admitted, fd); }
  void authenticated(int fd) { request(request_kind::authenticated, fd); }
  void closed(int fd) { request(request_kind::closed, fd); }

 private:
  enum class request_kind { admitted, authenticated, closed };
  struct pending_request {
    request_kind kind;
    int fd;
    std::chrono::steady_clock::time_point at;
  };
  void request(request_kind kind, int fd);
  void run();

  void* router_;  // to end the monitor in the destructor (on the ROUTER's thread)
  metrics& stats_;
  const std::uint64_t budget_;  // 3/8 of max_unauthenticated_bytes: what a sweep leaves at most
  zmq::socket_t events_;
  std::mutex mu_;
  std::vector<pending_request> requests_;  // under mu_
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace agentbus::broker
