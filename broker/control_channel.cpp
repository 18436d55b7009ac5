#include "control_channel.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "logging.hpp"
#include "session/checks.hpp"
#include "util/overloaded.hpp"

namespace agentbus::broker {
namespace control = session::control;

using util::overloaded;

void control_channel::on_control(const bytes& route, std::span<const bytes> frames) {
  connection* c = agents_.by_route(route);
  if (c == nullptr) return out_.error(route, {status_code::unknown_agent, "not enrolled"});
  known_agent& a = *c->agent;
  if (frames.size() != 3) return refuse(a, {status_code::malformed, "a control message is 3 frames"}, "");
  if (status st = session::verify_ctrl_tag(c->hop, frames[0], frames[1], frames[2]); !st) return refuse(a, st, "");
  auto m = control::decode_request(frames[1]);
  if (!m) return refuse(a, m.error(), "");
  if (!c->ctrl_in.accept(frames[0], m->seq)) return refuse(a, {status_code::replayed, "control sequence replayed"}, "");
  acct_.stats().increment("control_total", control::op_name(m->message));
  handle(a, m->message);
}

void control_channel::handle(known_agent& a, const control::request& r) {
  std::visit(overloaded{[&](const control::subscribe& m) { subscribe(a, m.topic, m.group); },
                        [&](const control::unsubscribe& m) { unsubscribe(a, m.topic); },
                        [&](const control::peer_lookup& m) { peer_lookup(a, m.name); },
                        [&](const control::watch_members& m) { watch_members(a, m.topic); },
                        [&](const control::stats_request&) { out_.control(a, control::stats_answer{acct_.stats().to_json()}); },
                        [&](const control::ping&) {},
                        [&](const control::bye&) {
                          agents_.close(a);
                          spdlog::info("{} disconnected", a.name);
                        }},
             r);
}

void control_channel::refuse(known_agent& a, const status& why, const std::string& about) {
  acct_.refusal(a.name, why);
  acct_.stats().increment("control_refused_total", status_code_name(why.code()));
  if (acct_.log_allowed("control")) {
    const log_scope fields{{"agent", a.name}, {"role", a.role}, {"code", std::string(status_code_name(why.code()))}, {"reason", why.detail()}};
    spdlog::warn("control message from {} refused: {}", a.name, why.to_string());
  }
  out_.nack(a, {}, why, about);
}

bool control_channel::drop_subscription(const std::string& topic, const std::string& group, const std::string& agent) {
  return group.empty() ? topics_.unsubscribe(topic, agent) : topics_.queue_unsubscribe(topic, group, agent);
}

void control_channel::subscribe(known_agent& a, const std::string& topic, const std::string& group) {
  connection& c = *a.conn;
  status st = topic.size() <= 128 ? pol_.check_subscribe(a.role, topic)
                                  : status(status_code::too_large, "topic longer than 128 bytes");
  if (st && !group.empty() && !is_queue_group_name(group))
    st = status(status_code::invalid_field, "not a queue group name (A-Z a-z 0-9 . _ -, 1..64)");
  if (st && c.subscriptions.size() >= cfg_.max_subscriptions_per_agent && !c.subscriptions.count(topic))
    st = status(status_code::too_large, "subscription limit reached");
  // Patterns cost every publish a match each (topics.hpp): few per agent, and a bound
  // on the distinct ones the broker follows.
  if (st && !is_concrete_topic(topic) && !c.subscriptions.count(topic)) {
    const auto patterns = std::count_if(c.subscriptions.begin(), c.subscriptions.end(),
                                        [](const std::string& t) { return !is_concrete_topic(t); });
    if (static_cast<std::size_t>(patterns) >= kMaxPatternsPerAgent)
      st = status(status_code::too_large, "pattern subscription limit reached (" + std::to_string(kMaxPatternsPerAgent) + ")");
    else if (topics_.pattern_count() >= kMaxDistinctPatterns && !topics_.has_pattern(topic))
      st = status(status_code::overloaded,
                  "the broker follows " + std::to_string(kMaxDistinctPatterns) + " distinct patterns already");
  }
  if (st) {
    // One subscription per topic string: a new group (or none) replaces the old one.
    const auto held = c.queue_groups.find(topic);
    const std::string before = held == c.queue_groups.end() ? std::string() : held->second;
    bool changed = false;
    if (c.subscriptions.count(topic) && before != group) changed = drop_subscription(topic, before, a.name);
    c.subscriptions.insert(topic);
    if (group.empty()) c.queue_groups.erase(topic);
    else c.queue_groups[topic] = group;
    changed = (group.empty() ? topics_.subscribe(topic, a.name) : topics_.queue_subscribe(topic, group, a.name)) || changed;
    if (changed) {
      notify_members(topic);
      subscriptions_changed_(a);
    }
  } else if (acct_.log_allowed("subscribe")) {
    const log_scope fields{{"agent", a.name}, {"role", a.role}, {"topic", topic.substr(0, 128)},
                           {"code", std::string(status_code_name(st.code()))}, {"reason", st.detail()}};
    spdlog::warn("subscription of {} to {} refused: {}", a.name, topic, st.to_string());
  }
  acct_.stats().increment("subscriptions_total", st ? "accepted" : status_code_name(st.code()));
  out_.control(a, control::subscribed{topic, st});
}

void control_channel::unsubscribe(known_agent& a, const std::string& topic) {
  connection& c = *a.conn;
  if (!c.subscriptions.erase(topic)) return;
  std::string group;
  if (auto g = c.queue_groups.find(topic); g != c.queue_groups.end()) {
    group = g->second;
    c.queue_groups.erase(g);
  }
  if (drop_subscription(topic, group, a.name)) notify_members(topic);
  subscriptions_changed_(a);
}

void control_channel::add_remote(const std::string& topic, const std::string& group, const std::string& agent) {
  if (group.empty() ? topics_.subscribe(topic, agent) : topics_.queue_subscribe(topic, group, agent)) notify_members(topic);
}

void control_channel::remove_remote(const std::string& topic, const std::string& group, const std::string& agent) {
  if (drop_subscription(topic, group, agent)) notify_members(topic);
}

// watch_members answers (and follows) a topic's membership, only for topics the agent
// may publish to: who subscribes is not everyone's business, and every watch costs
// memory, so they are capped like subscriptions.
void control_channel::watch_members(known_agent& a, const std::string& topic) {
  if (status st = pol_.check_publish(a.role, topic); !st) return refuse(a, st, topic);
  connection& c = *a.conn;
  if (!c.watching.count(topic)) {
    if (c.watching.size() >= cfg_.max_subscriptions_per_agent)
      return refuse(a, {status_code::too_large, "membership watch limit reached"}, topic);
    c.watching.insert(topic);
    topics_.watch(topic, a.name);
  }
  send_members(a, topic);
}

void control_channel::send_members(known_agent& a, const std::string& topic) {
  control::members list{topic, {}};
  for (const auto& n : topics_.members(topic))
    if (const known_agent* s = agents_.find(n); s && s->reachable()) list.subscribers.push_back(n);
  out_.control(a, list);
}

void control_channel::notify_members(const std::string& topic_or_pattern) {
  // A pattern's subscribers are members of every watched topic it matches.
  for (const std::string& topic : topics_.watched_matching(topic_or_pattern)) {
    // Copied: a send that finds a watcher gone closes it, which changes the set.
    const topics::name_set watchers = topics_.watchers(topic);
    for (const auto& w : watchers)
      if (known_agent* a = agents_.find(w); a && a->online()) send_members(*a, topic);
  }
}

void control_channel::peer_lookup(known_agent& a, const std::string& name) {
  control::peer_answer p;
  p.name = name;
  const known_agent* peer = agents_.find(name);
  if (peer == nullptr || !peer->key) {
    p.state = control::peer_state::unknown;
  } else if (auto rec = reg_.find_agent(name); rec && rec->revoked) {
    p.state = control::peer_state::revoked;
  } else if (reg_.find_revoked_key(peer->key->fingerprint_hex()) ||
             (rec && !peer->remote() && rec->fingerprint != peer->key->fingerprint_hex())) {
    // The live entry still holds a key the name left behind (an approval, a WELCOME
    // that never left): not handed out; the agent re-enrols with its new key.
    p.state = control::peer_state::unknown;
  } else {
    p.state = control::peer_state::known;
    p.role = peer->role;
    p.suite = peer->agent_suite.name;
    p.key_protection = peer->key_protection;
    p.tpm_manufacturer = peer->tpm_manufacturer;
    p.tpm_simulator = peer->tpm_simulator;
    p.identity_der = peer->key->der();
    p.evidence = peer->evidence;
  }
  out_.control(a, p);
}

std::vector<std::string> control_channel::withdraw_disallowed(known_agent& a) {
  std::vector<std::string> ended;
  if (!a.conn) return ended;
  // First change the state, sending nothing: a send can find a connection gone and
  // close it (this agent's too), which must not happen while its sets are iterated.
  connection& c = *a.conn;
  std::vector<std::string> emptied;  // topics whose member lists changed
  for (auto it = c.subscriptions.begin(); it != c.subscriptions.end();) {
    if (pol_.check_subscribe(a.role, *it)) {
      ++it;
      continue;
    }
    ended.push_back(*it);
    std::string group;
    if (auto g = c.queue_groups.find(*it); g != c.queue_groups.end()) {
      group = g->second;
      c.queue_groups.erase(g);
    }
    if (drop_subscription(*it, group, a.name)) emptied.push_back(*it);
    it = c.subscriptions.erase(it);
  }
  for (auto it = c.watching.begin(); it != c.watching.end();) {
    if (pol_.check_publish(a.role, *it)) {
      ++it;
      continue;
    }
    topics_.unwatch(*it, a.name);
    it = c.watching.erase(it);
  }
  // Then tell: the agent, as it would be of a refused subscription (its library
  // reports the withdrawal through on_rejected and drops the topic's handler), and the
  // topics' watchers of their new member lists.
  for (const std::string& topic : ended) {
    if (!a.online()) break;
    out_.control(a, control::subscribed{topic, {status_code::acl_denied, "the broker's policy no longer lets " + a.role +
                                                                             " follow this topic (policy reloaded)"}});
  }
  for (const std::string& topic : emptied) notify_members(topic);
  if (!ended.empty() && a.online()) subscriptions_changed_(a);
  return ended;
}

void control_channel::leave(connection& c) {
  const std::string& name = c.agent->name;
  for (const auto& t : c.subscriptions) {
    const auto g = c.queue_groups.find(t);
    if (drop_subscription(t, g == c.queue_groups.end() ? std::string() : g->second, name)) notify_members(t);
  }
  for (const auto& t : c.watching) topics_.unwatch(t, name);
  c.subscriptions.clear();
  c.queue_groups.clear();
  c.watching.clear();
}

void control_channel::announce_revocation(const std::string& name) {
  agents_.for_each_online([&](known_agent& other) { out_.control(other, control::revoked{name}); });
}

void control_channel::announce_key_change(const std::string& name) {
  agents_.for_each_online([&](known_agent& other) {
    if (other.name != name) out_.control(other, control::key_changed{name});
  });
}

}  // namespace agentbus::broker
