// zmq_util.hpp — multipart helpers over cppzmq (internal).
#pragma once

#include <zmq.hpp>

#include <optional>
#include <vector>

#include "agentbus/bytes.hpp"

namespace agentbus::net {

using frames = std::vector<bytes>;

// recv_multipart reads one whole message without blocking; nullopt if none is
// waiting. Frames beyond max_frames are read and dropped, and the result is
// flagged by returning an empty vector (the caller treats it as malformed).
std::optional<frames> recv_multipart(zmq::socket_t& socket, std::size_t max_frames = 8);

// send_multipart sends all frames; false on EAGAIN (HWM) or EHOSTUNREACH (ROUTER_MANDATORY).
bool send_multipart(zmq::socket_t& socket, const frames& parts, bool dont_wait = true);

inline bytes to_bytes(std::string_view s) { return bytes(s.begin(), s.end()); }
inline std::string_view as_string(const bytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

}  // namespace agentbus::net
