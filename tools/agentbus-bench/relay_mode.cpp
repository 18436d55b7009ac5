// relay_mode.cpp — agentbus-bench --mode plain and --mode curve: the same
// traffic through a ZeroMQ DEALER -> ROUTER -> DEALER relay in this process, with
// no agentbus crypto (plain, the baseline) or CurveZMQ on every hop (curve: hop
// encryption and authentication, no origin signature).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "bench.hpp"
#include "process_stats.hpp"
#include "traffic.hpp"

namespace agentbus::bench {
namespace {

void set_hwm(zmq::socket_t& s) {
  s.set(zmq::sockopt::sndhwm, 10000);
  s.set(zmq::sockopt::rcvhwm, 10000);
  s.set(zmq::sockopt::linger, 0);
}

// curve_keys is a CurveZMQ key pair in Z85 text (zmq_curve_keypair).
struct curve_keys {
  std::array<char, 41> public_key{}, secret_key{};
};
curve_keys make_curve_keys() {
  curve_keys k;
  if (zmq_curve_keypair(k.public_key.data(), k.secret_key.data()) != 0)
    throw std::runtime_error("zmq_curve_keypair failed: libzmq has no CURVE support");
  return k;
}

}  // namespace

// run_plain relays through a ZeroMQ ROUTER with no agentbus crypto; with `curve`
// every hop is a CurveZMQ connection (encrypted and authenticated per hop, no
// origin signature), the comparison issue 5 asks for. No ZAP handler: any client
// key is accepted, which costs nothing on the data path.
bench_result run_plain(const bench_options& o, const fs::path& tmp, collector& col) {
  const bool curve = o.mode == "curve";
  bench_result res;
  res.keys = curve ? "CurveZMQ per hop (no signatures, no MACs)" : "none (no signatures, no MACs)";
  const curve_keys server = curve ? make_curve_keys() : curve_keys{};
  auto secure_client = [&](zmq::socket_t& sock) {
    if (!curve) return;
    curve_keys mine = make_curve_keys();
    sock.set(zmq::sockopt::curve_serverkey, std::string(server.public_key.data()));
    sock.set(zmq::sockopt::curve_publickey, std::string(mine.public_key.data()));
    sock.set(zmq::sockopt::curve_secretkey, std::string(mine.secret_key.data()));
  };
  res.suite = "-";
  res.senders = std::max(1, o.agents / 2);
  res.receivers = std::max(1, o.agents - res.senders);
  std::string endpoint = o.plain_endpoint.empty() ? "ipc://" + (tmp / "plain.sock").string() : o.plain_endpoint;
  res.broker = endpoint + " (in-process ROUTER relay)";
  auto t_setup = steady::now();

  zmq::context_t ctx(1);
  std::atomic<bool> stop{false};
  std::atomic<int> registered{0};
  std::atomic<std::uint64_t> relay_drops{0};

  zmq::socket_t router(ctx, zmq::socket_type::router);
  set_hwm(router);
  router.set(zmq::sockopt::router_mandatory, 1);
  if (curve) {
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey, std::string(server.secret_key.data()));
  }
  router.bind(endpoint);

  std::thread relay([&] {
    std::vector<zmq::message_t> parts;
    while (!stop.load()) {
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      // Drain what is ready.
      for (;;) {
        parts.clear();
        auto got = zmq::recv_multipart(router, std::back_inserter(parts), zmq::recv_flags::dontwait);
        if (!got) break;
        if (parts.size() == 2) {  // [from, "hello"]: a receiver registers
          ++registered;
          continue;
        }
        if (parts.size() != 3) continue;
        // [from, to, payload] -> [to, from, payload]
        std::swap(parts[0], parts[1]);
        try {
          zmq::send_multipart(router, parts);
        } catch (const zmq::error_t&) {
          ++relay_drops;  // EHOSTUNREACH: unknown receiver
        }
      }
    }
  });

  std::vector<std::thread> receivers;
  for (int r = 0; r < res.receivers; ++r) {
    receivers.emplace_back([&, r] {
      zmq::socket_t s(ctx, zmq::socket_type::dealer);
      set_hwm(s);
      s.set(zmq::sockopt::routing_id, fmt::format("r{}", r));
      secure_client(s);
      s.connect(endpoint);
      s.send(zmq::str_buffer("hello"), zmq::send_flags::none);
      std::vector<zmq::message_t> parts;
      while (!stop.load()) {
        zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(100));
        if (!(item.revents & ZMQ_POLLIN)) continue;
        for (;;) {
          parts.clear();
          auto got = zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait);
          if (!got) break;
          if (parts.size() == 2) col.on_payload(static_cast<const std::uint8_t*>(parts[1].data()), parts[1].size());
        }
      }
    });
  }
  const auto deadline = run_deadline(o);
  if (!wait_for([&] { return registered.load() >= res.receivers; }, [&] { return static_cast<std::uint64_t>(registered.load()); },
                o.stall, deadline)) {
    stop = true;
    for (auto& t : receivers) t.join();
    relay.join();
    throw std::runtime_error("plain relay: receivers did not register");
  }

  // Sender sockets are made and connected (and warmed up) before the clock starts.
  std::vector<zmq::socket_t> sockets;
  for (int s = 0; s < res.senders; ++s) {
    sockets.emplace_back(ctx, zmq::socket_type::dealer);
    set_hwm(sockets.back());
    sockets.back().set(zmq::sockopt::routing_id, fmt::format("s{}", s));
    secure_client(sockets.back());
    sockets.back().connect(endpoint);
  }
  res.setup_s = std::chrono::duration<double>(steady::now() - t_setup).count();
  auto t_warm = steady::now();
  bytes payload(o.size, 0xab);
  std::uint64_t warm_expected = 0;
  for (int s = 0; s < res.senders; ++s)
    for (int r = 0; r < res.receivers; ++r) {
      fill_payload(payload, 0, 0);
      std::string to = fmt::format("r{}", r);
      sockets[static_cast<std::size_t>(s)].send(zmq::buffer(to), zmq::send_flags::sndmore);
      sockets[static_cast<std::size_t>(s)].send(zmq::buffer(payload.data(), payload.size()), zmq::send_flags::none);
      ++warm_expected;
    }
  wait_for([&] { return col.warmups.load() >= warm_expected; }, [&] { return col.warmups.load(); }, o.stall, deadline);
  res.warmup_s = std::chrono::duration<double>(steady::now() - t_warm).count();

  std::atomic<std::uint64_t> sent{0};
  cpu_meter cpu;  // the relay, senders and receivers are all this process
  const double cpu_before = cpu.sample();
  const std::int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int s = 0; s < res.senders; ++s) {
    const std::uint64_t share = sender_share(o.messages, res.senders, s);
    threads.emplace_back([&, s, share] {
      zmq::socket_t& sock = sockets[static_cast<std::size_t>(s)];  // used by this thread only from now on
      bytes p(o.size, 0x5a);
      pacer pace(o.rate, res.senders);
      for (std::uint64_t k = 0; k < share; ++k) {
        std::string to = fmt::format("r{}", receiver_index(s, k, res.senders, res.receivers));
        pace.wait(k);
        fill_payload(p, 1, k);
        sock.send(zmq::buffer(to), zmq::send_flags::sndmore);
        sock.send(zmq::buffer(p.data(), p.size()), zmq::send_flags::none);
        ++sent;
      }
    });
  }
  for (auto& t : threads) t.join();
  bool complete = wait_for([&] { return col.received.load() >= sent.load(); }, [&] { return col.received.load(); }, o.stall,
                           deadline);
  res.cpu_s = cpu.sample() - cpu_before;
  res.cpu_scope = cpu.scope();
  res.cpu_counted = true;
  res.wall_s = measured_wall_s(col, t0);
  res.timed_out = !complete;
  res.attempted = o.messages;
  res.sent = sent.load();
  if (relay_drops.load() > 0) res.send_error_codes["relay_unreachable"] = relay_drops.load();

  stop = true;
  for (auto& t : receivers) t.join();
  relay.join();
  sockets.clear();
  router.close();
  return res;
}

}  // namespace agentbus::bench
