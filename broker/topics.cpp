#include "topics.hpp"

namespace agentbus::broker {
namespace {
const topics::name_set kNone;
}

bool topics::subscribe(const std::string& topic, const std::string& agent) {
  return subscribers_[topic].insert(agent).second;
}

bool topics::unsubscribe(const std::string& topic, const std::string& agent) { return remove(subscribers_, topic, agent); }

void topics::watch(const std::string& topic, const std::string& agent) { watchers_[topic].insert(agent); }

void topics::unwatch(const std::string& topic, const std::string& agent) { (void)remove(watchers_, topic, agent); }

const topics::name_set& topics::subscribers(std::string_view topic) const {
  auto it = subscribers_.find(topic);
  return it == subscribers_.end() ? kNone : it->second;
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
