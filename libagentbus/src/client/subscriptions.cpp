#include "client/subscriptions.hpp"

#include "agentbus/policy.hpp"

#include <algorithm>

namespace agentbus::client {
namespace control = session::control;

namespace {
// matches: a subscription (a topic or a pattern) that an envelope on `topic` is for.
bool matches(std::string_view subscription, std::string_view topic) {
  return subscription == topic || topic_matches(subscription, topic);
}

// recent_match: some entry of `since` (subscription → when) matches `topic` and is
// younger than `d`.
bool recent_match(const std::map<std::string, std::chrono::steady_clock::time_point, std::less<>>& since,
                  std::string_view topic, std::chrono::steady_clock::duration d) {
  const auto now = std::chrono::steady_clock::now();
  return std::any_of(since.begin(), since.end(),
                     [&](const auto& e) { return matches(e.first, topic) && now - e.second < d; });
}
}  // namespace

status subscriptions::subscribe(const std::string& topic, message_handler handler, const std::string& group) {
  // A subscription to a topic held already replaces it at the broker only if the
  // broker accepts: until then, and if it does not, the one held stays as it was.
  std::optional<std::pair<message_handler, std::string>> before;
  {
    std::lock_guard lock(mu_);
    if (auto h = handlers_.find(topic); h != handlers_.end()) {
      auto g = groups_.find(topic);
      before.emplace(h->second, g == groups_.end() ? std::string() : g->second);
    } else {
      // A new topic: its handler is in place before the broker can forward anything.
      handlers_[topic] = handler;
      if (!group.empty()) groups_[topic] = group;
    }
    answers_.erase(topic);
    waiting_.insert(topic);
  }
  // restore puts back what was held (or nothing) when the new one is not taken.
  auto restore = [&] {
    handlers_.erase(topic);
    groups_.erase(topic);
    if (!before) return;
    handlers_[topic] = before->first;
    if (!before->second.empty()) groups_[topic] = before->second;
  };
  std::unique_lock lock(mu_, std::defer_lock);
  if (status st = send_(control::subscribe{topic, group}); !st) {
    lock.lock();
    waiting_.erase(topic);
    restore();
    return st;
  }
  lock.lock();
  const bool answered =
      cv_.wait_for(lock, opts_.session_timeout, [&] { return stopping_ || answers_.count(topic) > 0; }) && !stopping_;
  waiting_.erase(topic);
  if (!answered) {
    // Unanswered: the broker may hold either; the new handler follows the topic (an
    // envelope for it is not dropped unreported), with the group last asked for.
    handlers_[topic] = std::move(handler);
    if (group.empty()) groups_.erase(topic);
    else groups_[topic] = group;
    return {status_code::timeout, stopping_ ? "agent stopping" : "broker did not answer the subscription to " + topic};
  }
  status answer = answers_[topic];
  answers_.erase(topic);
  if (!answer) {
    restore();
    return answer;
  }
  handlers_[topic] = std::move(handler);
  if (group.empty()) groups_.erase(topic);
  else groups_[topic] = group;
  return answer;
}

result<std::vector<std::string>> subscriptions::members(const std::string& topic) {
  {
    std::lock_guard lock(mu_);
    if (auto it = members_.find(topic); it != members_.end()) return it->second;
  }
  if (status st = send_(control::watch_members{topic}); !st) return st;
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, opts_.session_timeout, [&] { return stopping_ || members_.count(topic) > 0; }) || stopping_)
    return status{status_code::timeout, "broker did not list the members of " + topic};
  return members_[topic];
}

status subscriptions::unsubscribe(const std::string& topic) {
  {
    std::lock_guard lock(mu_);
    if (handlers_.erase(topic) == 0) return {status_code::invalid_field, "not subscribed to " + topic.substr(0, 128)};
    groups_.erase(topic);
    joined_at_.erase(topic);
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(left_at_, [&](const auto& e) { return now - e.second > std::chrono::seconds(10); });
    left_at_[topic] = now;
    restoring_.erase(topic);
    unsent_subs_.erase(topic);
  }
  // The broker answers nothing: an envelope it forwarded before it heard of this is
  // dropped by the receiver for a while (left_within), not refused.
  return send_(control::unsubscribe{topic});
}

message_handler subscriptions::handler(std::string_view topic) const {
  std::lock_guard lock(mu_);
  std::vector<message_handler> matching;
  for (const auto& [subscribed_to, h] : handlers_)
    if (matches(subscribed_to, topic)) matching.push_back(h);
  if (matching.empty()) return {};
  if (matching.size() == 1) return matching.front();
  return [all = std::move(matching)](const message& m) {
    for (const auto& h : all) h(m);
  };
}

bool subscriptions::subscribed(std::string_view topic) const {
  std::lock_guard lock(mu_);
  return std::any_of(handlers_.begin(), handlers_.end(), [&](const auto& e) { return matches(e.first, topic); });
}

bool subscriptions::left_within(std::string_view topic, std::chrono::steady_clock::duration d) const {
  std::lock_guard lock(mu_);
  return recent_match(left_at_, topic, d);
}

bool subscriptions::joined_within(std::string_view topic, std::chrono::steady_clock::duration d) const {
  std::lock_guard lock(mu_);
  return recent_match(joined_at_, topic, d);
}

void subscriptions::on_subscribed(const control::subscribed& a) {
  std::optional<std::string> lost;  // what to report: a subscription this agent had is gone
  {
    std::lock_guard lock(mu_);
    const bool restored = restoring_.count(a.topic) > 0;
    if (!restored && !waiting_.count(a.topic)) {
      // Unsolicited. A refusal of a topic this agent follows: the broker withdrew the
      // subscription (a policy reload no longer allows it), and the handler will not
      // be called again. Anything else changes nothing (it would open the late-join
      // window, or pile up in answers_).
      if (a.outcome || handlers_.erase(a.topic) == 0) return;
      groups_.erase(a.topic);
      joined_at_.erase(a.topic);
      lost = "subscription to " + a.topic + " withdrawn by the broker: " + a.outcome.detail();
    } else {
      if (a.outcome) joined_at_[a.topic] = std::chrono::steady_clock::now();
      else joined_at_.erase(a.topic);
      if (restoring_.erase(a.topic) > 0) {
        // A re-subscription after a re-enrolment: nobody waits for it, so a refusal is
        // reported, and the handler that will never be called again is removed.
        if (!a.outcome) {
          handlers_.erase(a.topic);
          groups_.erase(a.topic);
          lost = "re-subscription to " + a.topic + " after re-enrolment refused: " + a.outcome.detail();
        }
      } else {
        answers_[a.topic] = a.outcome;
      }
      cv_.notify_all();
    }
  }
  if (lost) reporter_.report({"broker", status(a.outcome.code(), *lost), opts_.name, a.topic, {}});
}

void subscriptions::on_members(const control::members& m) {
  std::lock_guard lock(mu_);
  members_[m.topic] = m.subscribers;
  cv_.notify_all();
}

void subscriptions::restore() {
  std::set<std::string, std::less<>> subs, watches;
  {
    std::lock_guard lock(mu_);
    for (const auto& [t, h] : handlers_) subs.insert(t);
    for (const auto& [t, m] : members_) watches.insert(t);
  }
  send_again(subs, watches);
}

void subscriptions::retry() {
  std::set<std::string, std::less<>> subs, watches;
  {
    std::lock_guard lock(mu_);
    if (unsent_subs_.empty() && unsent_watches_.empty()) return;
    subs.swap(unsent_subs_);
    watches.swap(unsent_watches_);
  }
  send_again(subs, watches);
}

void subscriptions::send_again(std::set<std::string, std::less<>>& subs,
                                      std::set<std::string, std::less<>>& watches) {
  // Marked as restoring before they leave: the broker's answer may come at once.
  {
    std::lock_guard lock(mu_);
    restoring_.insert(subs.begin(), subs.end());
  }
  std::set<std::string, std::less<>> failed_subs, failed_watches;
  for (const auto& t : subs) {
    std::string group;
    {
      std::lock_guard lock(mu_);
      if (auto g = groups_.find(t); g != groups_.end()) group = g->second;
    }
    if (!send_(control::subscribe{t, group})) failed_subs.insert(t);
  }
  for (const auto& t : watches)
    if (!send_(control::watch_members{t})) failed_watches.insert(t);
  std::lock_guard lock(mu_);
  for (const auto& t : failed_subs) restoring_.erase(t);
  unsent_subs_.insert(failed_subs.begin(), failed_subs.end());
  unsent_watches_.insert(failed_watches.begin(), failed_watches.end());
}

void subscriptions::stop() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  cv_.notify_all();
}

}  // namespace agentbus::client
