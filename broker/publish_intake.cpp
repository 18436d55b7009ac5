#include "publish_intake.hpp"

#include <spdlog/spdlog.h>

#include "admin_protocol.hpp"
#include "session/handshake.hpp"

namespace agentbus::broker {
namespace {
using steady = std::chrono::steady_clock;
}  // namespace

// The broker's side of the enforcement order: the sender is the connection's agent,
// and the ACL asks who the recipient is.
class publish_intake::broker_hooks final : public session::enforcement_hooks {
 public:
  broker_hooks(const policy& pol, connections& agents, known_agent& from, session_offers& offers)
      : pol_(pol), agents_(agents), from_(from), offers_(offers) {}

  session::verdict sender(const envelope_header& h, session::sender_facts& out, status& why) override {
    if (h.sender != from_.name) {
      why = {status_code::spoofed_sender, "sender '" + h.sender + "' is not this connection's agent"};
      return session::verdict::refuse;
    }
    out = from_.facts();
    return session::verdict::accept;
  }

  status acl(const envelope_header& h, const session::sender_facts& s) override {
    if (h.to_kind == recipient_kind::topic) return pol_.check_publish(s.role, h.to);
    const known_agent* to = agents_.find(h.to);
    if (to == nullptr) return {status_code::not_deliverable, "no agent named '" + h.to + "' is known"};
    status direct = pol_.check_send(s.role, to->role);
    if (session::is_session_control(h)) {
      // An acceptance answers an offer in flight; an offer costs its recipient a
      // signature and a TPM ECDH: the offering side's rights decide (session_offers).
      if (h.content_type == session::kAcceptContentType) {
        if (offers_.answers(h)) return {};
        if (!direct) return {status_code::acl_denied, "a session acceptance that answers no offer in flight from '" + h.to + "'"};
        return direct;
      }
      const bool forward = direct.ok() || publishes_to(from_, *to);
      if (forward || reaches_back(from_, *to)) return offers_.may_offer(from_.name, h.to, forward, std::chrono::steady_clock::now());
    }
    if (direct) return direct;
    // Naming the recipient lets the trust graph draw the refused attempt to it.
    if (direct.code() == status_code::acl_denied)
      return {direct.code(), direct.detail() + " (recipient '" + h.to + "')"};
    return direct;
  }

 private:
  // publishes_to: `a` may publish a topic `b` follows (a's topic envelopes reach b):
  // one b subscribes to, or, for a pattern subscription, one a's publish rights and
  // the pattern both match.
  bool publishes_to(const known_agent& a, const known_agent& b) const {
    const auto* subscriptions = b.subscriptions();
    if (subscriptions == nullptr) return false;
    const role_policy* role = pol_.find_role(a.role);
    for (const auto& t : *subscriptions) {
      if (is_concrete_topic(t)) {
        if (pol_.check_publish(a.role, t).ok()) return true;
      } else if (role != nullptr) {
        for (const auto& allowed : role->publish)
          if (topic_patterns_overlap(allowed, t)) return true;
      }
    }
    return false;
  }
  // reaches_back: traffic flows from `b` to `a` (direct or over a topic): `a` may
  // re-offer a session `b` lost, within session_offers' budget.
  bool reaches_back(const known_agent& a, const known_agent& b) const {
    return pol_.check_send(b.role, a.role).ok() || publishes_to(b, a);
  }

  const policy& pol_;
  connections& agents_;
  known_agent& from_;
  session_offers& offers_;
};

publish_intake::publish_intake(const broker_config& cfg, const policy& pol, connections& agents, router& r, outbox& out,
                               accounting& acct, bool permissive)
    : cfg_(cfg),
      pol_(pol),
      agents_(agents),
      router_(r),
      out_(out),
      acct_(acct),
      verifier_(pol, session::verifier_options{cfg.max_clock_skew_ms, permissive}, &roots_) {}

void publish_intake::unknown_route(const bytes& route, std::span<const bytes> envelope_frames) {
  // The peer is not authenticated: it gets its envelopes named (a restarted broker's
  // answer to an agent that does not know it yet), but at most kMaxNamedPerMessage of
  // them, so one message cannot buy a thousand decodes and answers.
  constexpr std::size_t kMaxNamedPerMessage = 16;
  const status why{status_code::unknown_agent, "not enrolled"};
  std::size_t named = 0;
  for (std::size_t i = 0; i < envelope_frames.size() && named < kMaxNamedPerMessage; i += 2)
    if (envelope_frames[i].size() <= cfg_.max_frame_bytes)
      if (auto h = decode_signed_part(envelope_frames[i])) {
        out_.error(route, why, h->message_id);
        ++named;
      }
  if (named == 0) out_.error(route, why);
}

void publish_intake::on_envelope(const bytes& route, std::span<const bytes> frames) {
  const auto started = steady::now();
  // 1. The connection must be enrolled; size limits before decoding.
  connection* c = agents_.by_route(route);
  if (c == nullptr) return unknown_route(route, frames.size() == 2 ? frames.first(1) : frames.first(0));
  known_agent& a = *c->agent;
  auto refuse = [&](const bytes& id, const status& why, const std::string& to) {
    refuse_envelope(out_, acct_, a, id, why, to, steady::now() - started);
  };
  if (frames.size() != 2) return refuse({}, {status_code::malformed, "an envelope is 2 frames"}, "");
  if (frames[0].size() + frames[1].size() > cfg_.max_frame_bytes)
    return refuse({}, {status_code::too_large, "envelope exceeds max_frame_bytes"}, "");
  broker_hooks hooks(pol_, agents_, a, acct_.offers());
  session::opened_envelope e;
  session::sender_facts sender;
  status why;
  // 2.-4. Decoding, sender, declared suite, hop MAC; 5.-10. the rest, in the one order.
  if (verifier_.open(frames[0], frames[1], session::state_hop(c->hop), hooks, e, sender, why) != session::verdict::accept ||
      verifier_.check(e, sender, a.window, hooks, why) != session::verdict::accept)
    return refuse(e.header.message_id, why, e.header.to);
  acct_.passed_checks(steady::now() - started);
  accept_checked(a, e, frames[0], frames[1], nullptr);
}

namespace {
// Between brokers there is no hop session: NATS authenticates the brokers, and what
// makes an envelope acceptable is its own signature, checked with the rest.
class federation_hop final : public session::hop_receiver {
 public:
  status verify_envelope(byte_view, const envelope_auth&) const override { return {}; }
  status verify_batch(byte_view, std::span<const wire_batch_item>, byte_view) const override {
    return {status_code::malformed, "no wire batches between brokers"};
  }
};
}  // namespace

void publish_intake::on_federated(std::span<const federated_envelope> envelopes) {
  const federation_hop hop;
  // Staged deliveries refer to these: they live until the batch is flushed.
  std::vector<session::opened_envelope> opened(envelopes.size());
  fanout batch;
  fanout* staging = cfg_.wire_batches ? &batch : nullptr;
  for (std::size_t k = 0; k < envelopes.size(); ++k) {
    const federated_envelope& f = envelopes[k];
    known_agent& from = *f.from;
    const auto started = steady::now();
    session::opened_envelope& e = opened[k];
    try {
      broker_hooks hooks(pol_, agents_, from, acct_.offers());
      session::sender_facts sender;
      status why;
      if (verifier_.open(f.signed_part, f.auth_part, hop, hooks, e, sender, why) != session::verdict::accept ||
          verifier_.check(e, sender, from.window, hooks, why) != session::verdict::accept) {
        refuse_envelope(out_, acct_, from, e.header.message_id, why, e.header.to, steady::now() - started);
        continue;
      }
      acct_.passed_checks(steady::now() - started);
      accept_checked(from, e, f.signed_part, f.auth_part, staging, f.picked);
    } catch (const std::exception& ex) {
      refuse_internal(from, e.header, ex, " (federation)");
    }
  }
  router_.flush(batch);
}

void publish_intake::on_wire_batch(const bytes& route, std::span<const bytes> frames) {
  const auto started = steady::now();
  connection* c = agents_.by_route(route);
  if (c == nullptr) return unknown_route(route, frames.size() > 2 ? frames.subspan(2) : frames.first(0));
  known_agent& a = *c->agent;
  acct_.wire_batches_in().increment();
  broker_hooks hooks(pol_, agents_, a, acct_.offers());
  std::vector<session::opened_envelope> members;
  session::sender_facts sender;
  status why;
  // The batch as a unit: its shape, every member decoding, one sender and suite, no
  // member hop MAC, the one MAC. A failure refuses every envelope in it, by id.
  if (verifier_.open_batch(frames, cfg_.max_frame_bytes, session::state_hop(c->hop), hooks, members, sender, why) !=
      session::verdict::accept) {
    bool anonymous = false, named = false;
    session::for_each_member(frames, [&](const std::optional<envelope_header>& h) {
      if (h) refuse_envelope(out_, acct_, a, h->message_id, why, h->to, steady::now() - started);
      else anonymous = true;
      named = named || h.has_value();
    });
    // One refusal without an id for what had none (or a batch too short to hold any).
    if (anonymous || !named) refuse_envelope(out_, acct_, a, {}, why, "", steady::now() - started);
    return;
  }
  // Then each envelope on its own; what they deliver leaves as wire batches.
  fanout batch;
  fanout* staging = cfg_.wire_batches ? &batch : nullptr;
  for (std::size_t k = 0; k < members.size(); ++k) {
    const session::opened_envelope& e = members[k];
    const auto member_started = steady::now();
    try {
      if (verifier_.check(e, sender, a.window, hooks, why) != session::verdict::accept) {
        refuse_envelope(out_, acct_, a, e.header.message_id, why, e.header.to, steady::now() - member_started);
        continue;
      }
      accept_checked(a, e, frames[2 + 2 * k], frames[3 + 2 * k], staging);
    } catch (const std::exception& ex) {
      refuse_internal(a, e.header, ex, "");  // a bug in one envelope's path must not lose the others of its batch
    }
  }
  router_.flush(batch);
  acct_.passed_checks((steady::now() - started) / static_cast<long>(members.size()));
}

void publish_intake::refuse_internal(known_agent& a, const envelope_header& h, const std::exception& ex,
                                     std::string_view where) {
  acct_.stats().increment("internal_errors_total");
  spdlog::error("internal error while checking an envelope from {}{}: {}", a.name, where, ex.what());
  refuse_envelope(out_, acct_, a, h.message_id, {status_code::internal, "internal error"}, h.to);
}

void publish_intake::accept_checked(known_agent& a, const session::opened_envelope& e, byte_view signed_part,
                                    byte_view auth_part, fanout* batch, std::span<known_agent* const> picked) {
  // The sender's own connection may have closed meanwhile (a nack or a delivery to it
  // found it gone): the rest of its batch is still routed.
  if (a.conn) a.conn->hop.count_received();
  acct_.seen(a);
  if (e.header.type == envelope_type::control) acct_.note_session_control(e.header, agents_);
  router_.route(a, routed_envelope{&e.header, &e.auth, signed_part, e.digest, auth_part}, batch, picked);
}

}  // namespace agentbus::broker
