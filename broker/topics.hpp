// topics.hpp — who subscribes to which topic and who follows a topic's membership
// (schemas/protocol.md §5.1, §7). No sockets: the control part sends what these
// functions say to send.
//
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace agentbus::broker {

class topics {
 public:
  using name_set = std::set<std::string, std::less<>>;

  // subscribe adds `agent` to `topic`'s subscribers; true if it was not one yet
  // (its watchers are then due a new member list).
  bool subscribe(const std::string& topic, const std::string& agent);
  // unsubscribe removes it; true if it was one. A topic left without subscribers
  // is forgotten, so topics that come and go leave nothing behind.
  bool unsubscribe(const std::string& topic, const std::string& agent);
  // watch makes `agent` follow `topic`'s membership; unwatch stops it.
  void watch(const std::string& topic, const std::string& agent);
  void unwatch(const std::string& topic, const std::string& agent);

  // subscribers of `topic` (empty set if none).
  const name_set& subscribers(std::string_view topic) const;
  // watchers of `topic`: whom to send its member list when it changes.
  const name_set& watchers(std::string_view topic) const;

  std::size_t topic_count() const noexcept { return subscribers_.size(); }
  std::size_t watched_topic_count() const noexcept { return watchers_.size(); }

 private:
  static bool remove(std::map<std::string, name_set, std::less<>>& sets, const std::string& topic,
                     const std::string& agent);
  std::map<std::string, name_set, std::less<>> subscribers_;  // topic → agents
  std::map<std::string, name_set, std::less<>> watchers_;     // topic → agents following its membership
};

}  // namespace agentbus::broker
