// The encrypted, broker-authenticated transport (issue 12): agents on tcp:// endpoints
// speak CurveZMQ to a broker whose key they know, and the broker's ZAP handler turns
// away every client key nobody vouched for before a single message frame of theirs is
// accepted. Case 1 (a peer that sends frames with MORE set and never ends its message,
// which libzmq buffers whole) is replayed here against real brokers.
#include <arpa/inet.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "agentbus/agent.hpp"
#include "admin_client.hpp"
#include "net/transport_key.hpp"
#include "agentbus/testing/local_host.hpp"
#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"

namespace agentbus {
namespace {

using namespace std::chrono_literals;
using testing::broker_process;
using testing::bus_agent;
using testing::connect_agent;
using testing::inbox;
using testing::text;
using testing::wait_until;

class Transport : public testing::broker_test {};

broker_process::options tcp_broker(std::string extra_sections = {}) {
  broker_process::options o;
  o.tcp = true;
  o.extra_sections = std::move(extra_sections);
  return o;
}

// What case 1's budget allows unauthenticated peers to make the broker hold together
// (docs/threat-model.md).
constexpr long kUnauthenticatedBudgetKib = 64 * 1024;
constexpr std::size_t kMaxFrameBytes = 1114112;  // the broker's default max_frame_bytes

// rss_kib: a process's resident memory (VmRSS), in KiB (-1 if unreadable).
long rss_kib(pid_t pid) {
  const auto kib = testing::resident_kib(pid);
  return kib ? static_cast<long>(*kib) : -1;
}

// rss_peak samples a process's VmRSS every 5 ms on its own thread until destroyed.
class rss_peak {
 public:
  explicit rss_peak(pid_t pid) : pid_(pid), peak_(rss_kib(pid)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        const long now = rss_kib(pid_);
        if (now > peak_) peak_ = now;
        std::this_thread::sleep_for(5ms);
      }
    });
  }
  ~rss_peak() { stop(); }
  long stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return peak_;
  }

 private:
  pid_t pid_;
  std::atomic<long> peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// series reads one series (`name{label}` or `name`) from the broker's Prometheus text; 0 when absent.
double series(broker_process& b, const std::string& name_and_labels) { return b.metric(name_and_labels).value_or(0); }

int port_of(const std::string& tcp_endpoint) { return std::stoi(tcp_endpoint.substr(tcp_endpoint.rfind(':') + 1)); }

// raw_connect opens a non-blocking TCP connection to 127.0.0.1:port from `source` (an
// address of the loopback network: 127.0.0.2 plays another host) (-1 on failure).
int raw_connect(int port, const char* source = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (source != nullptr) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

// zmtp_greeting: a ZMTP 3.0 client greeting (RFC 23) offering `mechanism`.
std::string zmtp_greeting(const std::string& mechanism) {
  std::string g(64, '\0');
  g[0] = '\xff';
  g[9] = '\x7f';
  g[10] = 3;  // version 3.0
  g[11] = 0;
  g.replace(12, mechanism.size(), mechanism);
  return g;  // as-server 0, filler zeros
}

// frame_header: a long ZMTP frame of `size` bytes (flags: long, more and/or command).
std::string frame_header(std::uint64_t size, bool more, bool command) {
  std::string h(9, '\0');
  h[0] = static_cast<char>(0x02 | (more ? 0x01 : 0) | (command ? 0x04 : 0));
  for (int i = 0; i < 8; ++i) h[static_cast<std::size_t>(1 + i)] = static_cast<char>(size >> (8 * (7 - i)));
  return h;
}

// write_some writes what the socket takes now; false once the peer has closed it.
bool write_some(int fd, const std::string& data, std::size_t& offset) {
  while (offset < data.size()) {
    const ssize_t n = ::send(fd, data.data() + offset, data.size() - offset, MSG_NOSIGNAL);
    if (n > 0) {
      offset += static_cast<std::size_t>(n);
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  return true;
}

// closed_by_peer: the peer has closed `fd` (EOF or reset), without blocking.
bool closed_by_peer(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;  // the broker's greeting
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// endless_multipart replays case 1 as reported: a raw ZMTP client on its own
// connection sends a greeting, a HELLO frame and then 1 MiB frames with MORE set,
// never a last frame, reconnecting whenever the broker closes the connection.
// Returns the bytes the kernel accepted from it.
struct flood_result {
  std::uint64_t bytes = 0;
  int connections = 0;
};
flood_result endless_multipart(int port, const std::string& mechanism, std::chrono::milliseconds how_long) {
  flood_result r;
  const std::string mib_frame = frame_header(1 << 20, true, false) + std::string(1 << 20, 'x');
  const auto end = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < end) {
    const int fd = raw_connect(port);
    if (fd < 0) {
      std::this_thread::sleep_for(10ms);
      continue;
    }
    ++r.connections;
    // NULL: the READY command (Socket-Type DEALER) makes it a peer libzmq accepts
    // messages from; CURVE: never authenticated, so it gets no further.
    const std::string ready = std::string("\x05READY\x0bSocket-Type\x00\x00\x00\x06" "DEALER", 28);
    const std::string hello = zmtp_greeting(mechanism) +
                              (mechanism == "NULL" ? std::string{'\x04', static_cast<char>(ready.size())} + ready : "");
    std::size_t off = 0;
    bool open = write_some(fd, hello, off);
    // As a ZMTP peer does, the first message waits for the broker's greeting (libzmq
    // drops a peer whose message frames arrive before it has answered).
    std::size_t answered = 0;
    for (int i = 0; open && answered < 64 && i < 200; ++i) {
      char buf[256];
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) answered += static_cast<std::size_t>(n);
      else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) open = false;
      else std::this_thread::sleep_for(1ms);
    }
    std::string first = frame_header(5, true, false) + "HELLO";
    off = 0;
    open = open && write_some(fd, first, off);
    while (open && std::chrono::steady_clock::now() < end) {
      if (off == first.size()) {
        first = mib_frame;
        off = 0;
      }
      const std::size_t before = off;
      open = write_some(fd, first, off);
      r.bytes += off - before;
      if (open && off == before) std::this_thread::sleep_for(1ms);  // the kernel buffers are full
    }
    ::close(fd);
  }
  return r;
}

// exchange: `a` and `b` each send `n` envelopes to the other, and all arrive.
void expect_exchange(bus_agent& a, const std::string& a_name, bus_agent& b, const std::string& b_name, int n) {
  inbox in_a, in_b;
  in_a.attach(*a.client);
  in_b.attach(*b.client);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(a->send(b_name, "text/plain", text("to b " + std::to_string(i))).ok());
    ASSERT_TRUE(b->send(a_name, "text/plain", text("to a " + std::to_string(i))).ok());
  }
  EXPECT_TRUE(wait_until([&] { return in_a.count() == static_cast<std::size_t>(n) && in_b.count() == static_cast<std::size_t>(n); }))
      << in_a.describe() << in_b.describe();
  EXPECT_EQ(in_a.rejected() + in_b.rejected(), 0u) << in_a.describe() << in_b.describe();
}

TEST(TransportKeys, ATokensKeyIsTheX25519KeyOfItsHkdfAndMatchesLibzmq) {
  // The broker derives the key a token stands for; the agent derives the same from
  // the token; libzmq (libsodium) must compute the same public key from the secret.
  const bytes token = crypto::random_bytes(32);
  const net::curve_keypair k = net::curve_from_token(token);
  const secret_bytes s = crypto::hkdf(hash_algorithm::sha256, token, {},
                                      byte_view(reinterpret_cast<const std::uint8_t*>(net::kTransportKeyInfo.data()),
                                                net::kTransportKeyInfo.size()),
                                      32);
  EXPECT_TRUE(crypto::constant_time_equal(s.view(), k.secret.view()));
  char secret_z85[41] = {}, public_z85[41] = {};
  ASSERT_NE(zmq_z85_encode(secret_z85, k.secret.data(), 32), nullptr);
  ASSERT_EQ(zmq_curve_public(public_z85, secret_z85), 0);
  std::uint8_t from_zmq[32] = {};
  ASSERT_NE(zmq_z85_decode(from_zmq, public_z85), nullptr);
  EXPECT_EQ(to_hex(byte_view(from_zmq, 32)), to_hex(k.public_key));
  // Two tokens, two keys.
  EXPECT_NE(to_hex(net::curve_from_token(crypto::random_bytes(32)).public_key), to_hex(k.public_key));
}

TEST_F(Transport, AnAgentEnrolsOverCurveWithItsTokenAndComesBackOverTheKeyItEnrolledWith) {
  broker_process& b = broker(tcp_broker());
  ASSERT_FALSE(b.transport_key().empty());
  EXPECT_NE(b.log().find("CurveZMQ, broker transport key " + b.transport_key()), std::string::npos) << b.log();

  auto id = testing::make_identity(dir_.path() / "monitor-tcp", "MONITOR");
  auto key = id.key;
  const std::string token = b.issue_token("monitor-tcp", "MONITOR", key->public_key().fingerprint_hex());
  agent_options over_tcp;
  over_tcp.broker_endpoint = b.tcp_endpoint();
  over_tcp.enrolment_token = token;
  bus_agent monitor = testing::enrol_identity(b, std::move(id), "monitor-tcp", over_tcp);
  auto director = connect_agent(b, dir_.path(), "director-ipc", "DIRECTOR");
  expect_exchange(monitor, "monitor-tcp", director, "director-ipc", 20);
  EXPECT_GE(series(b, "transport_admitted_total{by=\"token\"}"), 1);

  // Restarted with the same options: the token is spent, but the key it stands for
  // is now the one monitor-tcp enrolled over.
  monitor.client.reset();
  agent_options again = over_tcp;
  again.name = "monitor-tcp";
  again.enrolment_token = token;
  b.prepare(again, "MONITOR", *key);
  auto pol = std::make_shared<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml"));
  monitor.client = std::make_unique<agent>(again, key, pol);
  expect_exchange(monitor, "monitor-tcp", director, "director-ipc", 5);
  EXPECT_GE(series(b, "transport_admitted_total{by=\"agent\"}"), 1);

  // Without the token, from a key file the broker never saw: refused at the transport,
  // and the agent says so at once (not at connect_timeout).
  monitor.client.reset();
  agent_options stranger = again;
  stranger.enrolment_token.clear();
  stranger.transport_key_file = dir_.path() / "monitor-tcp.transport.key";
  stranger.connect_timeout = 20s;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    agent refused(stranger, key, pol);
    ADD_FAILURE() << "an unknown transport key was admitted";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::not_authorised) << e.what();
    EXPECT_NE(std::string(e.what()).find("refused this agent's CurveZMQ key"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_GE(series(b, "transport_refused_total{reason=\"unknown_key\"}"), 1);
  // The key file was made 0600 on first use.
  struct stat st {};
  ASSERT_EQ(::stat(stranger.transport_key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(Transport, AnAgentWithoutTheBrokersTransportKeyIsRefusedBeforeConnecting) {
  broker_process& b = broker(tcp_broker());
  auto id = testing::make_identity(dir_.path() / "m", "MONITOR");
  agent_options o;
  o.name = "monitor-nokey";
  o.broker_endpoint = b.tcp_endpoint();
  o.broker_fingerprint = b.fingerprint();
  auto pol = std::make_shared<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml"));
  EXPECT_THROW(agent(o, id.key, pol), std::invalid_argument);
  o.broker_transport_key = "00ff";
  EXPECT_THROW(agent(o, id.key, pol), std::invalid_argument);
  // Another key than the broker's: CurveZMQ authenticates the broker, so the agent's
  // HELLO never reaches it; the timeout says what to check.
  {
    agent_options wrong = o;
    wrong.broker_transport_key = to_hex(net::curve_generate().public_key);
    wrong.connect_timeout = 1500ms;
    b.prepare(wrong, "MONITOR", *id.key);
    try {
      agent impostor(wrong, id.key, pol);
      ADD_FAILURE() << "enrolled through a broker transport key that is not the broker's";
    } catch (const enrolment_error& e) {
      EXPECT_EQ(e.code(), status_code::timeout) << e.what();
      EXPECT_NE(std::string(e.what()).find("wrong broker_transport_key"), std::string::npos) << e.what();
    }
  }
  // A plain client (insecure_plain_tcp) meets a CurveZMQ broker: a mechanism mismatch,
  // reported as such.
  o.broker_transport_key.clear();
  o.insecure_plain_tcp = true;
  o.connect_timeout = 20s;
  b.prepare(o, "MONITOR", *id.key);
  try {
    agent plain(o, id.key, pol);
    ADD_FAILURE() << "a plain client enrolled with a CurveZMQ broker";
  } catch (const enrolment_error& e) {
    EXPECT_NE(std::string(e.what()).find("another security mechanism"), std::string::npos) << e.what();
  }
}

TEST_F(Transport, Case1EndlessMultipartFromUnauthenticatedPeersCostsTheBrokerNothing) {
  broker_process& b = broker(tcp_broker());
  agent_options over_tcp;
  over_tcp.broker_endpoint = b.tcp_endpoint();
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, over_tcp);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  expect_exchange(monitor, "monitor-1", director, "director-1", 5);
  const long before = rss_kib(b.pid());
  rss_peak peak(b.pid());
  const double refused_before = series(b, "frames_refused_total{reason=\"unknown_agent\"}") +
                                series(b, "frames_malformed_total");
  const int port = port_of(b.tcp_endpoint());

  // As reported (3 connections took the broker from 24 MiB to 3.1 GiB): three raw
  // clients offering NULL (refused at the greeting: the endpoint is CURVE), three
  // offering CURVE that never send a valid HELLO command, and three libzmq clients
  // with CurveZMQ keys nobody vouched for, completing the handshake and sending 2 MiB
  // messages of garbage: if the gate let them through, the broker would read those
  // (and answer or count them as malformed).
  std::vector<std::jthread> attackers;  // joined however the test ends
  std::atomic<std::uint64_t> sent{0};
  std::atomic<int> connections{0};
  for (const char* mech : {"NULL", "NULL", "NULL", "CURVE", "CURVE", "CURVE"})
    attackers.emplace_back([&, m = std::string(mech)] {
      const auto r = endless_multipart(port, m, 3s);
      sent += r.bytes;
      connections += r.connections;
    });
  std::atomic<int> zmq_sent{0};
  for (int i = 0; i < 3; ++i)
    attackers.emplace_back([&] {
      zmq::context_t ctx(1);
      zmq::socket_t s(ctx, zmq::socket_type::dealer);
      net::curve_public_key server{};
      ASSERT_TRUE(net::parse_curve_public(b.transport_key(), server));
      net::make_curve_client(s, net::curve_generate(), server);
      s.set(zmq::sockopt::linger, 0);
      s.set(zmq::sockopt::sndtimeo, 100);
      s.connect(b.tcp_endpoint());
      const std::string mib(1 << 20, 'y');
      const auto end = std::chrono::steady_clock::now() + 3s;
      while (std::chrono::steady_clock::now() < end) {
        if (s.send(zmq::buffer(mib), zmq::send_flags::sndmore) && s.send(zmq::buffer(mib), zmq::send_flags::none)) ++zmq_sent;
        else std::this_thread::sleep_for(10ms);
      }
    });
  // Meanwhile the legitimate agents keep enrolling and exchanging envelopes.
  auto late = connect_agent(b, dir_.path(), "monitor-late", "MONITOR", false, over_tcp);
  expect_exchange(late, "monitor-late", director, "director-1", 20);
  expect_exchange(monitor, "monitor-1", director, "director-1", 20);
  for (auto& t : attackers) t.join();
  const long highest = peak.stop();
  const double refused_after = series(b, "frames_refused_total{reason=\"unknown_agent\"}") +
                               series(b, "frames_malformed_total");

  std::printf("case 1: %d raw connections, %.1f MiB accepted by the kernel; %d libzmq messages of 2 MiB queued by "
              "unknown-key clients; broker RSS %ld KiB before, peak %ld KiB (%+ld KiB)\n",
              connections.load(), static_cast<double>(sent.load()) / (1 << 20), zmq_sent.load(), before, highest,
              highest - before);
  EXPECT_GT(connections.load(), 6);                                        // the attack ran
  EXPECT_GT(zmq_sent.load(), 0);
  EXPECT_GE(series(b, "transport_refused_total{reason=\"unknown_key\"}"), 3);  // ZAP turned the keys away
  EXPECT_EQ(refused_after, refused_before) << "a message of an unknown-key client reached the broker";
  if (testing::kResidentSetIsMeaningful) {
    EXPECT_LT(highest - before, kUnauthenticatedBudgetKib);
  }
  EXPECT_TRUE(b.running());
}

TEST_F(Transport, Case1AsReportedOnPlainTcpIsCutAtMaxUnauthenticatedBytes) {
  // A broker that admits any peer on TCP (curve = false here; admit_unknown_keys is
  // the same for this purpose): the peers reach the point where libzmq buffers whole
  // multipart messages, and only the connection guard bounds them.
  broker_process& b = broker(tcp_broker("[transport]\ncurve = false\n"));
  agent_options plain_tcp;
  plain_tcp.broker_endpoint = b.tcp_endpoint();
  plain_tcp.insecure_plain_tcp = true;
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, plain_tcp);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  expect_exchange(monitor, "monitor-1", director, "director-1", 5);
  const long before = rss_kib(b.pid());
  rss_peak peak(b.pid());
  const int port = port_of(b.tcp_endpoint());
  std::vector<std::jthread> attackers;  // joined however the test ends
  std::atomic<std::uint64_t> sent{0};
  std::atomic<int> connections{0};
  for (int i = 0; i < 3; ++i)
    attackers.emplace_back([&] {
      const auto r = endless_multipart(port, "NULL", 3s);
      sent += r.bytes;
      connections += r.connections;
    });
  auto late = connect_agent(b, dir_.path(), "monitor-late", "MONITOR", false, plain_tcp);
  expect_exchange(late, "monitor-late", director, "director-1", 20);
  expect_exchange(monitor, "monitor-1", director, "director-1", 20);
  for (auto& t : attackers) t.join();
  const long highest = peak.stop();
  const double closed = series(b, "unauthenticated_connections_closed_total");
  std::printf("case 1 on plain TCP: %d connections sent %.1f MiB of endless multipart; %g closed by the guard; broker "
              "RSS %ld KiB before, peak %ld KiB (%+ld KiB), budget %ld KiB\n",
              connections.load(), static_cast<double>(sent.load()) / (1 << 20), closed, before, highest,
              highest - before, kUnauthenticatedBudgetKib);
  EXPECT_GT(sent.load(), 3ull * kUnauthenticatedBudgetKib * 1024) << "the attack offered more than the budget";
  EXPECT_GE(closed, 1);
  if (testing::kResidentSetIsMeaningful) {
    EXPECT_LT(highest - before, kUnauthenticatedBudgetKib);
  }
  EXPECT_TRUE(b.running());
}

TEST_F(Transport, PeersHoldingHandshakeFramesAreCutAtTheBudgetAndTheRestAtHandshakeTimeout) {
  // libzmq allocates a frame's declared size (up to max_frame_bytes) before the
  // CurveZMQ handshake has authenticated anyone: what one unauthenticated connection
  // can make the broker hold, until [transport] handshake_timeout_ms closes it.
  broker_process& b = broker(tcp_broker("[transport]\nhandshake_timeout_ms = 2000\n"));
  const int port = port_of(b.tcp_endpoint());
  const long before = rss_kib(b.pid());
  rss_peak peak(b.pid());
  constexpr int kConnections = 100;  // 106 MiB of declared frames: more than the 64 MiB budget
  std::vector<int> fds;
  int cut_while_sending = 0;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kConnections; ++i) {
    const int fd = raw_connect(port);
    ASSERT_GE(fd, 0);
    // A HELLO command declared at max_frame_bytes, all but its last byte sent.
    const std::string data = zmtp_greeting("CURVE") + frame_header(kMaxFrameBytes, false, true) +
                             std::string(kMaxFrameBytes - 1, 'h');
    std::size_t off = 0;
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    while (off < data.size() && std::chrono::steady_clock::now() < give_up) {
      if (!write_some(fd, data, off)) {
        ++cut_while_sending;
        break;
      }
      if (off < data.size()) std::this_thread::sleep_for(1ms);
    }
    fds.push_back(fd);
  }
  const auto sent_in = std::chrono::steady_clock::now() - started;
  // The guard cuts the largest while over the budget; the handshake timeout closes
  // the rest (nothing else would: none of them will ever finish).
  EXPECT_TRUE(wait_until(
      [&] {
        for (int fd : fds)
          if (!closed_by_peer(fd)) return false;
        return true;
      },
      10s));
  for (int fd : fds) ::close(fd);
  const long highest = peak.stop();
  const double closed = series(b, "unauthenticated_connections_closed_total");
  std::printf("pre-handshake: %d connections each declaring a %zu-byte HELLO (sent in %.2f s; %d cut while sending); "
              "%g closed by the guard; broker RSS %ld KiB before, peak %ld KiB (%+ld KiB), budget %ld KiB\n",
              kConnections, kMaxFrameBytes, std::chrono::duration<double>(sent_in).count(), cut_while_sending, closed,
              before, highest, highest - before, kUnauthenticatedBudgetKib);
  EXPECT_GE(closed, 1);
  if (testing::kResidentSetIsMeaningful) {
    EXPECT_LT(highest - before, kUnauthenticatedBudgetKib);
  }
  // A legitimate agent enrols over TCP afterwards.
  agent_options over_tcp;
  over_tcp.broker_endpoint = b.tcp_endpoint();
  auto monitor = connect_agent(b, dir_.path(), "monitor-after", "MONITOR", false, over_tcp);
  auto director = connect_agent(b, dir_.path(), "director-after", "DIRECTOR");
  expect_exchange(monitor, "monitor-after", director, "director-after", 5);
}

TEST_F(Transport, AHostHoldingIdleConnectionsDoesNotKeepAnotherHostsAgentOut) {
  // One host (127.0.0.2) keeps up to 600 idle connections open, reopening them as they
  // are closed, more than the guard lets them hold (3/8 of 8 MiB: 96 x 32 KiB); agents from
  // another host (127.0.0.1) still enrol over TCP: the guard takes its victims from
  // the source holding the most.
  broker_process& b = broker(tcp_broker("[transport]\nmax_unauthenticated_bytes = 8388608\n"));
  const int port = port_of(b.tcp_endpoint());
  std::atomic<bool> stop{false};
  std::atomic<int> opened{0};
  std::jthread flood([&] {
    std::vector<int> fds;
    while (!stop) {
      for (auto it = fds.begin(); it != fds.end();) {
        if (closed_by_peer(*it)) {
          ::close(*it);
          it = fds.erase(it);
        } else {
          ++it;
        }
      }
      while (fds.size() < 600 && !stop) {
        const int fd = raw_connect(port, "127.0.0.2");
        if (fd < 0) break;
        fds.push_back(fd);
        ++opened;
      }
      std::this_thread::sleep_for(20ms);
    }
    for (int fd : fds) ::close(fd);
  });
  ASSERT_TRUE(wait_until([&] { return series(b, "unauthenticated_connections_closed_total") >= 1; }, 10s));
  agent_options over_tcp;
  over_tcp.broker_endpoint = b.tcp_endpoint();
  over_tcp.connect_timeout = 10s;
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, over_tcp);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR", false, over_tcp);
  expect_exchange(monitor, "monitor-1", director, "director-1", 10);
  stop = true;
  flood.join();
  std::printf("idle flood from 127.0.0.2: %d connections opened, %g closed by the guard; two agents from "
              "127.0.0.1 enrolled over TCP meanwhile\n",
              opened.load(), series(b, "unauthenticated_connections_closed_total"));
  EXPECT_GT(opened.load(), 96) << "more idle connections than the guard lets them hold (96 x 32 KiB)";
}

TEST_F(Transport, ARevokedAgentLosesItsTcpConnectionAndCannotComeBack) {
  broker_process& b = broker(tcp_broker());
  agent_options over_tcp;
  over_tcp.broker_endpoint = b.tcp_endpoint();
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, over_tcp);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  expect_exchange(monitor, "monitor-1", director, "director-1", 3);
  const double refused_before = series(b, "transport_refused_total{reason=\"unknown_key\"}");
  broker::admin_client admin(b.admin_endpoint());
  auto r = admin.signed_request({{"op", "revoke"}, {"agent", "monitor-1"}, {"reason", "compromised"}}, b.operator_key(),
                                broker_process::kOperatorName);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  // Its connection is shut down (ZeroMQ gives a ROUTER no other way to drop one
  // peer); the agent reconnects, and the ZAP handler no longer admits its key.
  EXPECT_TRUE(wait_until([&] { return series(b, "transport_refused_total{reason=\"unknown_key\"}") > refused_before; },
                         10s))
      << b.log();
}

}  // namespace
}  // namespace agentbus
