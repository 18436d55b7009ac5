#include "topics.hpp"

#include <algorithm>

#include "agentbus/policy.hpp"

namespace agentbus::broker {
namespace {
const topics::name_set kNone;
}

bool topics::subscribe(const std::string& topic, const std::string& agent) {
  return (is_concrete_topic(topic) ? subscribers_ : patterns_)[topic].insert(agent).second;
}

bool topics::unsubscribe(const std::string& topic, const std::string& agent) {
  return remove(is_concrete_topic(topic) ? subscribers_ : patterns_, topic, agent);
}

void topics::watch(const std::string& topic, const std::string& agent) { watchers_[topic].insert(agent); }

void topics::unwatch(const std::string& topic, const std::string& agent) { (void)remove(watchers_, topic, agent); }

const topics::name_set& topics::subscribers(std::string_view topic) const {
  auto it = subscribers_.find(topic);
  const name_set& exact = it == subscribers_.end() ? kNone : it->second;
  if (patterns_.empty()) return exact;
  bool any = false;
  for (const auto& [pattern, agents] : patterns_) {
    if (!topic_matches(pattern, topic)) continue;
    if (!any) scratch_ = exact;
    any = true;
    scratch_.insert(agents.begin(), agents.end());
  }
  return any ? scratch_ : exact;
}

bool topics::queue_subscribe(const std::string& topic, const std::string& group, const std::string& agent) {
  return queues_[topic][group].insert(agent).second;
}

bool topics::queue_unsubscribe(const std::string& topic, const std::string& group, const std::string& agent) {
  auto t = queues_.find(topic);
  if (t == queues_.end()) return false;
  auto g = t->second.find(group);
  if (g == t->second.end()) return false;
  const bool removed = g->second.erase(agent) > 0;
  if (g->second.empty()) t->second.erase(g);
  if (t->second.empty()) queues_.erase(t);
  // A group no subscription uses any more keeps no turn counter.
  const bool used = std::any_of(queues_.begin(), queues_.end(), [&](const auto& q) { return q.second.count(group) > 0; });
  if (!used) turns_.erase(group);
  return removed;
}

void topics::queue_picks(std::string_view topic, const std::function<bool(const std::string&)>& eligible,
                         const std::function<bool(const std::string&)>& receives, std::vector<std::string>& out) const {
  if (queues_.empty()) return;
  std::map<std::string_view, std::vector<std::string_view>> members;  // group → every member, pooled
  for (const auto& [sub, groups] : queues_) {
    if (sub != topic && !topic_matches(sub, topic)) continue;
    for (const auto& [group, who] : groups) members[group].insert(members[group].end(), who.begin(), who.end());
  }
  const std::size_t first = out.size();
  auto taken = [&](std::string_view n) {
    return std::find(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), n) != out.end();
  };
  for (auto& [group, pool] : members) {
    std::sort(pool.begin(), pool.end());
    pool.erase(std::unique(pool.begin(), pool.end()), pool.end());
    if (std::any_of(pool.begin(), pool.end(), [&](std::string_view n) { return taken(n) || receives(std::string(n)); }))
      continue;
    std::vector<std::string_view> candidates;
    for (std::string_view n : pool)
      if (eligible(std::string(n))) candidates.push_back(n);
    if (candidates.empty()) continue;
    std::uint64_t& turn = turns_[std::string(group)];
    out.emplace_back(candidates[turn++ % candidates.size()]);
  }
}

std::size_t topics::pattern_count() const noexcept {
  std::size_t n = patterns_.size();
  for (const auto& [sub, groups] : queues_)
    if (!is_concrete_topic(sub) && !patterns_.count(sub)) ++n;
  return n;
}

topics::name_set topics::members(std::string_view topic) const {
  name_set out = subscribers(topic);
  for (const auto& [sub, groups] : queues_)
    if (sub == topic || topic_matches(sub, topic))
      for (const auto& [group, who] : groups) out.insert(who.begin(), who.end());
  return out;
}

std::vector<std::string> topics::watched_matching(std::string_view pattern) const {
  std::vector<std::string> out;
  if (is_concrete_topic(pattern)) {
    if (watchers_.count(pattern)) out.emplace_back(pattern);
    return out;
  }
  for (const auto& [topic, who] : watchers_)
    if (topic_matches(pattern, topic)) out.push_back(topic);
  return out;
}

const topics::name_set& topics::watchers(std::string_view topic) const {
  auto it = watchers_.find(topic);
  return it == watchers_.end() ? kNone : it->second;
}

bool topics::remove(std::map<std::string, name_set, std::less<>>& sets, const std::string& topic,
                    const std::string& agent) {
  auto it = sets.find(topic);
  if (it == sets.end()) return false;
  const bool removed = it->second.erase(agent) > 0;
  if (it->second.empty()) sets.erase(it);
  return removed;
}

}  // namespace agentbus::broker
