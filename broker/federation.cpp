#include "federation.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "admin_protocol.hpp"  // now_unix_ms
#include "enrolment_authority.hpp"
#include "logging.hpp"
#include "util/overloaded.hpp"

namespace agentbus::broker {
namespace fw = federation_wire;
using steady = std::chrono::steady_clock;

federation::~federation() {
  // What was forwarded this turn leaves (its receipts are for whoever runs next).
  try {
    while (!pending_.empty()) publish_pending(pending_.begin()->first);
  } catch (const std::exception&) {
  }
}

federation::federation(const broker_config& cfg, const policy& pol, connections& agents, topics& t,
                       control_channel& control, publish_intake& intake, outbox& out, registry& reg, metrics& m,
                       nats_link& link)
    : cfg_(cfg),
      pol_(pol),
      agents_(agents),
      topics_(t),
      control_(control),
      intake_(intake),
      out_(out),
      reg_(reg),
      stats_(m),
      link_(link),
      sent_direct_(&m.get_counter("federation_sent_total", "direct")),
      sent_topic_(&m.get_counter("federation_sent_total", "topic")),
      sent_nack_(&m.get_counter("federation_sent_total", "nack")) {
  stats_.set_gauge("federation_brokers_live", {}, 0);
}

bool federation::live(std::string_view broker) const {
  const auto it = heartbeats_.find(broker);
  return it != heartbeats_.end() &&
         steady::now() - it->second < std::chrono::milliseconds(cfg_.federation_stale_after_ms);
}

status federation::may_enrol(const std::string& name) const {
  const known_agent* a = agents_.find(name);
  if (a == nullptr || !a->remote() || !a->remote_present) return {};
  return {status_code::enrolled_elsewhere, "'" + name + "' is online at broker " + a->home + " of the federation"};
}

void federation::local_opened(known_agent& a) {
  if (a.remote()) {
    set_presence(a, false);
    // Its record may be replaced although it says online only when its broker is down;
    // otherwise the directory's compare-and-set decides (claim_lost if the other won).
    if (!live(a.home)) take_over_.insert_or_assign(a.name, a.home);
    spdlog::info("federation: {} enrolled here; it was {} at broker {}", a.name, a.remote_online ? "online" : "offline", a.home);
    a.home.clear();
    a.remote_online = false;
    a.remote_subscriptions.clear();
    a.remote_queue_groups.clear();
  }
  local_changed(a);
}

void federation::local_changed(const known_agent& a) {
  if (!a.remote()) changed_.insert(a.name);
}

void federation::flush() {
  while (!pending_.empty()) publish_pending(pending_.begin()->first);
  send_receipts();
  if (changed_.empty()) return;
  for (const std::string& name : changed_) {
    const known_agent* a = agents_.find(name);
    if (a == nullptr || a->remote() || !a->key) continue;
    fw::agent_record r;
    r.name = a->name;
    r.role = a->role;
    r.suite = a->agent_suite.name;
    r.key_protection = a->key_protection;
    r.tpm_manufacturer = a->tpm_manufacturer;
    r.tpm_simulator = a->tpm_simulator;
    r.identity_der = a->key->der();
    r.evidence = a->evidence;
    r.online = a->online();
    if (a->online()) {
      r.subscriptions.assign(a->conn->subscriptions.begin(), a->conn->subscriptions.end());
      r.queue_groups.assign(a->conn->queue_groups.begin(), a->conn->queue_groups.end());
    }
    std::string from;
    if (auto it = take_over_.find(name); it != take_over_.end()) {
      from = it->second;
      take_over_.erase(it);
    }
    link_.write_agent(std::move(r), std::move(from));
  }
  changed_.clear();
}

// ---- outgoing ----

status federation::send_forward(std::string_view home, const std::string& subject, const routed_envelope& e,
                                const std::string& recipient, const std::vector<std::string>& picks) {
  auto it = outgoing_.find(home);
  if (it == outgoing_.end()) {
    // A random start per destination: a broker cannot guess the numbers another one
    // gets, nor a restart's numbers meet a previous run's receipts.
    std::random_device rd;
    it = outgoing_.emplace(std::string(home), outgoing{(std::uint64_t{rd()} << 32 | rd()) >> 1, {}}).first;
  }
  outgoing& link = it->second;
  if (link.waiting.size() >= kMaxUnconfirmed)
    return {status_code::overloaded, "broker " + std::string(home) + " has not confirmed " + std::to_string(kMaxUnconfirmed) +
                                         " envelopes yet"};
  const std::uint64_t seq = link.next_seq++;
  auto p = pending_.find(subject);
  // A message stays about kForwardedBatchBytes: what is pending leaves before an
  // envelope that would take it past that (one envelope alone may be larger, up to
  // max_frame_bytes, which nats-server's max_payload must allow).
  if (p != pending_.end() && p->second.writer.bytes_so_far() + e.signed_part.size() + e.auth_part.size() > fw::kForwardedBatchBytes) {
    publish_pending(subject);
    p = pending_.end();
  }
  if (p == pending_.end()) p = pending_.emplace(subject, pending_message{std::string(home), fw::forwarded_writer(cfg_.name), {}}).first;
  if (tamper_) {
    // A broker gone bad (tests): the payload's last byte changed; the structure stays valid.
    bytes changed(e.signed_part.begin(), e.signed_part.end());
    if (!changed.empty()) changed.back() ^= 0x01;
    p->second.writer.add(seq, changed, e.auth_part, picks);
  } else {
    p->second.writer.add(seq, e.signed_part, e.auth_part, picks);
  }
  p->second.seqs.push_back(seq);
  link.waiting.emplace(seq, unconfirmed{e.header->sender, recipient, e.header->message_id, steady::now()});
  if (p->second.writer.items() >= fw::kMaxForwardedItems) publish_pending(subject);
  return {};
}

void federation::publish_pending(std::string subject) {  // by value: callers pass pending_'s own key
  auto p = pending_.find(subject);
  if (p == pending_.end()) return;
  pending_message msg = std::move(p->second);
  pending_.erase(p);
  const status st = link_.publish(subject, msg.writer.finish());
  if (st) return;
  // Nothing of it left: its senders are told now, not after the receipt wait.
  auto link = outgoing_.find(msg.home);
  for (std::uint64_t seq : msg.seqs) {
    if (link == outgoing_.end()) break;
    auto w = link->second.waiting.find(seq);
    if (w == link->second.waiting.end()) continue;
    if (known_agent* a = agents_.find(w->second.sender); a && a->online()) out_.nack(*a, w->second.message_id, st, w->second.recipient);
    link->second.waiting.erase(w);
  }
}

status federation::forward_direct(const known_agent& to, const routed_envelope& e) {
  if (!to.remote_present || !live(to.home))
    return {status_code::not_deliverable, "'" + to.name + "' is not online at broker " + to.home +
                                              (live(to.home) ? "" : " (that broker is unreachable)")};
  if (status st = send_forward(to.home, fw::agent_subject(cfg_.federation_prefix, to.home, cfg_.name, to.name), e, to.name); !st)
    return st;
  sent_direct_->increment();
  return {};
}

status federation::forward_topic(std::string_view home, const routed_envelope& e, const std::vector<std::string>& picks) {
  if (!live(home)) return {status_code::not_deliverable, "broker " + std::string(home) + " is unreachable"};
  if (status st = send_forward(home, fw::topic_subject(cfg_.federation_prefix, home, cfg_.name, e.header->to), e,
                               "broker " + std::string(home), picks);
      !st)
    return st;
  sent_topic_->increment();
  return {};
}

void federation::send_receipts() {
  for (auto& [origin, seqs] : to_confirm_) {
    if (seqs.empty()) continue;
    fw::receipt r;
    r.from = cfg_.name;
    auto ranges = fw::ranges_of(seqs);
    for (std::size_t i = 0; i < ranges.size(); i += fw::kMaxReceiptRanges) {
      r.ranges.assign(ranges.begin() + static_cast<std::ptrdiff_t>(i),
                      ranges.begin() + static_cast<std::ptrdiff_t>(std::min(ranges.size(), i + fw::kMaxReceiptRanges)));
      (void)link_.publish(fw::receipt_subject(cfg_.federation_prefix, origin, cfg_.name), fw::encode(r));  // lost: the sender times out
    }
    seqs.clear();
  }
}

void federation::on_receipt(const std::string& from_broker, byte_view data) {
  auto r = fw::decode_receipt(data);
  if (!r || r->from != from_broker) {
    stats_.increment("federation_malformed_total");
    return;
  }
  auto it = outgoing_.find(r->from);
  if (it == outgoing_.end()) return;
  auto& waiting = it->second.waiting;
  for (const auto& [first, last] : r->ranges)
    waiting.erase(waiting.lower_bound(first), waiting.upper_bound(last));
}

void federation::expire_unconfirmed(steady::time_point now) {
  for (auto& [home, link] : outgoing_) {
    for (auto it = link.waiting.begin(); it != link.waiting.end();) {
      if (now - it->second.sent < kReceiptTimeout) {
        ++it;
        continue;
      }
      stats_.increment("federation_unconfirmed_total");
      if (known_agent* a = agents_.find(it->second.sender); a && a->online()) {
        const status why{status_code::timeout, "broker " + home + " did not confirm receipt within " +
                                                   std::to_string(kReceiptTimeout.count()) +
                                                   " s: it may not have been delivered"};
        if (limiter_.allow("unconfirmed"))
          spdlog::warn("envelope from {} to {} unconfirmed by broker {}: its sender is told", a->name,
                       it->second.recipient, home);
        out_.nack(*a, it->second.message_id, why, it->second.recipient);
      }
      it = link.waiting.erase(it);
    }
  }
}

void federation::nack_to(const std::string& broker, const std::string& sender, const bytes& message_id,
                         const status& why, const std::string& recipient) {
  fw::relayed_nack n;
  n.origin = cfg_.name;
  n.sender = sender;
  n.message_id = message_id;
  n.code = static_cast<std::uint64_t>(why.code());
  n.detail = why.detail().substr(0, 480);
  n.recipient = recipient.substr(0, 128);
  if (link_.publish(fw::nack_subject(cfg_.federation_prefix, broker, cfg_.name), fw::encode(n))) sent_nack_->increment();
}

void federation::relay_nack(const known_agent& sender, const bytes& message_id, const status& why,
                            const std::string& recipient) {
  nack_to(sender.home, sender.name, message_id, why, recipient);
}

// ---- incoming ----

void federation::drain() {
  for (auto& ev : link_.take()) {
    try {
      std::visit(util::overloaded{
                     [&](const nats_link::inbox_message& m) { on_inbox(m); },
                     [&](const nats_link::directory_update& u) { on_directory(u); },
                     [&](const nats_link::claim_lost& c) {
                       known_agent* a = agents_.find(c.name);
                       if (a == nullptr || !a->online()) return;
                       stats_.increment("federation_claims_lost_total");
                       spdlog::warn("{} disconnected: broker {} holds the name (it enrolled there at the same time)",
                                    c.name, c.holder);
                       agents_.close(*a);
                     },
                     [&](const nats_link::link_state& s) {
                       stats_.set_gauge("federation_connected", {}, s.connected ? 1 : 0);
                       // Back on NATS: write every local agent again (writes made while away
                       // were retried, but a broker that restarted meanwhile needs ours).
                       if (s.connected)
                         agents_.for_each_online([&](known_agent& a) { local_changed(a); });
                     }},
                 ev);
    } catch (const std::exception& e) {
      stats_.increment("internal_errors_total");
      spdlog::error("federation: internal error while handling a message from NATS: {}", e.what());
    }
  }
}

void federation::on_inbox(const nats_link::inbox_message& m) {
  // The subject's sender is what NATS's permissions vouch for; a message must come
  // from a broker of the federation other than this one, and say the same inside.
  const fw::inbox_address at = fw::classify(cfg_.federation_prefix, cfg_.name, m.subject);
  if (at.kind == fw::inbox_kind::other || at.from == cfg_.name || !cfg_.federation_brokers.count(at.from)) {
    stats_.increment("federation_malformed_total");
    return;
  }
  switch (at.kind) {
    case fw::inbox_kind::agent: return on_forwarded(at.from, m.data, false, at.agent);
    case fw::inbox_kind::topic: return on_forwarded(at.from, m.data, true, {});
    case fw::inbox_kind::nack: return on_relayed_nack(at.from, m.data);
    case fw::inbox_kind::receipt: return on_receipt(at.from, m.data);
    case fw::inbox_kind::other: break;
  }
}

void federation::on_forwarded(const std::string& from_broker, byte_view data, bool topic, const std::string& to_agent) {
  auto m = fw::decode_forwarded(data, cfg_.max_frame_bytes);
  if (!m || m->origin != from_broker) {
    stats_.increment("federation_malformed_total");
    if (limiter_.allow("federation_malformed"))
      spdlog::warn("federation: message from broker {} refused: {}", from_broker,
                   m ? std::string("its origin is ") + m->origin : m.error().to_string());
    return;
  }
  std::vector<publish_intake::federated_envelope> accepted;
  accepted.reserve(m->items.size());
  for (const fw::forwarded_item& item : m->items) {
    stats_.increment("federation_received_total", topic ? "topic" : "direct");
    // In hand: confirmed to its origin (what becomes of it is reported on its own).
    to_confirm_[from_broker].push_back(item.seq);
    auto h = decode_signed_part(item.signed_part);
    // The sender must live at the broker that forwards it, by the directory; the subject
    // and the header must agree: a topic envelope on a topic subject, a direct one on
    // its recipient's subject; picks only with a topic envelope.
    known_agent* from = h ? agents_.find(h->sender) : nullptr;
    const bool consistent = h && (topic ? h->to_kind == recipient_kind::topic
                                        : h->to_kind == recipient_kind::agent && h->to == to_agent && item.picks.empty());
    if (!consistent || from == nullptr || from->home != from_broker || !from->key) {
      stats_.increment("federation_malformed_total");
      if (limiter_.allow("federation_malformed"))
        spdlog::warn("federation: envelope from broker {} refused: {}", from_broker,
                     !h ? h.error().to_string()
                     : !consistent ? std::string("subject and header disagree")
                                   : "sender '" + h->sender + "' is not known here as homed at broker " + from_broker);
      if (h && consistent)
        nack_to(from_broker, h->sender, h->message_id,
                {status_code::unknown_agent, "broker " + cfg_.name + " does not know '" + h->sender + "' as homed at " + from_broker},
                h->to);
      continue;
    }
    // Each pick must be a queue member here of a subscription matching the topic; one
    // that is not (gone meanwhile) is refused to the sender, naming it.
    publish_intake::federated_envelope f{from, item.signed_part, item.auth_part, {}};
    for (const std::string& name : item.picks) {
      known_agent* to = agents_.find(name);
      bool member = false;
      if (to != nullptr && to->online())
        for (const auto& [sub, group] : to->conn->queue_groups)
          member = member || sub == h->to || topic_matches(sub, h->to);
      if (member) f.picked.push_back(to);
      else
        nack_to(from_broker, h->sender, h->message_id,
                {status_code::not_deliverable, "'" + name + "' is not in a queue group for " + h->to + " at broker " + cfg_.name},
                name);
    }
    accepted.push_back(std::move(f));
  }
  if (!accepted.empty()) intake_.on_federated(accepted);
}

void federation::on_relayed_nack(const std::string& from_broker, byte_view data) {
  stats_.increment("federation_received_total", "nack");
  auto n = fw::decode_relayed_nack(data);
  if (!n || n->origin != from_broker) {
    stats_.increment("federation_malformed_total");
    return;
  }
  known_agent* a = agents_.find(n->sender);
  if (a == nullptr || !a->online()) return;  // gone meanwhile: nobody to tell
  out_.nack(*a, n->message_id,
            status(static_cast<status_code>(n->code), n->detail + " (at broker " + n->origin + ")"), n->recipient);
}

nlohmann::json federation::view() const {
  nlohmann::json brokers = nlohmann::json::array();
  std::map<std::string, std::size_t, std::less<>> present;  // broker → agents reachable there
  agents_.for_each_known_const([&](const known_agent& a) {
    if (a.reachable()) ++present[a.remote() ? a.home : cfg_.name];
  });
  for (const auto& [name, fp] : cfg_.federation_brokers) {
    nlohmann::json b = {{"name", name}, {"fingerprint", fp}, {"self", name == cfg_.name}, {"agents", present[name]}};
    if (name == cfg_.name) {
      b["live"] = link_.connected();
      b["heartbeat_age_ms"] = 0;
    } else if (auto it = heartbeats_.find(name); it != heartbeats_.end()) {
      b["live"] = live(name);
      b["heartbeat_age_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - it->second).count();
    } else {
      b["live"] = false;
      b["heartbeat_age_ms"] = nullptr;
    }
    brokers.push_back(std::move(b));
  }
  nlohmann::json agents = nlohmann::json::array();
  agents_.for_each_known_const([&](const known_agent& a) {
    if (!a.remote() && !a.online()) return;
    const auto* subs = a.subscriptions();
    agents.push_back({{"name", a.name}, {"role", a.role}, {"home", a.remote() ? a.home : cfg_.name},
                      {"online", a.remote() ? a.remote_online : true}, {"reachable", a.reachable()},
                      {"fingerprint", a.key ? a.key->fingerprint_hex() : std::string()},
                      {"attested", !a.evidence.empty()}, {"subscriptions", subs ? subs->size() : 0}});
  });
  return {{"federated", true},     {"broker", cfg_.name},   {"connected", link_.connected()},
          {"prefix", cfg_.federation_prefix}, {"bucket", cfg_.federation_bucket}, {"brokers", std::move(brokers)},
          {"agents", std::move(agents)}};
}

}  // namespace agentbus::broker
