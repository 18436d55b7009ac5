// subscriptions.hpp — the agent's topics (internal): its subscriptions and their
// handlers, and the member lists of the topics it publishes to (schemas/protocol.md
// §5.1, §10).
//
// After a re-enrolment (a restarted broker knows nothing of them) every subscription
// and membership watch is sent again. A re-subscription the broker refuses (its
// policy changed meanwhile) is reported through on_rejected (where "broker") and its
// handler removed; one that could not be queued is sent again at the next io-loop
// turn. None is lost without a word.
//
// Thread-safe; its mutex is a leaf.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"
#include "client/reporter.hpp"
#include "session/control.hpp"

namespace agentbus::client {

class subscriptions {
 public:
  using send_fn = std::function<status(const session::control::request&)>;
  subscriptions(const agent_options& opts, send_fn send, reporter& rep)
      : opts_(opts), send_(std::move(send)), reporter_(rep) {}

  // subscribe registers `handler` for `topic` and waits for the broker's answer
  // (the handler is removed again if the broker refuses).
  // `group` non-empty: a queue group (one of its members gets each envelope).
  status subscribe(const std::string& topic, message_handler handler, const std::string& group = {});
  // members returns the topic's online subscribers, asking the broker (and following
  // the topic from then on) the first time; waits up to session_timeout.
  result<std::vector<std::string>> members(const std::string& topic);
  // unsubscribe drops the handler of `topic` (as subscribed) and tells the broker;
  // invalid_field when there is no such subscription.
  status unsubscribe(const std::string& topic);
  // handler: what an envelope published to the concrete `topic` is given to: the
  // handlers of the exact topic and of every pattern matching it, each called once
  // (empty when none).
  message_handler handler(std::string_view topic) const;
  // subscribed: some subscription (exact or pattern) matches `topic`.
  bool subscribed(std::string_view topic) const;
  // left_within: a subscription matching `topic` was ended (unsubscribe) less than `d`
  // ago: envelopes the broker forwarded before it heard of it are dropped, not refused.
  bool left_within(std::string_view topic, std::chrono::steady_clock::duration d) const;
  // joined_within: the broker accepted a subscription matching `topic` less than `d`
  // ago (a first subscription, or one restored after a re-enrolment).
  bool joined_within(std::string_view topic, std::chrono::steady_clock::duration d) const;

  // io thread: the broker's answers.
  void on_subscribed(const session::control::subscribed& a);
  void on_members(const session::control::members& m);
  // restore (after a re-enrolment) sends every subscription and watch again.
  void restore();
  // retry sends again what restore could not queue.
  void retry();
  void stop();

 private:
  void send_again(std::set<std::string, std::less<>>& subs, std::set<std::string, std::less<>>& watches);
  const agent_options& opts_;
  send_fn send_;
  reporter& reporter_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, message_handler, std::less<>> handlers_;
  std::map<std::string, std::string, std::less<>> groups_;  // topic → queue group, for those in one
  std::set<std::string, std::less<>> waiting_;          // topics a subscribe() call waits for
  std::map<std::string, status, std::less<>> answers_;  // their answers
  std::map<std::string, std::vector<std::string>, std::less<>> members_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> joined_at_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> left_at_;  // unsubscribed, kept 10 s
  std::set<std::string, std::less<>> restoring_;        // re-subscriptions awaiting an answer
  std::set<std::string, std::less<>> unsent_subs_, unsent_watches_;
};

}  // namespace agentbus::client
