#include "client/receiver.hpp"

#include "session/handshake.hpp"

namespace agentbus::client {
namespace {
// kLateJoinGrace: how long after subscribing a topic envelope that carries no
// end-to-end MAC for this agent is taken as sealed before its publisher knew of the
// subscription (its member list travels from the broker while the envelope is being
// signed and sent) rather than refused. Such an envelope was never addressed to this
// agent; refusing it would report a failure nobody made. The publisher MACs for the
// new subscriber from its next envelope on.
constexpr std::chrono::seconds kLateJoinGrace{2};
}  // namespace

// The receiver's side of the enforcement order: the sender is a pinned peer, the
// ACL is this agent's policy and subscriptions, the end-to-end MAC its session's.
class receiver::receiver_hooks final : public session::enforcement_hooks {
 public:
  explicit receiver_hooks(receiver& r) : r_(r) {}

  session::verdict sender(const envelope_header& h, session::sender_facts& out, status& why) override {
    auto found = r_.peers_.check(h.sender);
    if (found.peer) {
      // One peer per wire batch (the verifier refuses a batch of several senders).
      peer = std::move(found.peer);
      out = peer->facts();
      return session::verdict::accept;
    }
    if (found.failure) {
      why = *found.failure;
      return session::verdict::refuse;
    }
    unknown = h.sender;
    return session::verdict::wait;  // park it; the broker is asked for the key
  }

  status acl(const envelope_header& h, const session::sender_facts& s) override {
    if (h.to_kind == recipient_kind::agent) {
      if (h.to != r_.opts_.name) return {status_code::invalid_field, "envelope addressed to " + h.to};
      // Offers and acceptances are exempt: session set-up precedes any traffic.
      if (session::is_session_control(h)) return {};
      return r_.pol_.check_send(s.role, r_.my_role_);
    }
    if (status st = r_.pol_.check_publish(s.role, h.to); !st) return st;
    if (!r_.subs_.subscribed(h.to)) {
      // Forwarded before the broker heard of an unsubscribe: dropped below, not refused.
      if (r_.subs_.left_within(h.to, kLateJoinGrace)) return {};
      return {status_code::acl_denied, "not subscribed to " + h.to};
    }
    return {};
  }

  session::verdict end_to_end(const session::opened_envelope& e, const session::sender_facts& s,
                              status& why) override {
    // Session set-up is authenticated by its signature: it has no end-to-end MAC.
    if (session::is_session_control(e.header)) return session::verdict::accept;
    if (e.header.to_kind == recipient_kind::topic && !r_.subs_.subscribed(e.header.to)) return session::verdict::drop;
    // `peer` is the directory's entry whose key verified the signature (the sender hook).
    if (!peer) {
      why = status(status_code::unknown_agent, "no verified peer for " + std::string(s.name));
      return session::verdict::refuse;
    }
    const session::verdict v = r_.sessions_.verify(*peer, e.digest, e.auth, why);
    if (v == session::verdict::refuse && why.code() == status_code::no_session &&
        e.header.to_kind == recipient_kind::topic && r_.subs_.joined_within(e.header.to, kLateJoinGrace))
      return session::verdict::drop;  // published before its publisher knew of this subscription
    return v;
  }

  std::shared_ptr<const peer_info> peer;
  std::string unknown;

 private:
  receiver& r_;
};

receiver::receiver(const agent_options& opts, const policy& pol, const std::string& my_role, broker_link& link,
                   peer_directory& peers, peer_sessions& sessions, subscriptions& subs, reporter& rep,
                   deliver_fn deliver, reply_fn on_reply)
    : opts_(opts),
      pol_(pol),
      my_role_(my_role),
      link_(link),
      peers_(peers),
      sessions_(sessions),
      subs_(subs),
      reporter_(rep),
      deliver_(std::move(deliver)),
      on_reply_(std::move(on_reply)),
      verifier_(pol, session::verifier_options{static_cast<std::uint64_t>(opts.max_clock_skew.count()), false}, &roots_) {}

void receiver::refuse(const status& why, std::string sender, std::string recipient, bytes message_id) {
  reporter_.report({"receiver", why, std::move(sender), std::move(recipient), std::move(message_id)});
}

void receiver::on_envelope(const net::frames& f) {
  if (!handle_envelope(f)) park(f, 1);
}

void receiver::on_wire_batch(const net::frames& f) {
  if (!handle_batch(f)) park(f, 3);
}

bool receiver::handle_envelope(const net::frames& f) {
  if (f.size() != 3) {
    refuse({status_code::malformed, "an envelope from the broker is 2 frames"}, "broker", opts_.name, {});
    return true;
  }
  receiver_hooks hooks(*this);
  session::opened_envelope e;
  session::sender_facts sender;
  status why;
  // 1.-4. Decoding, sender, declared suite, hop MAC.
  switch (verifier_.open(f[1], f[2], link_, hooks, e, sender, why)) {
    case session::verdict::wait:
      (void)peers_.ask(hooks.unknown);  // not sent now (queue full): asked again at the next retry
      return false;
    case session::verdict::refuse:
    case session::verdict::drop:  // steps 1-4 never drop
      refuse(why, e.header.sender.empty() ? "?" : e.header.sender, opts_.name, e.header.message_id);
      return true;
    case session::verdict::accept: break;
  }
  check(e, f[1], hooks.peer);
  return true;
}

// A wire batch from the broker (schemas/envelope.md §7.3): its one hop MAC stands for
// every member's; the shape, every member's decoding, one sender and its suite decide
// for the whole batch (a broker never builds a bad one), then each envelope is
// checked on its own.
bool receiver::handle_batch(const net::frames& f) {
  receiver_hooks hooks(*this);
  std::vector<session::opened_envelope> members;
  session::sender_facts sender;
  status why;
  const std::span<const bytes> frames = std::span(f).subspan(1);
  switch (verifier_.open_batch(frames, 2 * kMaxReceivedFrameBytes, link_, hooks, members, sender, why)) {
    case session::verdict::wait:
      (void)peers_.ask(hooks.unknown);
      return false;
    case session::verdict::refuse:
    case session::verdict::drop: {  // steps 1-4 never drop
      // Each envelope of it is refused by its id, as the broker would nack each.
      bool anonymous = false;
      session::for_each_member(frames, [&](const std::optional<envelope_header>& h) {
        if (h) refuse(why, h->sender, h->to, h->message_id);
        else anonymous = true;
      });
      if (anonymous) refuse(why, "broker", opts_.name, {});
      return true;
    }
    case session::verdict::accept: break;
  }
  for (std::size_t k = 0; k < members.size(); ++k) check(members[k], f[3 + 2 * k], hooks.peer);
  return true;
}

void receiver::check(session::opened_envelope& e, const bytes& signed_part, const std::shared_ptr<const peer_info>& peer) {
  receiver_hooks hooks(*this);
  hooks.peer = peer;  // the end-to-end MAC is checked against this key's sessions
  status why;
  session::replay_window& window = windows_[peer->name];
  switch (verifier_.check(e, peer->facts(), window, hooks, why)) {
    case session::verdict::refuse:
      return refuse(why, e.header.sender, e.header.to, e.header.message_id);
    case session::verdict::wait:
      // A session job for this sender is about to install the key its MAC needs.
      if (awaiting_session_.size() >= opts_.max_pending)
        return refuse({status_code::overloaded, "too many envelopes waiting for a session being set up"},
                      e.header.sender, e.header.to, e.header.message_id);
      awaiting_session_.push_back({std::move(e), signed_part, peer});
      return;
    case session::verdict::drop:
      ++unaddressed_;
      return;
    case session::verdict::accept: break;
  }
  ++received_;
  deliver(e, signed_part, peer);
}

void receiver::deliver(session::opened_envelope& e, const bytes& signed_part, const std::shared_ptr<const peer_info>& peer) {
  envelope_header& h = e.header;
  if (session::is_session_control(h)) {
    // Both sign and may use the TPM: the dispatch thread, never this one.
    if (h.content_type == session::kOfferContentType) sessions_.answer(peer, std::move(h), signed_part);
    else sessions_.complete(peer, std::move(h), signed_part);
    return;
  }
  message m{std::move(h), peer->role, e.auth.level, peer->key_protection};
  if (m.header.type == envelope_type::reply) return on_reply_(std::move(m));
  held_.push_back(std::move(m));
}

void receiver::flush(std::size_t room) {
  const std::size_t n = std::min(room, held_.size());
  if (n == 0) return;
  std::vector<message> burst;
  burst.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    burst.push_back(std::move(held_.front()));
    held_.pop_front();
  }
  deliver_(burst);
}

void receiver::park(const net::frames& f, std::size_t first_signed_part) {
  if (parked_.size() >= opts_.max_pending) {
    for (std::size_t i = first_signed_part; i < f.size(); i += 2)
      if (auto h = decode_signed_part(f[i]))
        refuse({status_code::overloaded, "too many envelopes waiting for sender keys"}, h->sender, opts_.name,
               h->message_id);
    return;
  }
  parked_.push_back(f);
}

void receiver::retry() {
  if (!parked_.empty()) {
    std::deque<net::frames> again;
    again.swap(parked_);
    for (auto& f : again) {
      const bool batch = net::as_string(f[0]) == session::frame::kWireBatch;
      if (!(batch ? handle_batch(f) : handle_envelope(f))) parked_.push_back(std::move(f));
    }
  }
  if (!awaiting_session_.empty()) {
    // In arrival order, those whose sender's job has run (installed or not: now they
    // pass or are refused as usual).
    std::deque<awaiting> ready;
    for (auto it = awaiting_session_.begin(); it != awaiting_session_.end();) {
      if (sessions_.job_pending(it->peer->name)) {
        ++it;
        continue;
      }
      ready.push_back(std::move(*it));
      it = awaiting_session_.erase(it);
    }
    for (auto& a : ready) {
      // The sender may have been revoked or changed key while its envelope waited: its
      // signature was checked against the key it had then.
      auto now_known = peers_.find(a.peer->name);
      if (!now_known || now_known->key_id != a.peer->key_id) {
        refuse({status_code::key_changed, a.peer->name + "'s key changed (or was revoked) while its envelope waited"},
               a.envelope.header.sender, a.envelope.header.to, a.envelope.header.message_id);
        continue;
      }
      check(a.envelope, a.signed_part, a.peer);
    }
  }
}

}  // namespace agentbus::client
