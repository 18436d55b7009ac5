#include "topics.hpp"

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
