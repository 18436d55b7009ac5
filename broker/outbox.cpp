#include "outbox.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <vector>

#include "logging.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"

namespace agentbus::broker {

void outbox::control(known_agent& to, const session::control::answer& msg) {
  if (!to.online()) return;
  connection& c = *to.conn;
  const session::mac_key* k = c.hop.send_key();
  const bytes body = session::control::encode(to.ctrl_out++, msg);
  const bytes tag = session::ctrl_tag(*k, body);
  const std::array<byte_view, 4> parts{as_bytes(session::frame::kControl), k->session_id, body, tag};
  if (status st = outcome_for(to, transport_.send(c.route, parts)); !st)
    stats_.increment("control_send_failures_total", status_code_name(st.code()));
}

void outbox::nack(known_agent& to, const bytes& message_id, const status& why, const std::string& recipient) {
  if (to.remote() && !to.online()) {
    if (relay_) relay_(to, message_id, why, recipient);
    return;
  }
  control(to, session::control::nack{why, recipient, message_id});
}

void outbox::error(const bytes& route, const status& why, const bytes& message_id) {
  stats_.increment("frames_refused_total", status_code_name(why.code()));
  if (limiter_.allow("unauthenticated")) {
    const log_scope fields{{"code", std::string(status_code_name(why.code()))}, {"reason", why.detail()}};
    spdlog::warn("frame from an unenrolled connection refused: {}", why.to_string());
  }
  // Frame 1 is the text agents before the typed body parsed (a status name first);
  // frame 2 the typed body (schemas/protocol.md §3.6).
  const std::string text = why.to_string().substr(0, 1024);
  const bytes body = session::encode(session::error_msg{why.code(), why.detail().substr(0, 1024), message_id});
  const std::array<byte_view, 3> parts{as_bytes(session::frame::kError), as_bytes(text), body};
  (void)transport_.send(route, parts);  // the peer is not enrolled: nothing more to do if it is gone
}

void outbox::refused(const bytes& route, const status& why) {
  const bytes body = session::encode(session::refused_msg{why.code(), why.detail().substr(0, 1024)});
  const std::array<byte_view, 2> parts{as_bytes(session::frame::kRefused), body};
  (void)transport_.send(route, parts);
}

net::send_outcome outbox::handshake(const bytes& route, std::string_view kind, const bytes& body) {
  const std::array<byte_view, 2> parts{as_bytes(kind), body};
  return transport_.send(route, parts);
}

status outbox::forward(known_agent& to, const routed_envelope& e) {
  if (!to.online()) return {status_code::not_deliverable, to.name + " is offline"};
  connection& c = *to.conn;
  const session::mac_key* k = c.hop.send_key();
  // The signed part is forwarded byte for byte; only the hop MAC is the recipient's.
  const session_mac hop{"", k->session_id, session::hop_tag(*k, e.digest, *e.auth)};
  const bytes auth_part = encode_auth_part(*e.auth, &hop);
  const std::array<byte_view, 3> parts{as_bytes(session::frame::kEnvelope), e.signed_part, auth_part};
  return send_within_budget(to, parts);
}

status outbox::forward_batch(known_agent& to, std::span<const routed_envelope> group) {
  if (!to.online()) return {status_code::not_deliverable, to.name + " is offline"};
  connection& c = *to.conn;
  const session::mac_key* k = c.hop.send_key();
  std::vector<wire_batch_item> items;
  std::vector<bytes> auth_parts;  // without hop MACs: the batch MAC covers them
  items.reserve(group.size());
  auth_parts.reserve(group.size());
  for (const auto& e : group) {
    items.push_back({e.digest, e.auth});
    auth_parts.push_back(encode_auth_part(*e.auth, nullptr));
  }
  const bytes tag = session::wire_batch_tag(*k, items);
  std::vector<byte_view> parts;
  parts.reserve(3 + 2 * group.size());
  parts.insert(parts.end(), {as_bytes(session::frame::kWireBatch), k->session_id, tag});
  for (std::size_t n = 0; n < group.size(); ++n) {
    parts.push_back(group[n].signed_part);
    parts.push_back(auth_parts[n]);
  }
  batches_out_->increment();
  return send_within_budget(to, parts);
}

status outbox::send_within_budget(known_agent& to, std::span<const byte_view> parts) {
  connection& c = *to.conn;
  std::int64_t size = 0;
  for (const auto& p : parts) size += static_cast<std::int64_t>(p.size());
  // What ZeroMQ still holds for this recipient, plus this message, within its budget
  // (a message larger than the whole budget goes when nothing else waits).
  const std::int64_t queued = c.queued->queued.load(std::memory_order_relaxed);
  if (queued > 0 && queued + size > max_queued_bytes_) return outcome_for(to, net::send_outcome::would_block);
  return outcome_for(to, transport_.send_counted(c.route, parts, c.queued));
}

status outbox::outcome_for(known_agent& to, net::send_outcome o) {
  switch (o) {
    case net::send_outcome::sent: return {};
    case net::send_outcome::would_block:  // its queue is full: the sender is told, nothing vanishes
      stats_.increment("recipient_queue_full_total");
      return {status_code::overloaded, to.name + " is not keeping up (its queue at the broker is full)"};
    case net::send_outcome::unreachable:  // the connection is gone (crashed without saying bye)
      agents_.close(to);
      return {status_code::not_deliverable, to.name + " is offline"};
  }
  return {status_code::internal, "unknown send outcome"};
}

}  // namespace agentbus::broker
