// topics.hpp — who subscribes to which topic or pattern and who follows a topic's
// membership (schemas/protocol.md §5.1, §7). No sockets: the control part sends what
// these functions say to send.
//
// Subscriptions to concrete topics are a map lookup per envelope; patterns ("*" one
// segment, a final ">" the rest) are kept apart and matched against each published
// topic: what routing costs grows with the number of distinct patterns subscribed
// across all agents, not with exact subscriptions. The control channel bounds them:
// kMaxPatternsPerAgent per agent and kMaxDistinctPatterns in all, so that a publish
// costs at most that many matches of a topic against a pattern (about 30 µs).
//
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace agentbus::broker {

inline constexpr std::size_t kMaxPatternsPerAgent = 16;
inline constexpr std::size_t kMaxDistinctPatterns = 1024;

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

  // subscribers of the concrete `topic`: of the topic itself and of every pattern
  // matching it (empty set if none). The reference is valid until the next call of a
  // topics member (it may be a scratch set).
  const name_set& subscribers(std::string_view topic) const;
  // queue_subscribe / queue_unsubscribe: `agent` as a member of queue group `group`
  // on `topic` (a topic or pattern); true when that changed something.
  bool queue_subscribe(const std::string& topic, const std::string& group, const std::string& agent);
  bool queue_unsubscribe(const std::string& topic, const std::string& group, const std::string& agent);
  // queue_picks appends, for the concrete `topic`, one member of each queue group with
  // a subscription matching it (the members of a group pooled over all its matching
  // subscriptions), chosen in turn among those `eligible` says may get it; none for a
  // group without an eligible member. A group is served already, and gets no pick,
  // when one of its members gets the envelope anyway (`receives`: a plain subscriber)
  // or was picked for a group before it: that member's library runs every handler
  // that matches, its queue handler too. Each name is appended once. No cost while no
  // queue group exists. It leaves what subscribers() returned valid (it reads neither
  // that scratch set nor changes any table but its turns).
  void queue_picks(std::string_view topic, const std::function<bool(const std::string&)>& eligible,
                   const std::function<bool(const std::string&)>& receives, std::vector<std::string>& out) const;
  // members: who a member list of `topic` names: subscribers() and every queue member
  // of a subscription matching it (a publisher sets sessions up with each).
  name_set members(std::string_view topic) const;
  std::size_t queue_count() const noexcept { return queues_.size(); }
  // watched_matching: the watched topics a pattern (or topic) subscription concerns:
  // those whose member lists change with it.
  std::vector<std::string> watched_matching(std::string_view pattern) const;
  // watchers of `topic`: whom to send its member list when it changes.
  const name_set& watchers(std::string_view topic) const;

  std::size_t topic_count() const noexcept { return subscribers_.size(); }
  // pattern_count: distinct patterns followed, plain or by a queue group (each costs
  // every publish a match).
  std::size_t pattern_count() const noexcept;
  bool has_pattern(std::string_view pattern) const { return patterns_.count(pattern) > 0; }
  std::size_t watched_topic_count() const noexcept { return watchers_.size(); }

 private:
  static bool remove(std::map<std::string, name_set, std::less<>>& sets, const std::string& topic,
                     const std::string& agent);
  std::map<std::string, name_set, std::less<>> subscribers_;  // concrete topic → agents
  std::map<std::string, name_set, std::less<>> patterns_;     // pattern → agents
  mutable name_set scratch_;                                  // subscribers() of a topic patterns reach
  std::map<std::string, name_set, std::less<>> watchers_;     // topic → agents following its membership
  // Queue subscriptions: topic or pattern → group → members; the next turn per group.
  std::map<std::string, std::map<std::string, name_set, std::less<>>, std::less<>> queues_;
  mutable std::map<std::string, std::uint64_t, std::less<>> turns_;
};

}  // namespace agentbus::broker
