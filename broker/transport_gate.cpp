#include "transport_gate.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "admin_protocol.hpp"
#include "agentbus/bytes.hpp"
#include "net/transport_key.hpp"
#include "registry.hpp"
#include "util/log_limiter.hpp"

namespace agentbus::broker {

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

// A ZAP request (RFC 27): version, request id, domain, address, identity, mechanism,
// then the mechanism's credentials (CURVE: the client's 32-byte public key).
struct zap_request {
  std::vector<zmq::message_t> frames;
  std::string_view text(std::size_t i) const { return {frames[i].data<char>(), frames[i].size()}; }
};

}  // namespace

transport_gate::transport_gate(zmq::context_t& ctx, std::filesystem::path registry_file, metrics& stats,
                               bool admit_unknown_keys)
    : ctx_(ctx), registry_file_(std::move(registry_file)), stats_(stats), admit_unknown_(admit_unknown_keys) {
  std::promise<void> bound;
  auto ready = bound.get_future();
  thread_ = std::thread([this, &bound] {
    zmq::socket_t rep(ctx_, zmq::socket_type::rep);
    try {
      rep.set(zmq::sockopt::linger, 0);
      rep.bind(kZapEndpoint);
    } catch (...) {
      bound.set_exception(std::current_exception());
      return;
    }
    bound.set_value();
    run(rep);
  });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

transport_gate::~transport_gate() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void transport_gate::run(zmq::socket_t& rep) {
  std::optional<registry> reg;
  util::log_limiter limiter;
  while (!stop_.load()) {
    zmq::pollitem_t item{rep.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if ((item.revents & ZMQ_POLLIN) == 0) continue;
    zap_request req;
    zmq::message_t m;
    do {
      if (!rep.recv(m, zmq::recv_flags::none)) break;
      if (req.frames.size() < 8) req.frames.push_back(std::move(m));  // more is never asked for
      m = zmq::message_t();
    } while (rep.get(zmq::sockopt::rcvmore));

    std::string status_code = "400", status_text = "unknown client key", user_id;
    if (req.frames.size() < 6 || req.text(0) != "1.0") {
      stats_.increment("transport_refused_total", "malformed");
      status_text = "malformed ZAP request";
    } else if (req.text(5) != "CURVE") {
      // Plain endpoints (ipc://, or tcp:// with curve = false) set no ZAP domain and
      // never ask; a mechanism the broker did not configure is refused.
      stats_.increment("transport_refused_total", "malformed");
      status_text = "mechanism not offered";
    } else if (req.frames.size() < 7 || req.frames[6].size() != net::kCurveKeySize) {
      stats_.increment("transport_refused_total", "malformed");
      status_text = "malformed CURVE credentials";
    } else {
      const std::string key = to_hex(byte_view(req.frames[6].data<std::uint8_t>(), req.frames[6].size()));
      std::string by;
      try {
        if (!reg) reg.emplace(registry::open_readonly(registry_file_));
        by = reg->transport_admission(key, now_unix_ms());
      } catch (const std::exception& e) {
        reg.reset();  // reopened at the next request
        stats_.increment("transport_refused_total", "error");
        if (limiter.allow("registry", "transport gate")) spdlog::error("transport gate: registry read failed: {}", e.what());
        by = "";
        status_code = "500";
        status_text = "registry unavailable";
      }
      if (by.empty() && admit_unknown_) by = "unknown";
      if (!by.empty()) {
        status_code = "200";
        status_text = "OK";
        user_id = key;  // reaches every message of the connection as its "User-Id"
        stats_.increment("transport_admitted_total", by);
      } else if (status_code == "400") {
        stats_.increment("transport_refused_total", "unknown_key");
        if (limiter.allow("unknown_key", "transport gate"))
          spdlog::warn("transport gate: refused an unknown CurveZMQ client key {}… from {}", key.substr(0, 16),
                       std::string(req.text(3)).substr(0, 64));
      }
    }
    // The reply: version, request id, status code, status text, user id, metadata.
    const std::string_view request_id = req.frames.size() > 1 ? req.text(1) : std::string_view{};
    const std::string_view parts[] = {"1.0", request_id, status_code, status_text, user_id, ""};
    for (std::size_t i = 0; i < std::size(parts); ++i)
      rep.send(zmq::buffer(parts[i].data(), parts[i].size()),
               i + 1 < std::size(parts) ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

}  // namespace agentbus::broker
