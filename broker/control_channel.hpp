// control_channel.hpp — the control messages enrolled agents send (schemas/protocol.md
// §5): subscribe, unsubscribe, peer lookups, membership watches, stats, ping, bye;
// and what the broker pushes unasked: member lists when a topic changes, revocations.
//
// A CTRL frame is checked in order: 3 frames, the tag under the connection's hop
// session, the typed body (session/control.hpp), its sequence number; a refusal is a
// nack without a message id.
//
// Owned by the broker's event-loop thread; not thread-safe.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "accounting.hpp"
#include "agentbus/policy.hpp"
#include "broker_config.hpp"
#include "connections.hpp"
#include "outbox.hpp"
#include "registry.hpp"
#include "session/control.hpp"
#include "topics.hpp"

namespace agentbus::broker {

class control_channel {
 public:
  control_channel(const broker_config& cfg, const policy& pol, connections& agents, topics& t, outbox& out,
                  accounting& acct, registry& reg)
      : cfg_(cfg), pol_(pol), agents_(agents), topics_(t), out_(out), acct_(acct), reg_(reg) {}

  // on_control: frames after the kind: [session id, body, tag].
  void on_control(const bytes& route, std::span<const bytes> frames);

  // leave: what a closing connection asked for ends (connections' close hook):
  // its subscriptions (watchers get the new member lists) and its watches.
  void leave(connection& c);
  // withdraw_disallowed ends the subscriptions and membership watches of `a` that the
  // policy no longer allows (after a reload); watchers get the new member lists.
  // Returns the topics whose subscription ended.
  std::vector<std::string> withdraw_disallowed(known_agent& a);
  // announce_revocation tells every online agent that `name` was revoked.
  void announce_revocation(const std::string& name);
  // announce_key_change tells every other online agent that `name` has a new key.
  void announce_key_change(const std::string& name);
  // on_subscriptions_changed: called with an online agent whose subscriptions changed
  // (the federation writes its directory record).
  void on_subscriptions_changed(std::function<void(const known_agent&)> f) { subscriptions_changed_ = std::move(f); }
  // add_remote / remove_remote put a subscription of an agent homed at another broker
  // in the topic table or take it out, pushing member lists to the topic's watchers.
  void add_remote(const std::string& topic, const std::string& group, const std::string& agent);
  void remove_remote(const std::string& topic, const std::string& group, const std::string& agent);

 private:
  void handle(known_agent& a, const session::control::request& r);
  void subscribe(known_agent& a, const std::string& topic, const std::string& group);
  // drop_subscription takes `topic` (as `a` subscribed it, plainly or in a group) out
  // of the topic table; true when a member list changed.
  bool drop_subscription(const std::string& topic, const std::string& group, const std::string& agent);
  void unsubscribe(known_agent& a, const std::string& topic);
  void watch_members(known_agent& a, const std::string& topic);
  void send_members(known_agent& a, const std::string& topic);
  // notify_members sends the new member list of `topic_or_pattern` (of every watched
  // topic a pattern matches) to their watchers.
  void notify_members(const std::string& topic_or_pattern);
  void peer_lookup(known_agent& a, const std::string& name);
  void refuse(known_agent& a, const status& why, const std::string& about);

  const broker_config& cfg_;
  const policy& pol_;
  connections& agents_;
  topics& topics_;
  outbox& out_;
  accounting& acct_;
  registry& reg_;
  std::function<void(const known_agent&)> subscriptions_changed_ = [](const known_agent&) {};
};

}  // namespace agentbus::broker
