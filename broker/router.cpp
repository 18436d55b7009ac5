#include "router.hpp"

#include "session/handshake.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "logging.hpp"
#include "session/checks.hpp"

namespace agentbus::broker {

void refuse_envelope(outbox& out, accounting& acct, known_agent& sender, const bytes& message_id, const status& why,
                     const std::string& recipient, std::optional<std::chrono::nanoseconds> check_time) {
  acct.refused_envelope(sender.name, why, check_time);
  if (acct.log_allowed(status_code_name(why.code()))) {
    const log_scope fields{{"agent", sender.name}, {"role", sender.role}, {"code", std::string(status_code_name(why.code()))},
                           {"reason", why.detail()}, {"message_id", to_hex(message_id)}, {"recipient", recipient}};
    spdlog::warn("refused envelope from {} to {}: {}", sender.name, recipient, why.to_string());
  }
  out.nack(sender, message_id, why, recipient);
}

void router::route(known_agent& from, const routed_envelope& e, fanout* batch, std::span<known_agent* const> picked) {
  const envelope_header& h = *e.header;
  const bool from_elsewhere = from.remote();  // it came from its broker over the federation
  if (h.to_kind == recipient_kind::agent) {
    known_agent* to = agents_.find(h.to);
    if (to == nullptr)
      return refuse_envelope(out_, acct_, from, h.message_id,
                             {status_code::not_deliverable, "no agent named '" + h.to + "'"}, h.to);
    if (to->remote() && !to->online()) {
      if (remote_ == nullptr || from_elsewhere)
        return refuse_envelope(out_, acct_, from, h.message_id,
                               {status_code::not_deliverable, "'" + h.to + "' lives at broker " + to->home}, h.to);
      return delivered(from, *to, h, remote_->forward_direct(*to, e));
    }
    return deliver(from, *to, e, batch);
  }
  // A send may find a subscriber gone and close its connection, which changes the
  // topic's subscriber set: iterate over a copy.
  recipients_.clear();
  homes_.clear();
  auto home_entry = [&](std::string_view home) -> std::vector<std::string>& {
    for (auto& [h_name, picks] : homes_)
      if (h_name == home) return picks;
    return homes_.emplace_back(home, std::vector<std::string>{}).second;
  };
  for (const auto& name : topics_.subscribers(h.to)) {
    if (name == from.name) continue;
    known_agent* to = agents_.find(name);
    if (to == nullptr) continue;
    if (!to->remote() || to->online()) recipients_.push_back(to);
    else if (remote_ != nullptr && !from_elsewhere) (void)home_entry(to->home);
  }
  // Queue groups: one member each, picked where the envelope entered the federation;
  // an agent that gets it as a plain subscriber already is not picked.
  picks_.clear();
  if (!from_elsewhere && topics_.queue_count() > 0) {
    const auto& plain = topics_.subscribers(h.to);  // queue_picks leaves it valid
    topics_.queue_picks(
        h.to,
        [&](const std::string& n) {
          const known_agent* k = n == from.name ? nullptr : agents_.find(n);
          return k != nullptr && k->reachable();
        },
        [&](const std::string& n) {
          return n != from.name && plain.count(n) > 0;
        },
        picks_);
  }
  for (const std::string& n : picks_) {
    known_agent* to = agents_.find(n);
    if (to == nullptr) continue;
    if (!to->remote() || to->online()) {
      recipients_.push_back(to);
    } else if (remote_ != nullptr) {
      auto& picks = home_entry(to->home);
      // A message names at most kMaxPicks members: more groups than that at one broker
      // cannot all be served by one envelope; the sender is told which were not.
      if (picks.size() >= kMaxPicksPerBroker)
        refuse_envelope(out_, acct_, from, h.message_id,
                        {status_code::too_large, "more than " + std::to_string(kMaxPicksPerBroker) +
                                                     " queue groups to serve at broker " + to->home},
                        n);
      else
        picks.push_back(n);
    }
  }
  for (known_agent* to : picked)
    if (std::find(recipients_.begin(), recipients_.end(), to) == recipients_.end()) recipients_.push_back(to);
  for (known_agent* to : recipients_) deliver(from, *to, e, batch);
  // One copy per broker with subscribers or picks; that broker delivers to each of
  // them and relays each refusal. A copy that cannot leave is refused here, naming the
  // broker.
  for (const auto& [home, picks] : homes_)
    if (status st = remote_->forward_topic(home, e, picks); !st)
      refuse_envelope(out_, acct_, from, h.message_id, st, "broker " + std::string(home));
  acct_.accepted();
}

void router::deliver(known_agent& from, known_agent& to, const routed_envelope& e, fanout* batch) {
  if (batch != nullptr) {
    batch->staged_.push_back({&from, &to, e});
    return;
  }
  delivered(from, to, *e.header, out_.forward(to, e));
}

void router::delivered(known_agent& from, const known_agent& to, const envelope_header& h, const status& st) {
  const bool to_agent = h.to_kind == recipient_kind::agent;
  if (!st) {
    if (h.content_type == session::kOfferContentType) acct_.offers().undelivered(h.message_id);  // nobody can answer it
    return refuse_envelope(out_, acct_, from, h.message_id, st, to_agent ? h.to : to.name);
  }
  if (!to_agent) return acct_.traffic(from, to.name);
  // Session set-up (direct control envelopes) is not traffic in the trust graph.
  if (h.type != envelope_type::control) acct_.traffic(from, h.to);
  acct_.accepted();
}

void router::flush(fanout& batch) {
  auto& staged = batch.staged_;
  // Grouped by recipient; each recipient's envelopes keep their order.
  std::stable_sort(staged.begin(), staged.end(),
                   [](const fanout::delivery& x, const fanout::delivery& y) { return std::less<>{}(x.to, y.to); });
  std::vector<routed_envelope> group;
  for (std::size_t i = 0; i < staged.size();) {
    const std::size_t end = session::wire_batch_group_end(
        i, staged.size(), [&](std::size_t k) { return staged[k].envelope.signed_part.size(); },
        [&](std::size_t k) { return staged[k].to == staged[i].to; });
    known_agent& to = *staged[i].to;
    group.clear();
    for (std::size_t k = i; k < end; ++k) group.push_back(staged[k].envelope);
    const status st = group.size() == 1 ? out_.forward(to, group[0]) : out_.forward_batch(to, group);
    for (std::size_t k = i; k < end; ++k) delivered(*staged[k].from, to, *staged[k].envelope.header, st);
    i = end;
  }
  staged.clear();
}

}  // namespace agentbus::broker
