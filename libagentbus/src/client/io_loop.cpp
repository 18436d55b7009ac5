// io_loop.cpp — the agent's io thread: the DEALER socket, and every message from the
// broker handed to the part that owns its kind.
#include <spdlog/spdlog.h>

#include "client/agent_runtime.hpp"
#include "session/control.hpp"
#include "session/handshake.hpp"
#include "util/overloaded.hpp"

namespace agentbus::client {
namespace control = session::control;
using util::overloaded;

void agent_runtime::io_loop() {
  using steady = std::chrono::steady_clock;
  auto last_ping = steady::now();
  bool send_blocked = false;  // the socket refused a send (HWM): poll for POLLOUT
  net::frames received;       // reused for every message: its buffers stay allocated
  while (!stopping) {
    // An optional periodic ping (off by default): a restarted broker is noticed
    // through the connection monitor without one.
    if (opts.ping_interval.count() > 0 && steady::now() - last_ping >= opts.ping_interval) {
      (void)link.send_control(control::ping{});
      last_ping = steady::now();
    }
    link.tick();
    topics.retry();
    // Flow control: verified messages go to the dispatcher as it has room; while
    // max_pending of them wait, nothing more is read from the broker (it waits in
    // ZeroMQ's queue; past its HWM the broker tells senders `overloaded`).
    receive.flush(jobs.room());
    const bool reading = receive.held() < opts.max_pending;
    const short dealer_events = static_cast<short>((reading ? ZMQ_POLLIN : 0) | (send_blocked ? ZMQ_POLLOUT : 0));
    zmq::pollitem_t items[3] = {{dealer.handle(), 0, dealer_events, 0},
                                {nullptr, outbound.wake_fd(), ZMQ_POLLIN, 0},
                                {monitor->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (items[1].revents & ZMQ_POLLIN) outbound.drain_wake();
    if (items[2].revents & ZMQ_POLLIN) {
      if (monitor->reconnected()) link.on_reconnected();
      if (monitor->take_handshake_succeeded()) link.on_transport_ok();
      if (auto r = monitor->take_refusal()) link.on_transport_refused(r->why, r->final);
    }
    send_queued(send_blocked);
    for (int budget = 0; reading && budget < 1024; ++budget) {
      // The largest message is a wire batch: kind, session id, MAC, 2 frames an envelope.
      if (!net::recv_multipart_into(dealer, received, 3 + 2 * session::kMaxWireBatchEnvelopes)) break;
      if (has_received_edit.load(std::memory_order_relaxed)) {
        std::lock_guard lock(received_edit_mu);
        if (received_edit) received_edit(received);
      }
      handle_frames(received);
      if (receive.held() >= opts.max_pending) break;
    }
    if (receive.held() < opts.max_pending) receive.retry();
    receive.flush(jobs.room());
  }
}

// send_queued sends what was queued, taken under one lock. What the socket refuses (at
// its high-water mark) goes back to the front, in order: no silent drop.
void agent_runtime::send_queued(bool& blocked) {
  std::deque<net::frames> batch = outbound.take_all();
  blocked = false;
  while (!batch.empty()) {
    if (!net::send_multipart(dealer, batch.front())) {
      blocked = true;
      break;
    }
    outbound.sent(batch.front());
    batch.pop_front();
  }
  outbound.put_back(batch);
}

void agent_runtime::handle_frames(net::frames& f) {
  if (f.empty()) return;
  const std::string_view kind = net::as_string(f[0]);
  if (kind == session::frame::kEnvelope) return receive.on_envelope(f);
  if (kind == session::frame::kWireBatch) return receive.on_wire_batch(f);
  if (kind == session::frame::kControl) return handle_control(f);
  if (kind == session::frame::kError) return handle_error(f);
  if (kind == session::frame::kCookie || kind == session::frame::kChallenge || kind == session::frame::kWelcome ||
      kind == session::frame::kRefused) {
    if (f.size() == 2) link.on_handshake(kind, f[1]);
    return;
  }
  rejections.report({"receiver", {status_code::malformed, "unexpected frame from the broker"}, "broker", opts.name, {}});
}

void agent_runtime::handle_control(const net::frames& f) {
  // Unauthenticated or replayed control messages are dropped, with a (rate-limited)
  // line: they come from no one the agent can answer.
  if (f.size() != 4 || !link.verify_control(f[1], f[2], f[3]).ok())
    return rejections.note("control", "control message with a bad MAC dropped");
  auto m = control::decode_answer(f[2]);
  if (!m) return rejections.note("control", "control message dropped: " + m.error().to_string());
  if (!link.accept_control(f[1], m->seq)) return rejections.note("control", "replayed control message dropped");
  std::visit(overloaded{
                 [&](const control::nack& n) {
                   // A refused session offer is forgotten at once (the next attempt sends
                   // a new one); a refused request fails now rather than at its timeout.
                   if (!n.message_id.empty()) {
                     sessions.on_nack(n.message_id);
                     pending_requests.complete(n.message_id, n.reason);
                   }
                   rejections.report({"broker", n.reason, opts.name, n.recipient, n.message_id});
                 },
                 [&](const control::peer_answer& a) { peers.on_answer(a); },
                 [&](const control::revoked& r) {
                   // An operator revoked this agent: its sessions end now and nothing more
                   // from it is accepted.
                   // The directory first: a session job running meanwhile then finds the
                   // peer gone and installs nothing in the entry forget() drops.
                   peers.revoked(r.name);
                   sessions.forget(r.name);
                   spdlog::warn("[{}] {} was revoked: sessions dropped", opts.name, r.name);
                 },
                 [&](const control::key_changed& k) {
                   // The agent enrolled with another key: its sessions were agreed under the
                   // old one. The next envelope looks its key up again (under the policy's
                   // pins, as any lookup) and a fresh session follows.
                   peers.forget(k.name);
                   sessions.forget(k.name);
                   spdlog::info("[{}] {} enrolled with a new key: its pinned key and sessions dropped", opts.name, k.name);
                 },
                 [&](const control::members& mm) { topics.on_members(mm); },
                 [&](const control::subscribed& s) { topics.on_subscribed(s); },
                 [&](const control::stats_answer&) {}},
             m->message);
}

void agent_runtime::handle_error(const net::frames& f) {
  result<session::error_msg> e = status{status_code::malformed, "ERR without a body"};
  if (f.size() == 3) {
    e = session::decode_error(f[2]);
  } else if (f.size() == 2) {
    // A broker from before the typed body: a status name, ": ", a detail.
    const std::string_view text = net::as_string(f[1]);
    const bool unknown = text.rfind(status_code_name(status_code::unknown_agent), 0) == 0;
    e = session::error_msg{unknown ? status_code::unknown_agent : status_code::malformed, std::string(text), {}};
  }
  if (!e) return rejections.note("error", "unreadable ERR from the broker dropped: " + e.error().to_string());
  // ERR is unauthenticated: it makes the agent report and re-enrol, nothing an attacker
  // on the path could not make it do by dropping traffic. It completes no request.
  if (!e->message_id.empty()) {
    // An envelope the broker did not take (it restarted and no longer knows us): the
    // sender hears of it by id.
    rejections.report({"broker", status(e->code, e->detail), opts.name, "", e->message_id});
  } else {
    spdlog::warn("[{}] broker error: {}: {}", opts.name, status_code_name(e->code), e->detail);
  }
  link.on_error(*e);
}

void agent_runtime::deliver_burst(std::vector<message>& burst) {
  std::vector<std::function<void()>> jobs_out;
  jobs_out.reserve(burst.size());
  for (auto& m : burst) jobs_out.push_back([this, m = std::move(m)] { run_delivery(m); });
  (void)jobs.push_all(jobs_out);
}

void agent_runtime::deliver_reply(message&& m) {
  // Straight to its waiter (a request may be waiting on the dispatch thread itself);
  // one whose request gave up is reported, not dropped silently.
  const bytes correlation = m.header.correlation_id;
  const std::string sender = m.header.sender;
  const bytes id = m.header.message_id;
  if (!pending_requests.complete(correlation, std::move(m)))
    rejections.report({"receiver", {status_code::timeout, "a reply arrived after its request gave up"}, sender,
                       opts.name, id});
}

void agent_runtime::run_delivery(const message& m) {
  if (m.header.type == envelope_type::request) {
    request_handler h;
    {
      std::lock_guard lock(handlers_mu);
      h = on_request;
    }
    if (!h) return;
    std::optional<bytes> answer = h(m);
    if (!answer) return;
    if (status st = send_envelope(envelope_type::reply, m.header.sender, "application/octet-stream", *answer,
                                  m.header.message_id);
        !st)
      rejections.report({"sender", {st.code(), "reply to " + m.header.sender + " not sent: " + st.detail()}, opts.name,
                         m.header.sender, m.header.message_id});
    return;
  }
  message_handler h;
  if (m.header.to_kind == recipient_kind::topic) {
    h = topics.handler(m.header.to);
  } else {
    std::lock_guard lock(handlers_mu);
    h = on_message;
  }
  if (h) h(m);
}

status agent_runtime::send_envelope(envelope_type type, const std::string& to, std::string_view content_type,
                                    byte_view payload, const bytes& correlation_id,
                                    std::shared_ptr<const seal_hooks> hooks, bytes message_id) {
  if (status st = sessions.ensure(to); !st) return st;
  return seal.seal_and_queue({type, recipient_kind::agent, to, content_type, payload, correlation_id, {to}, std::move(message_id)},
                             std::move(hooks));
}

}  // namespace agentbus::client
