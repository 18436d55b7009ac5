// broker_parts_test.cpp — the broker's parts without sockets: topics, the router
// (fan-out state passed explicitly), the control channel, and the enrolment state
// machine driven by the agent's own handshake code (client::hop_handshake), so both
// ends of the one key agreement meet here. A recording transport stands in for the
// ROUTER socket; the registry is a real SQLite file in a temporary directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include "accounting.hpp"
#include "agentbus/testing/claiming_identity.hpp"
#include "admin_protocol.hpp"
#include "client/hop_handshake.hpp"
#include "connection_guard.hpp"
#include "connections.hpp"
#include "control_channel.hpp"
#include "enrolment.hpp"
#include "enrolment_authority.hpp"
#include "outbox.hpp"
#include "policy_reload.hpp"
#include "router.hpp"
#include "session_offers.hpp"
#include "session/checks.hpp"
#include "session/control.hpp"
#include "session/handshake.hpp"
#include "session/key_agreement.hpp"
#include "support/swtpm_environment.hpp"
#include "topics.hpp"

namespace agentbus::broker {
namespace {

using testing::scoped_temp_dir;

bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }
std::string str(const bytes& v) { return std::string(v.begin(), v.end()); }

// recording_transport keeps every message "sent"; a route or a kind can be made to
// fail as a full queue or a vanished peer would.
class recording_transport final : public transport {
 public:
  struct message {
    bytes route;
    std::vector<bytes> parts;
    std::string kind() const { return str(parts.at(0)); }
  };
  net::send_outcome send(const bytes& route, std::span<const byte_view> parts) override {
    if (auto it = fail_route.find(route); it != fail_route.end()) return it->second;
    if (auto it = fail_kind.find(std::string(parts[0].begin(), parts[0].end())); it != fail_kind.end()) return it->second;
    message m{route, {}};
    for (byte_view p : parts) m.parts.emplace_back(p.begin(), p.end());
    sent.push_back(std::move(m));
    return net::send_outcome::sent;
  }
  std::vector<message> to(const bytes& route, std::string_view kind = {}) const {
    std::vector<message> out;
    for (const auto& m : sent)
      if (m.route == route && (kind.empty() || m.kind() == kind)) out.push_back(m);
    return out;
  }
  std::map<bytes, net::send_outcome> fail_route;
  std::map<std::string, net::send_outcome> fail_kind;
  std::vector<message> sent;
};

// A hop key both ends share here (the tests play the agent with the same key).
session::mac_key test_key(std::uint8_t seed) {
  return session::mac_key{bytes(session::kSessionIdSize, seed), secret_bytes(bytes(32, seed)), hash_algorithm::sha256};
}

struct parts {
  scoped_temp_dir dir;
  broker_config cfg;
  policy pol = policy::builtin_default();
  registry reg{dir.path() / "registry.db"};
  metrics stats;
  connections agents;
  topics subscriptions;
  recording_transport tx;
  accounting acct{stats, reg};
  outbox out{tx, agents, stats};
  router routes{agents, subscriptions, out, acct};
  control_channel control{cfg, pol, agents, subscriptions, out, acct, reg};

  parts() {
    agents.on_close([this](connection& c) { control.leave(c); });
  }

  // online: an enrolled agent on `route` with a hop keyed by test_key(seed).
  known_agent& online(const std::string& name, const std::string& role, std::uint8_t seed) {
    known_agent& a = agents.remember(name);
    a.role = role;
    a.agent_suite = *pol.suite_for(role);
    connection& c = agents.open(a, b("route-" + name));
    c.hop.install(test_key(seed), test_key(seed), std::chrono::seconds(30));
    return a;
  }

  // nacks sent to `a`, decoded under its hop key.
  std::vector<session::control::nack> nacks_to(const known_agent& a) const {
    std::vector<session::control::nack> out;
    for (const auto& m : tx.to(b("route-" + a.name), session::frame::kControl)) {
      auto d = session::control::decode_answer(m.parts.at(2));
      if (d)
        if (auto* n = std::get_if<session::control::nack>(&d->message)) out.push_back(*n);
    }
    return out;
  }
};

// An accepted envelope as the router gets it: a decoded header and auth part, views
// of its signed part and digest.
struct fake_envelope {
  envelope_header header;
  envelope_auth auth;
  bytes signed_part, digest;
  fake_envelope(std::string sender, recipient_kind kind, std::string to, std::string payload = "x") {
    header.message_id = bytes(kMessageIdSize, static_cast<std::uint8_t>(payload.size()));
    header.sender = std::move(sender);
    header.to_kind = kind;
    header.to = std::move(to);
    header.suite = "ecdsa-p256-sha256";
    header.payload = b(payload);
    signed_part = encode_signed_part(header);
    digest = envelope_digest(hash_algorithm::sha256, signed_part);
    auth.level = assurance::tpm;
    auth.key_id = bytes(kKeyIdSize, 1);
    auth.signature = bytes(64, 2);
  }
  routed_envelope view() const { return {&header, &auth, signed_part, digest, {}}; }
};

// ---------------------------------------------------------------- topics

TEST(Topics, SubscribersAndWatchersComeAndGoLeavingNothingBehind) {
  topics t;
  EXPECT_TRUE(t.subscribe("metrics/cpu", "a"));
  EXPECT_FALSE(t.subscribe("metrics/cpu", "a"));  // already: watchers are not told again
  EXPECT_TRUE(t.subscribe("metrics/cpu", "b"));
  t.watch("metrics/cpu", "w");
  EXPECT_EQ(t.subscribers("metrics/cpu"), (topics::name_set{"a", "b"}));
  EXPECT_EQ(t.watchers("metrics/cpu"), (topics::name_set{"w"}));
  EXPECT_TRUE(t.subscribers("other").empty());
  EXPECT_TRUE(t.unsubscribe("metrics/cpu", "a"));
  EXPECT_FALSE(t.unsubscribe("metrics/cpu", "a"));
  EXPECT_TRUE(t.unsubscribe("metrics/cpu", "b"));
  EXPECT_EQ(t.topic_count(), 0u);
  t.unwatch("metrics/cpu", "w");
  EXPECT_EQ(t.watched_topic_count(), 0u);
}

TEST(Topics, AQueueGroupGivesEachEnvelopeToOneMemberInTurn) {
  topics t;
  EXPECT_TRUE(t.queue_subscribe("jobs/run", "workers", "w1"));
  EXPECT_TRUE(t.queue_subscribe("jobs/*", "workers", "w2"));  // the same group through a pattern: pooled
  EXPECT_TRUE(t.queue_subscribe("jobs/run", "auditors", "a1"));
  EXPECT_TRUE(t.subscribe("jobs/run", "plain"));
  EXPECT_TRUE(t.subscribers("jobs/run").count("plain"));
  EXPECT_FALSE(t.subscribers("jobs/run").count("w1"));  // queue members are not plain subscribers
  EXPECT_EQ(t.members("jobs/run"), (topics::name_set{"a1", "plain", "w1", "w2"}));  // a publisher needs them all
  auto all = [](const std::string&) { return true; };
  auto none = [](const std::string&) { return false; };
  std::map<std::string, int> taken;
  for (int i = 0; i < 10; ++i) {
    std::vector<std::string> picks;
    t.queue_picks("jobs/run", all, none, picks);
    ASSERT_EQ(picks.size(), 2u);  // one per group
    for (const auto& p : picks) ++taken[p];
  }
  EXPECT_EQ(taken, (std::map<std::string, int>{{"a1", 10}, {"w1", 5}, {"w2", 5}}));
  // A member that may not get it (offline, or the sender) is passed over; a group
  // with no eligible member gets nothing.
  std::vector<std::string> picks;
  t.queue_picks("jobs/run", [](const std::string& n) { return n != "w1" && n != "a1"; }, none, picks);
  EXPECT_EQ(picks, (std::vector<std::string>{"w2"}));
  picks.clear();
  t.queue_picks("jobs/other", all, none, picks);  // only the pattern matches
  EXPECT_EQ(picks, (std::vector<std::string>{"w2"}));
  // A group one of whose members gets the envelope anyway (a plain subscriber: its
  // library runs its queue handler too) is served: no second member gets it.
  picks.clear();
  t.queue_picks("jobs/run", all, [](const std::string& n) { return n == "w1"; }, picks);
  EXPECT_EQ(picks, (std::vector<std::string>{"a1"}));
  // One agent in two groups is picked once and serves both.
  EXPECT_TRUE(t.queue_subscribe("jobs/run", "auditors", "w2"));
  EXPECT_TRUE(t.queue_unsubscribe("jobs/run", "auditors", "a1"));
  picks.clear();
  t.queue_picks("jobs/run", [](const std::string& n) { return n == "w2"; }, none, picks);
  EXPECT_EQ(picks, (std::vector<std::string>{"w2"}));
  EXPECT_TRUE(t.queue_unsubscribe("jobs/run", "auditors", "w2"));
  EXPECT_TRUE(t.queue_subscribe("jobs/run", "auditors", "a1"));
  EXPECT_TRUE(t.queue_unsubscribe("jobs/run", "workers", "w1"));
  EXPECT_FALSE(t.queue_unsubscribe("jobs/run", "workers", "w1"));
  EXPECT_TRUE(t.queue_unsubscribe("jobs/*", "workers", "w2"));
  EXPECT_TRUE(t.queue_unsubscribe("jobs/run", "auditors", "a1"));
  EXPECT_EQ(t.queue_count(), 0u);
}

// ---------------------------------------------------------------- router

TEST(Router, ADirectEnvelopeGoesToItsRecipientReMacedForItsHop) {
  parts p;
  known_agent& a = p.online("monitor-1", "MONITOR", 1);
  known_agent& d = p.online("director-1", "DIRECTOR", 2);
  fake_envelope e("monitor-1", recipient_kind::agent, "director-1");
  p.routes.route(a, e.view());
  auto sent = p.tx.to(b("route-director-1"), session::frame::kEnvelope);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].parts[1], e.signed_part);  // byte for byte
  auto auth = decode_auth_part(sent[0].parts[2]);
  ASSERT_TRUE(auth.ok());
  ASSERT_TRUE(auth->hop_mac.has_value());
  EXPECT_TRUE(session::verify_hop_mac(d.conn->hop, e.digest, *auth).ok()) << "MACed under the recipient's hop key";
  EXPECT_EQ(p.stats.value("envelopes_total", "accepted"), 1u);
  EXPECT_TRUE(p.nacks_to(a).empty());
}

TEST(Router, AnUnknownOrVanishedRecipientIsNackedToTheSenderAndAVanishedOneGoesOffline) {
  parts p;
  known_agent& a = p.online("monitor-1", "MONITOR", 1);
  known_agent& d = p.online("director-1", "DIRECTOR", 2);
  fake_envelope nobody("monitor-1", recipient_kind::agent, "nobody-1");
  p.routes.route(a, nobody.view());
  p.tx.fail_route[b("route-director-1")] = net::send_outcome::unreachable;
  fake_envelope gone("monitor-1", recipient_kind::agent, "director-1", "yy");
  p.routes.route(a, gone.view());
  auto nacks = p.nacks_to(a);
  ASSERT_EQ(nacks.size(), 2u);
  EXPECT_EQ(nacks[0].reason.code(), status_code::not_deliverable);
  EXPECT_EQ(nacks[0].recipient, "nobody-1");
  EXPECT_EQ(nacks[0].message_id, nobody.header.message_id);
  EXPECT_EQ(nacks[1].reason.code(), status_code::not_deliverable);
  EXPECT_EQ(nacks[1].message_id, gone.header.message_id);
  EXPECT_FALSE(d.online()) << "a send that found the peer gone closes its connection";
}

TEST(Router, AFullQueueIsOverloadedNotGone) {
  parts p;
  known_agent& a = p.online("monitor-1", "MONITOR", 1);
  known_agent& d = p.online("director-1", "DIRECTOR", 2);
  p.tx.fail_route[b("route-director-1")] = net::send_outcome::would_block;
  fake_envelope e("monitor-1", recipient_kind::agent, "director-1");
  p.routes.route(a, e.view());
  auto nacks = p.nacks_to(a);
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].reason.code(), status_code::overloaded);
  EXPECT_TRUE(d.online());
}

TEST(Router, ATopicEnvelopeGoesToEverySubscriberButItsSender) {
  parts p;
  known_agent& a = p.online("monitor-1", "MONITOR", 1);
  p.online("director-1", "DIRECTOR", 2);
  p.online("architect-1", "ARCHITECT", 3);
  for (const char* n : {"monitor-1", "director-1", "architect-1"}) p.subscriptions.subscribe("metrics/cpu", n);
  fake_envelope e("monitor-1", recipient_kind::topic, "metrics/cpu");
  p.routes.route(a, e.view());
  EXPECT_EQ(p.tx.to(b("route-director-1"), session::frame::kEnvelope).size(), 1u);
  EXPECT_EQ(p.tx.to(b("route-architect-1"), session::frame::kEnvelope).size(), 1u);
  EXPECT_TRUE(p.tx.to(b("route-monitor-1"), session::frame::kEnvelope).empty());
}

TEST(Router, AFanOutSendsOneWireBatchPerRecipientInOrderWithinTheLimits) {
  parts p;
  known_agent& a = p.online("monitor-1", "MONITOR", 1);
  p.online("director-1", "DIRECTOR", 2);
  p.online("architect-1", "ARCHITECT", 3);
  std::deque<fake_envelope> envelopes;  // stable addresses: the fan-out holds views
  fanout batch;
  for (int i = 0; i < 20; ++i) {
    envelopes.emplace_back("monitor-1", recipient_kind::agent, "director-1", std::string(static_cast<std::size_t>(i + 1), 'p'));
    p.routes.route(a, envelopes.back().view(), &batch);
  }
  envelopes.emplace_back("monitor-1", recipient_kind::agent, "architect-1");
  p.routes.route(a, envelopes.back().view(), &batch);
  EXPECT_TRUE(p.tx.sent.empty()) << "staged, not sent, until the batch is flushed";
  EXPECT_EQ(batch.size(), 21u);
  p.routes.flush(batch);
  EXPECT_TRUE(batch.empty());
  auto to_d = p.tx.to(b("route-director-1"));
  ASSERT_EQ(to_d.size(), 2u);  // 16 + 4: kWireBatchEnvelopes a message
  EXPECT_EQ(to_d[0].kind(), session::frame::kWireBatch);
  EXPECT_EQ(to_d[0].parts.size(), 3 + 2 * session::kWireBatchEnvelopes);
  EXPECT_EQ(to_d[1].parts.size(), 3 + 2 * 4u);
  for (std::size_t k = 0; k < 16; ++k) EXPECT_EQ(to_d[0].parts[3 + 2 * k], envelopes[k].signed_part) << k;
  auto to_r = p.tx.to(b("route-architect-1"));
  ASSERT_EQ(to_r.size(), 1u);
  EXPECT_EQ(to_r[0].kind(), session::frame::kEnvelope) << "a single envelope leaves as ENV";
  EXPECT_EQ(p.stats.value("wire_batches_sent_total"), 2u);
}

// The old broker kept its fan-out as a member pointer set while a wire batch was
// routed; a member check that threw left it pointing at a destroyed vector, and the
// next envelope was staged into it. The fan-out is now the caller's, passed
// explicitly: an abandoned one leaves nothing behind.
TEST(Router, AFanOutThatIsAbandonedLeavesTheNextEnvelopeUnaffected) {
  parts p;
  known_agent& a = p.online("monitor-1", "MONITOR", 1);
  p.online("director-1", "DIRECTOR", 2);
  fake_envelope staged("monitor-1", recipient_kind::agent, "director-1", "staged");
  {
    fanout abandoned;
    p.routes.route(a, staged.view(), &abandoned);
  }  // as when the batch's routing ends in an exception: never flushed
  fake_envelope next("monitor-1", recipient_kind::agent, "director-1", "next");
  p.routes.route(a, next.view());
  auto sent = p.tx.to(b("route-director-1"), session::frame::kEnvelope);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].parts[1], next.signed_part);
}

// ---------------------------------------------------------------- control channel

// control_frames: a control request as the agent with hop key `seed` sends it.
std::vector<bytes> control_frames(std::uint8_t seed, std::uint64_t seq, const session::control::request& r) {
  const session::mac_key k = test_key(seed);
  bytes body = session::control::encode(seq, r);
  return {k.session_id, body, session::ctrl_tag(k, body)};
}

// Patterns (NATS-style): a pattern's subscribers are subscribers of every topic it
// matches; its coming and going changes the member lists of the watched topics it
// matches; an ACL must cover a pattern, not merely match it.
TEST(ControlChannel, PatternSubscriptionsReachMatchingTopicsAndTheirWatchers) {
  parts p;
  p.online("monitor-1", "MONITOR", 1);
  p.online("director-1", "DIRECTOR", 2);
  p.online("optimizer-1", "OPTIMIZER", 3);
  p.control.on_control(b("route-monitor-1"), control_frames(1, 1, session::control::watch_members{"metrics/cpu"}));
  p.control.on_control(b("route-monitor-1"), control_frames(1, 2, session::control::watch_members{"alerts/disk"}));
  p.control.on_control(b("route-optimizer-1"), control_frames(3, 1, session::control::subscribe{"metrics/cpu", {}}));
  p.tx.sent.clear();
  p.control.on_control(b("route-director-1"), control_frames(2, 1, session::control::subscribe{"metrics/>", {}}));
  EXPECT_EQ(p.subscriptions.subscribers("metrics/cpu"), (topics::name_set{"director-1", "optimizer-1"}));
  EXPECT_EQ(p.subscriptions.subscribers("metrics/mem/used"), (topics::name_set{"director-1"}));
  EXPECT_TRUE(p.subscriptions.subscribers("metrics").empty()) << "'>' matches one segment or more";
  EXPECT_TRUE(p.subscriptions.subscribers("alerts/disk").empty());
  std::vector<session::control::members> lists;
  for (const auto& msg : p.tx.to(b("route-monitor-1"), session::frame::kControl))
    if (auto a = session::control::decode_answer(msg.parts.at(2)))
      if (auto* ml = std::get_if<session::control::members>(&a->message)) lists.push_back(*ml);
  ASSERT_EQ(lists.size(), 1u) << "only the watched topic the pattern matches";
  EXPECT_EQ(lists[0].topic, "metrics/cpu");
  EXPECT_EQ(lists[0].subscribers, (std::vector<std::string>{"director-1", "optimizer-1"}));

  // The OPTIMIZER may subscribe to metrics/> (its ACL); to debug/> it may not, and a
  // pattern that is not one is invalid.
  p.control.on_control(b("route-optimizer-1"), control_frames(3, 2, session::control::subscribe{"debug/>", {}}));
  p.control.on_control(b("route-optimizer-1"), control_frames(3, 3, session::control::subscribe{"metrics/>/x", {}}));
  std::vector<status> answers;
  for (const auto& msg : p.tx.to(b("route-optimizer-1"), session::frame::kControl))
    if (auto a = session::control::decode_answer(msg.parts.at(2)))
      if (auto* sub = std::get_if<session::control::subscribed>(&a->message)) answers.push_back(sub->outcome);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].code(), status_code::acl_denied);
  EXPECT_EQ(answers[1].code(), status_code::invalid_field);

  // At most kMaxPatternsPerAgent patterns per agent: each costs every publish a match.
  for (std::size_t i = 0; i <= kMaxPatternsPerAgent; ++i)
    p.control.on_control(b("route-optimizer-1"),
                         control_frames(3, 4 + i, session::control::subscribe{"metrics/a" + std::to_string(i) + "/>", {}}));
  EXPECT_EQ(p.subscriptions.pattern_count(), kMaxPatternsPerAgent + 1) << "the director's metrics/> and 16 of the optimizer's";
  std::vector<status> capped;
  for (const auto& msg : p.tx.to(b("route-optimizer-1"), session::frame::kControl))
    if (auto a = session::control::decode_answer(msg.parts.at(2)))
      if (auto* sub = std::get_if<session::control::subscribed>(&a->message)) capped.push_back(sub->outcome);
  ASSERT_EQ(capped.size(), 2u + kMaxPatternsPerAgent + 1);
  EXPECT_EQ(capped.back().code(), status_code::too_large);
  EXPECT_TRUE(capped[capped.size() - 2].ok());

  // Unsubscribing the pattern: gone from the topics it matched, the watcher told.
  p.tx.sent.clear();
  p.control.on_control(b("route-director-1"), control_frames(2, 2, session::control::unsubscribe{"metrics/>"}));
  EXPECT_EQ(p.subscriptions.subscribers("metrics/cpu"), (topics::name_set{"optimizer-1"}));
  EXPECT_EQ(p.tx.to(b("route-monitor-1"), session::frame::kControl).size(), 1u);
}

TEST(ControlChannel, SubscriptionsFollowThePolicyAndWatchersHearOfThem) {
  parts p;
  p.online("monitor-1", "MONITOR", 1);
  known_agent& d = p.online("director-1", "DIRECTOR", 2);
  p.control.on_control(b("route-monitor-1"), control_frames(1, 1, session::control::watch_members{"metrics/cpu"}));
  p.control.on_control(b("route-director-1"), control_frames(2, 1, session::control::subscribe{"metrics/cpu", {}}));
  p.control.on_control(b("route-monitor-1"), control_frames(1, 2, session::control::subscribe{"builds/x", {}}));  // not MONITOR's
  EXPECT_EQ(p.subscriptions.subscribers("metrics/cpu"), (topics::name_set{"director-1"}));
  EXPECT_TRUE(p.subscriptions.subscribers("builds/x").empty());
  std::vector<std::vector<std::string>> member_lists;
  std::vector<session::control::subscribed> answers;
  for (const auto& msg : p.tx.sent) {
    auto a = session::control::decode_answer(msg.parts.at(2));
    ASSERT_TRUE(a.ok());
    if (auto* ml = std::get_if<session::control::members>(&a->message)) member_lists.push_back(ml->subscribers);
    if (auto* s = std::get_if<session::control::subscribed>(&a->message)) answers.push_back(*s);
  }
  ASSERT_EQ(member_lists.size(), 2u);  // the first answer, then the change
  EXPECT_TRUE(member_lists[0].empty());
  EXPECT_EQ(member_lists[1], std::vector<std::string>{"director-1"});
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_TRUE(answers[0].outcome.ok());
  EXPECT_EQ(answers[1].outcome.code(), status_code::acl_denied);
  // A replayed control message is refused; a closing connection leaves its topics.
  p.control.on_control(b("route-director-1"), control_frames(2, 1, session::control::subscribe{"metrics/cpu", {}}));
  ASSERT_FALSE(p.nacks_to(d).empty());
  EXPECT_EQ(p.nacks_to(d).back().reason.code(), status_code::replayed);
  p.agents.close(d);
  EXPECT_TRUE(p.subscriptions.subscribers("metrics/cpu").empty());
}

// Issue 12, case 7: 300,000 invented op names once made 300,000 control_total series
// (+59 MiB). Control messages are typed now: an unknown op is refused invalid_field and
// labels come from the fixed set, so the metrics text does not grow with what agents send.
// shipped_policy_with: config/policy.toml with one exact edit (the test fails if the
// text it replaces is not there).
policy shipped_policy_with(const std::string& from, const std::string& to) {
  std::string text = testing::read_text(testing::source_dir() / "config" / "policy.toml");
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return policy::parse(text, "policy.toml");
}

// A reload that takes metrics/ from the MONITOR's subscriptions: the broker assigns the
// new policy in place (every part holds a reference to it), then withdraws what it no
// longer allows, telling the agent as it would of a refused subscription.
TEST(ControlChannel, AReloadedPolicyWithdrawsTheSubscriptionsItNoLongerAllows) {
  parts p;
  p.pol = shipped_policy_with("", "");
  known_agent& m = p.online("monitor-1", "MONITOR", 1);
  known_agent& d = p.online("director-1", "DIRECTOR", 2);
  auto send = [&](std::uint64_t seq, const session::control::request& r) {
    p.control.on_control(b("route-monitor-1"), control_frames(1, seq, r));
  };
  send(1, session::control::subscribe{"metrics/cpu", {}});
  send(2, session::control::subscribe{"directives/all", {}});
  send(3, session::control::watch_members{"metrics/cpu"});
  ASSERT_EQ(p.subscriptions.subscribers("metrics/cpu"), (topics::name_set{"monitor-1"}));
  p.tx.sent.clear();

  p.pol = shipped_policy_with(R"(publish = ["metrics/>", "alerts/>"]
subscribe = ["directives/>", "metrics/>"])",
                              R"(publish = ["alerts/>"]
subscribe = ["directives/>"])");
  EXPECT_EQ(p.control.withdraw_disallowed(m), std::vector<std::string>{"metrics/cpu"});
  EXPECT_TRUE(p.subscriptions.subscribers("metrics/cpu").empty());
  EXPECT_EQ(p.subscriptions.subscribers("directives/all"), (topics::name_set{"monitor-1"}));
  EXPECT_TRUE(p.subscriptions.watchers("metrics/cpu").empty()) << "it may no longer publish there either";
  EXPECT_EQ(m.conn->subscriptions, (std::set<std::string, std::less<>>{"directives/all"}));
  std::vector<session::control::subscribed> told;
  for (const auto& msg : p.tx.to(b("route-monitor-1"), session::frame::kControl))
    if (auto a = session::control::decode_answer(msg.parts.at(2)))
      if (auto* s = std::get_if<session::control::subscribed>(&a->message)) told.push_back(*s);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].topic, "metrics/cpu");
  EXPECT_EQ(told[0].outcome.code(), status_code::acl_denied);
  EXPECT_TRUE(p.control.withdraw_disallowed(d).empty()) << "the DIRECTOR's rights did not change";
}

TEST(PolicyReload, DescribesEachChangeOnItsOwnLine) {
  const policy before = shipped_policy_with("", "");
  EXPECT_TRUE(describe_policy_change(before, before).empty());
  const policy after = shipped_policy_with("revoked = []", R"(revoked = ["mon-2"])");
  EXPECT_EQ(describe_policy_change(before, after), std::vector<std::string>{"revoked agent +mon-2"});
  EXPECT_EQ(describe_policy_change(after, before), std::vector<std::string>{"revoked agent -mon-2"});
  const policy acl = shipped_policy_with(R"(send_to = ["DIRECTOR", "MONITOR"])", R"(send_to = ["DIRECTOR"])");
  EXPECT_EQ(describe_policy_change(before, acl),
            std::vector<std::string>{"role OPTIMIZER: send_to [DIRECTOR, MONITOR] -> [DIRECTOR]"});
  const policy stricter = shipped_policy_with("rekey_after_seconds = 600", "rekey_after_seconds = 60");
  EXPECT_EQ(describe_policy_change(before, stricter),
            (std::vector<std::string>{"role DIRECTOR: rekey_after_seconds 600 -> 60", "role SECURITY: rekey_after_seconds 600 -> 60"}));
  const policy moved = shipped_policy_with(R"(profile = "realtime")", R"(profile = "batch")");
  const auto lines = describe_policy_change(before, moved);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front(), "role OPTIMIZER: profile realtime -> batch");
}

// What a reload re-checks for agents already online (and PROOF for handshakes that
// began under the old policy).
TEST(PolicyReload, RoleAdmitsAppliesTheRolesRulesToAKeysFacts) {
  const policy p = shipped_policy_with("", "");
  const suite p256 = *p.suite_for("MONITOR");
  EXPECT_TRUE(role_admits(p, "MONITOR", p256, protection::tpm, true, false));
  EXPECT_EQ(role_admits(p, "NOBODY", p256, protection::tpm, false, false).code(), status_code::unknown_role);
  EXPECT_EQ(role_admits(p, "DIRECTOR", p256, protection::tpm, false, false).code(), status_code::suite_mismatch);
  EXPECT_EQ(role_admits(p, "MONITOR", p256, protection::software, false, false).code(), status_code::software_key_refused);
  EXPECT_TRUE(role_admits(p, "DEBUGGER", *p.suite_for("DEBUGGER"), protection::software, false, false));
  suite redefined = p256;
  redefined.mac_hash = hash_algorithm::sha384;  // the same name, another suite: as after a reload that redefines it
  EXPECT_EQ(role_admits(p, "MONITOR", redefined, protection::tpm, false, false).code(), status_code::suite_mismatch);
  const policy no_sim = shipped_policy_with("allow_simulator = true", "allow_simulator = false");
  EXPECT_EQ(role_admits(no_sim, "MONITOR", p256, protection::tpm, true, false).code(), status_code::simulator_refused);
  EXPECT_TRUE(role_admits(no_sim, "MONITOR", p256, protection::tpm, false, false));
}

TEST(PolicyReload, LiveConfigFieldsAreAppliedTheOthersWaitForARestart) {
  broker_config running;
  running.log_level = "info";
  broker_config next = running;
  next.log_level = "debug";
  next.max_agents = 7;
  next.send_hwm = 5;
  next.endpoints = {"ipc:///tmp/elsewhere.sock"};
  const config_change c = apply_live_config(running, next);
  EXPECT_EQ(c.applied, (std::vector<std::string>{"logging.level", "limits.max_agents"}));
  EXPECT_EQ(c.at_restart, (std::vector<std::string>{"broker.endpoints", "limits.send_hwm"}));
  EXPECT_EQ(running.log_level, "debug");
  EXPECT_EQ(running.max_agents, 7u);
  EXPECT_EQ(running.send_hwm, broker_config{}.send_hwm) << "kept until a restart";
  EXPECT_TRUE(running.endpoints.empty());
  EXPECT_TRUE(apply_live_config(running, running).applied.empty());
}

TEST(ControlChannel, InventedOpsAddNoMetricSeries) {
  parts p;
  known_agent& m = p.online("monitor-1", "MONITOR", 1);
  const session::mac_key k = test_key(1);
  auto send = [&](std::uint64_t seq, std::string op) {
    session::ctrl_msg generic;
    generic.seq = seq;
    generic.op = std::move(op);
    bytes body = session::encode(generic);
    p.control.on_control(b("route-monitor-1"), std::vector<bytes>{k.session_id, body, session::ctrl_tag(k, body)});
  };
  auto series = [&] {
    const std::string text = p.stats.to_prometheus_text();
    return std::count(text.begin(), text.end(), '\n');
  };
  send(1, "op-0");
  const auto series_after_one = series();
  for (std::uint64_t i = 1; i < 2000; ++i) send(i + 1, "op-" + std::to_string(i));
  EXPECT_EQ(series(), series_after_one) << "no series per invented op";
  EXPECT_EQ(p.stats.value("control_refused_total", "invalid_field"), 2000u);
  EXPECT_EQ(p.nacks_to(m).size(), 2000u) << "each refused, none dropped silently";
  EXPECT_EQ(p.stats.to_prometheus_text().find("op-1"), std::string::npos);
}

TEST(ControlChannel, AControlMessageWithTheWrongShapeIsRefusedInvalidField) {
  parts p;
  known_agent& m = p.online("monitor-1", "MONITOR", 1);
  session::ctrl_msg generic;
  generic.seq = 1;
  generic.op = "subscribe";
  generic.strings = {"metrics/cpu", "extra"};
  const session::mac_key k = test_key(1);
  bytes body = session::encode(generic);
  p.control.on_control(b("route-monitor-1"), std::vector<bytes>{k.session_id, body, session::ctrl_tag(k, body)});
  ASSERT_EQ(p.nacks_to(m).size(), 1u);
  EXPECT_EQ(p.nacks_to(m)[0].reason.code(), status_code::invalid_field);
  EXPECT_EQ(p.stats.value("control_refused_total", "invalid_field"), 1u);
}

// Issue 12, case 5: what an agent may make its peers answer, as the broker counts it.
TEST(SessionOffers, OffersPassOnTheOfferersRightsAndAcceptsOnlyAnswerOffersInFlight) {
  session_offers o;
  const auto t0 = std::chrono::steady_clock::now();
  auto offer = [](const std::string& from, const std::string& to, std::uint8_t id) {
    envelope_header h;
    h.sender = from;
    h.to = to;
    h.message_id = bytes(16, id);
    return h;
  };
  auto accept_of = [](const envelope_header& off) {
    envelope_header h;
    h.sender = off.to;
    h.to = off.sender;
    h.correlation_id = off.message_id;
    return h;
  };
  // Against the direction of traffic: one per 1.5 s per pair (the receiver spaces its
  // re-offers 2 s apart).
  EXPECT_TRUE(o.may_offer("debugger-1", "director-1", false, t0).ok());
  EXPECT_EQ(o.may_offer("debugger-1", "director-1", false, t0 + std::chrono::seconds(1)).code(), status_code::overloaded);
  EXPECT_TRUE(o.may_offer("debugger-2", "director-1", false, t0 + std::chrono::seconds(1)).ok()) << "per pair";
  EXPECT_TRUE(o.may_offer("debugger-1", "director-1", false, t0 + std::chrono::seconds(2)).ok());
  // Forward: unanswered offers to at most 256 agents, then refused until some are
  // answered, undeliverable or 20 s old.
  for (std::size_t i = 0; i < session_offers::kMaxInFlightPerOfferer; ++i) {
    const std::string to = "peer-" + std::to_string(i);
    ASSERT_TRUE(o.may_offer("monitor-1", to, true, t0).ok()) << i;
    envelope_header h = offer("monitor-1", to, 0);
    h.message_id[0] = static_cast<std::uint8_t>(i);
    h.message_id[1] = static_cast<std::uint8_t>(i >> 8);
    o.offered(h, "P-384", false, t0);
  }
  EXPECT_EQ(o.may_offer("monitor-1", "peer-new", true, t0).code(), status_code::overloaded);
  EXPECT_EQ(o.may_offer("monitor-1", "peer-7", true, t0).code(), status_code::overloaded) << "not within 1.5 s";
  EXPECT_TRUE(o.may_offer("monitor-1", "peer-7", true, t0 + std::chrono::seconds(2)).ok())
      << "a new offer to the same peer replaces the old";
  EXPECT_TRUE(o.may_offer("monitor-2", "peer-new", true, t0).ok()) << "per offerer";
  // A replacement: the old offer can no longer be answered.
  envelope_header first = offer("monitor-1", "peer-0", 0);
  envelope_header again = offer("monitor-1", "peer-0", 0);
  again.message_id = bytes(16, 0xee);
  EXPECT_TRUE(o.answers(accept_of(first)));
  o.offered(again, "P-384", false, t0);
  EXPECT_FALSE(o.answers(accept_of(first)));
  // An accept answers only its own offer, from its recipient to its sender, once.
  envelope_header stray = accept_of(again);
  stray.sender = "debugger-1";
  EXPECT_FALSE(o.answers(stray));
  ASSERT_TRUE(o.accepted(accept_of(again)).has_value());
  EXPECT_FALSE(o.answers(accept_of(again))) << "answered once";
  EXPECT_TRUE(o.may_offer("monitor-1", "peer-new", true, t0 + std::chrono::seconds(2)).ok()) << "an answer frees a place";
  // An offer the broker could not deliver is forgotten at once.
  envelope_header lost = offer("monitor-1", "peer-1", 0);
  lost.message_id[0] = 1;
  EXPECT_TRUE(o.answers(accept_of(lost)));
  o.undelivered(lost.message_id);
  EXPECT_FALSE(o.answers(accept_of(lost)));
  EXPECT_TRUE(o.may_offer("monitor-1", "peer-new", true, t0 + session_offers::kForgetAfter + std::chrono::seconds(2)).ok());
  EXPECT_EQ(o.in_flight(), 0u) << "unanswered offers are forgotten after 20 s";
}

// ---------------------------------------------------------------- enrolment

secret_bytes random_token() {
  const bytes raw = crypto::random_bytes(session::kEnrolmentTokenSize);
  secret_bytes t(raw.size());
  std::copy(raw.begin(), raw.end(), t.data());
  return t;
}

struct enrolment_bench : parts {
  std::shared_ptr<identity_key> broker_key;
  std::deque<identity_job> jobs;
  std::unique_ptr<enrolment> enrol;

  enrolment_bench() {
    cfg.name = "test-broker";
    broker_key = identity_key::create_software(dir.path() / "broker-key", "MONITOR", *pol.suite_for("MONITOR"));
    enrol = std::make_unique<enrolment>(cfg, pol, *broker_key, reg, agents, out, acct,
                                        [this](identity_job j) { jobs.push_back(std::move(j)); });
  }
  // run_jobs plays the identity worker.
  void run_jobs() {
    while (!jobs.empty()) {
      identity_job j = std::move(jobs.front());
      jobs.pop_front();
      identity_result r;
      r.route = j.route;
      r.generation = j.generation;
      if (j.cancelled && j.cancelled->load()) r.skipped = true;
      else r.signature = broker_key->sign_message(j.transcript);
      enrol->on_signed(std::move(r));
    }
  }
  std::shared_ptr<identity_key> agent_key(const std::string& name, const std::string& role) {
    return identity_key::create_software(dir.path() / name, role, *pol.suite_for(role));
  }
  // issue_token stores a token for `name` and `role` as `agentbus-trust token create`
  // would (its hash only) and returns the token.
  secret_bytes issue_token(const std::string& name, const std::string& role, std::string fingerprint = {},
                           std::int64_t ttl_ms = 3'600'000, std::string ek_fingerprint = {}) {
    secret_bytes t = random_token();
    token_record r;
    r.hash = enrolment_authority::token_hash(t.view());
    r.name = name;
    r.role = role;
    r.fingerprint = std::move(fingerprint);
    r.ek_fingerprint = std::move(ek_fingerprint);
    r.created_at = now_unix_ms();
    r.expires_at = r.created_at + ttl_ms;
    r.created_by = "test";
    if (!reg.add_token(r)) throw std::runtime_error("token not stored");
    return t;
  }
  // hello sends the agent's HELLO as an agent does: the first without a cookie, then,
  // when the broker answered COOKIE, the one that returns it (signed).
  void hello(client::hop_handshake& hs, const bytes& route, const std::string& address = {}) {
    const std::size_t cookies_before = tx.to(route, session::frame::kCookie).size();
    net::connection_facts from;
    from.address = address;
    enrol->on_hello(route, std::vector<bytes>{hs.hello()}, from);
    if (tx.to(route, session::frame::kCookie).size() == cookies_before) return;
    auto again = hs.with_cookie(last_body(route, session::frame::kCookie));
    if (!again) throw std::runtime_error(again.error().to_string());
    enrol->on_hello(route, std::vector<bytes>{*again}, from);
  }
  // enrol runs one whole handshake on `route` (the agent's side too) and returns the
  // broker's answer: ok when WELCOME verified, else REFUSED's code.
  status enrol_with(identity_key& key, const std::string& name, const bytes& route, const secret_bytes* token) {
    const std::string role = key.metadata().role;
    client::hop_handshake hs(key, *pol.suite_for(role), name, broker_key->public_key().fingerprint_hex(), token);
    hello(hs, route, "tcp://192.0.2.7:40000");
    run_jobs();
    auto refused = [&]() -> status {
      auto r = session::decode_refused(last_body(route, session::frame::kRefused));
      if (!r) return {status_code::internal, "neither WELCOME nor REFUSED"};
      return {r->code, r->reason};
    };
    const bytes challenge = last_body(route, session::frame::kChallenge);
    if (challenge.empty()) return refused();
    auto proof = hs.on_challenge(challenge);
    if (!proof) return proof.error();
    hs.keys_ready(std::move(proof->keys));
    enrol->on_proof(route, std::vector<bytes>{proof->body});
    const bytes welcome = last_body(route, session::frame::kWelcome);
    if (welcome.empty()) return refused();
    auto w = hs.on_welcome(welcome);
    return w ? status{} : w.error();
  }
  bytes last_body(const bytes& route, std::string_view kind) {
    auto m = tx.to(route, kind);
    return m.empty() ? bytes{} : m.back().parts.back();  // the body (ERR: after its text)
  }
};

TEST(Enrolment, AHandshakeCompletesWithKeysBothEndsAgreeOn) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const bytes route = b("r1");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", e.broker_key->public_key().fingerprint_hex(),
                           &token);
  e.hello(hs, route);
  EXPECT_EQ(e.enrol->pending(), 1u);
  ASSERT_EQ(e.jobs.size(), 1u) << "the broker's signature is the identity worker's job, not the event loop's";
  e.run_jobs();
  auto proof = hs.on_challenge(e.last_body(route, session::frame::kChallenge));
  ASSERT_TRUE(proof.ok()) << proof.error().to_string();
  hs.keys_ready(std::move(proof->keys));
  e.enrol->on_proof(route, std::vector<bytes>{proof->body});
  auto welcome = hs.on_welcome(e.last_body(route, session::frame::kWelcome));
  ASSERT_TRUE(welcome.ok()) << welcome.error().to_string();
  const known_agent* a = e.agents.find("debugger-1");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->online());
  EXPECT_EQ(e.enrol->pending(), 0u);
  // What the agent MACs with its send key the broker verifies, and the other way round.
  session::session_state agent_hop;
  agent_hop.install(std::move(welcome->keys.send), std::move(welcome->keys.receive), std::chrono::seconds(30));
  const bytes body = b("a control body");
  EXPECT_TRUE(session::verify_ctrl_tag(a->conn->hop, agent_hop.send_key()->session_id, body,
                                       session::ctrl_tag(*agent_hop.send_key(), body))
                  .ok());
  EXPECT_TRUE(session::verify_ctrl_tag(agent_hop, a->conn->hop.send_key()->session_id, body,
                                       session::ctrl_tag(*a->conn->hop.send_key(), body))
                  .ok());
  ASSERT_TRUE(e.reg.find_agent("debugger-1").has_value());
  EXPECT_EQ(e.stats.value("enrolments_total", "accepted"), 1u);
}

// A WELCOME the broker could not send (the peer gone, its queue full) used to leave
// the agent online all the same. Only a WELCOME that left opens the connection now.
TEST(Enrolment, AWelcomeThatCannotBeSentLeavesNothingOnline) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const bytes route = b("r1");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &token);
  e.hello(hs, route);
  e.run_jobs();
  auto proof = hs.on_challenge(e.last_body(route, session::frame::kChallenge));
  ASSERT_TRUE(proof.ok());
  e.tx.fail_kind[std::string(session::frame::kWelcome)] = net::send_outcome::unreachable;
  e.enrol->on_proof(route, std::vector<bytes>{proof->body});
  const known_agent* a = e.agents.find("debugger-1");
  EXPECT_TRUE(a == nullptr || !a->online());
  EXPECT_EQ(e.agents.online_count(), 0u);
  EXPECT_EQ(e.enrol->pending(), 0u);
  EXPECT_EQ(e.stats.value("enrolments_total", "welcome_unsent"), 1u);
}

TEST(Enrolment, RefusalsComeInTheOrderOfTheChecks) {
  enrolment_bench e;
  // A role the policy does not have.
  auto stranger = identity_key::create_software(e.dir.path() / "x-1", "NOPE", *e.pol.suite_for("DEBUGGER"));
  client::hop_handshake hs_x(*stranger, *e.pol.suite_for("DEBUGGER"), "x-1", "");
  e.hello(hs_x, b("rx"));
  auto refused = session::decode_refused(e.last_body(b("rx"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::unknown_role);
  EXPECT_TRUE(e.jobs.empty()) << "no TPM work for a refused HELLO";

  // A second HELLO on a connection with a handshake in progress: ERR, the first goes on.
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &token);
  e.hello(hs, b("r1"));
  client::hop_handshake again(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &token);
  e.hello(again, b("r1"));
  auto err = session::decode_error(e.last_body(b("r1"), session::frame::kError));
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->code, status_code::overloaded);
  EXPECT_EQ(e.jobs.size(), 1u);

  // A PROOF without a CHALLENGE, and a PROOF whose signature does not verify.
  e.enrol->on_proof(b("r2"), std::vector<bytes>{b("x")});
  auto err2 = session::decode_error(e.last_body(b("r2"), session::frame::kError));
  ASSERT_TRUE(err2.ok());
  EXPECT_EQ(err2->code, status_code::malformed);
  e.run_jobs();
  auto proof = hs.on_challenge(e.last_body(b("r1"), session::frame::kChallenge));
  ASSERT_TRUE(proof.ok());
  auto tampered = session::decode_proof(proof->body);
  ASSERT_TRUE(tampered.ok());
  tampered->signature.back() ^= 1;
  e.enrol->on_proof(b("r1"), std::vector<bytes>{session::encode(*tampered)});
  auto refused2 = session::decode_refused(e.last_body(b("r1"), session::frame::kRefused));
  ASSERT_TRUE(refused2.ok());
  EXPECT_EQ(refused2->code, status_code::bad_signature);
  EXPECT_EQ(e.agents.online_count(), 0u);
}

// Squatting and the pending-key poisoning of issue 11: another key for an enrolled
// name gets key_changed; it is recorded for an operator only once its PROOF verified
// (a HELLO alone records nothing), and a later key does not replace it.
// open_policy: the shipped policy plus SANDBOX, a role that enrols first-come (open)
// and takes software keys.
policy open_policy() {
  return policy::parse(testing::read_text(testing::source_dir() / "config" / "policy.toml") +
                           "\n[roles.SANDBOX]\nsuite = \"ecdsa-p256-sha256\"\nallow_software = true\n"
                           "assurance = [\"tpm\", \"tpm-batch\", \"software\"]\nenrolment = \"open\"\n",
                       "test");
}

TEST(Enrolment, AChangedKeyIsRefusedAndTheFirstProvenOneKeptForApproval) {
  enrolment_bench e;
  e.pol = open_policy();  // pending keys are kept in open roles only
  auto first = e.agent_key("box-1", "SANDBOX");
  ASSERT_TRUE(e.enrol_with(*first, "box-1", b("r1"), nullptr).ok());
  ASSERT_TRUE(e.agents.find("box-1")->online());

  auto hello_only = e.agent_key("box-1-h", "SANDBOX");
  client::hop_handshake hs(*hello_only, *e.pol.suite_for("SANDBOX"), "box-1", "");
  e.hello(hs, b("rh"));
  e.run_jobs();
  EXPECT_EQ(e.reg.find_agent("box-1")->pending_fingerprint, "") << "a HELLO proves nothing";

  auto second = e.agent_key("box-1-b", "SANDBOX");
  EXPECT_EQ(e.enrol_with(*second, "box-1", b("r2"), nullptr).code(), status_code::key_changed);
  auto third = e.agent_key("box-1-c", "SANDBOX");
  EXPECT_EQ(e.enrol_with(*third, "box-1", b("r3"), nullptr).code(), status_code::key_changed);
  auto rec = e.reg.find_agent("box-1");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->fingerprint, first->public_key().fingerprint_hex());
  EXPECT_EQ(rec->pending_fingerprint, second->public_key().fingerprint_hex()) << "the first proven key stays";
  EXPECT_EQ(rec->pending_address, "tcp://192.0.2.7:40000");
  EXPECT_EQ(rec->pending_evidence, "declared software");
  EXPECT_GT(rec->pending_at, 0);
  EXPECT_EQ(e.agents.find("box-1")->conn->route, b("r1")) << "the pinned agent keeps its connection";

  // In a token role nothing is recorded: a rotation takes a token, and nobody can
  // squat the slot an operator reviews.
  auto dbg = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes t = e.issue_token("debugger-1", "DEBUGGER");
  ASSERT_TRUE(e.enrol_with(*dbg, "debugger-1", b("r4"), &t).ok());
  auto squatter = e.agent_key("debugger-1-s", "DEBUGGER");
  EXPECT_EQ(e.enrol_with(*squatter, "debugger-1", b("r5"), nullptr).code(), status_code::key_changed);
  EXPECT_EQ(e.reg.find_agent("debugger-1")->pending_fingerprint, "");
}

// No name is first-come in a token role: without a token, or with one that is not
// for this name, role or key, or used, or expired, the broker refuses not_authorised
// and the registry is unchanged.
TEST(Enrolment, ATokenRoleNeedsAValidTokenForTheNameRoleAndKey) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-9", "DEBUGGER");
  auto expect_refused = [&](const secret_bytes* token, const char* why) {
    SCOPED_TRACE(why);
    EXPECT_EQ(e.enrol_with(*key, "debugger-9", b(std::string("r-") + why), token).code(), status_code::not_authorised);
    EXPECT_FALSE(e.reg.find_agent("debugger-9").has_value());
    EXPECT_EQ(e.agents.online_count(), 0u);
  };
  expect_refused(nullptr, "no token");
  const secret_bytes unknown = random_token();
  expect_refused(&unknown, "unknown token");
  const secret_bytes other_name = e.issue_token("debugger-8", "DEBUGGER");
  expect_refused(&other_name, "another name");
  const secret_bytes other_role = e.issue_token("debugger-9", "MONITOR");
  expect_refused(&other_role, "another role");
  const secret_bytes other_key = e.issue_token("debugger-9", "DEBUGGER", std::string(64, 'a'));
  expect_refused(&other_key, "another key");
  const secret_bytes expired = e.issue_token("debugger-9", "DEBUGGER", {}, -1);
  expect_refused(&expired, "expired");
  // Bound to a TPM: a key no TPM attests cannot use it (refused at PROOF, unspent).
  const secret_bytes other_tpm = e.issue_token("debugger-9", "DEBUGGER", {}, 3'600'000, std::string(64, 'e'));
  expect_refused(&other_tpm, "another TPM");
  EXPECT_EQ(e.reg.find_token(enrolment_authority::token_hash(other_tpm.view()))->used_at, 0);
  EXPECT_GE(e.stats.value("enrolments_total", "not_authorised"), 7u);

  const secret_bytes good = e.issue_token("debugger-9", "DEBUGGER", key->public_key().fingerprint_hex());
  ASSERT_TRUE(e.enrol_with(*key, "debugger-9", b("r-good"), &good).ok());
  EXPECT_NE(e.reg.find_token(enrolment_authority::token_hash(good.view()))->used_at, 0);
  // Used: another key cannot ride on it, and the enrolled key needs it no more.
  auto thief = e.agent_key("debugger-9-t", "DEBUGGER");
  EXPECT_EQ(e.enrol_with(*thief, "debugger-9", b("r-thief"), &good).code(), status_code::not_authorised);
  EXPECT_EQ(e.reg.find_agent("debugger-9")->fingerprint, key->public_key().fingerprint_hex()) << "registry unchanged";
  EXPECT_TRUE(e.reg.find_agent("debugger-9")->pending_fingerprint.empty()) << "no pending key from a reused token";
  EXPECT_TRUE(e.enrol_with(*key, "debugger-9", b("r-again"), nullptr).ok());
  // A valid token presented by a key that needs none is spent all the same: it cannot
  // serve another key later.
  const secret_bytes spare = e.issue_token("debugger-9", "DEBUGGER");
  EXPECT_TRUE(e.enrol_with(*key, "debugger-9", b("r-spare"), &spare).ok());
  EXPECT_NE(e.reg.find_token(enrolment_authority::token_hash(spare.view()))->used_at, 0);
}

// A token authorises a new key for an enrolled name (rotation), replacing the pin.
TEST(Enrolment, ATokenAuthorisesAKeyChange) {
  enrolment_bench e;
  auto old_key = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes t1 = e.issue_token("debugger-1", "DEBUGGER");
  ASSERT_TRUE(e.enrol_with(*old_key, "debugger-1", b("r1"), &t1).ok());
  auto new_key = e.agent_key("debugger-1-new", "DEBUGGER");
  const secret_bytes t2 = e.issue_token("debugger-1", "DEBUGGER", new_key->public_key().fingerprint_hex());
  ASSERT_TRUE(e.enrol_with(*new_key, "debugger-1", b("r2"), &t2).ok());
  EXPECT_EQ(e.reg.find_agent("debugger-1")->fingerprint, new_key->public_key().fingerprint_hex());
  // The key left behind is revoked (superseded): refused under any name.
  EXPECT_EQ(e.enrol_with(*old_key, "debugger-1", b("r3"), nullptr).code(), status_code::revoked_key);
  const secret_bytes elsewhere = e.issue_token("debugger-2", "DEBUGGER");
  EXPECT_EQ(e.enrol_with(*old_key, "debugger-2", b("r4"), &elsewhere).code(), status_code::revoked_key);
}

// Revocation is by key: a revoked key is refused under a new name and another role,
// at HELLO, before the broker spends a signature on it.
TEST(Enrolment, ARevokedKeyIsRefusedUnderAnyNameBeforeAnyTpmWork) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-victim", "DEBUGGER");
  const secret_bytes t = e.issue_token("debugger-victim", "DEBUGGER");
  ASSERT_TRUE(e.enrol_with(*key, "debugger-victim", b("r1"), &t).ok());
  ASSERT_TRUE(e.reg.revoke("debugger-victim", "compromised", now_unix_ms()));
  const secret_bytes t2 = e.issue_token("dbg-victim-2", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "dbg-victim-2", "", &t2);
  e.hello(hs, b("r2"));
  EXPECT_TRUE(e.jobs.empty()) << "refused at HELLO";
  auto refused = session::decode_refused(e.last_body(b("r2"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::revoked_key);
  EXPECT_FALSE(e.reg.find_agent("dbg-victim-2").has_value());
  EXPECT_EQ(e.reg.find_token(enrolment_authority::token_hash(t2.view()))->used_at, 0) << "the token is not spent";
  // The same key under another role of its key type (issue 11: MONITOR, then OPTIMIZER).
  for (const std::string role : {"MONITOR", "OPTIMIZER"}) {
    identity_metadata claimed = testing::claiming_identity::claim_tpm(*key);  // these roles refuse software keys
    claimed.role = role;
    claimed.key_suite = *e.pol.suite_for(role);
    testing::claiming_identity other_role(key, claimed);
    const std::string name = role == "MONITOR" ? "mon-victim-2" : "opt-victim-2";
    const secret_bytes t3 = e.issue_token(name, role);
    client::hop_handshake as_role(other_role, *e.pol.suite_for(role), name, "", &t3);
    const bytes route = b("r-" + role);
    e.hello(as_role, route);
    EXPECT_TRUE(e.jobs.empty()) << role << ": refused at HELLO";
    auto r = session::decode_refused(e.last_body(route, session::frame::kRefused));
    ASSERT_TRUE(r.ok()) << role;
    EXPECT_EQ(r->code, status_code::revoked_key) << role;
    EXPECT_FALSE(e.reg.find_agent(name).has_value()) << role;
    EXPECT_EQ(e.reg.find_token(enrolment_authority::token_hash(t3.view()))->used_at, 0) << role;
  }
}

// An on-path attacker who swaps the sealed token for another box, or flips a bit,
// gets bad_mac; a token sealed for another broker does not open here.
TEST(Enrolment, ASealedTokenOpensOnlyForTheBrokerItWasSealedFor) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-9", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-9", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "debugger-9", "", &token);
  e.hello(hs, b("r1"));
  e.run_jobs();
  auto proof = hs.on_challenge(e.last_body(b("r1"), session::frame::kChallenge));
  ASSERT_TRUE(proof.ok());
  auto msg = session::decode_proof(proof->body);
  ASSERT_TRUE(msg.ok());
  ASSERT_EQ(msg->sealed_token.size(), 32u + 32u) << "DEBUGGER's MAC hash is SHA-256";
  msg->sealed_token[0] ^= 1;
  e.enrol->on_proof(b("r1"), std::vector<bytes>{session::encode(*msg)});
  auto refused = session::decode_refused(e.last_body(b("r1"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::bad_mac);
  EXPECT_EQ(e.reg.find_token(enrolment_authority::token_hash(token.view()))->used_at, 0);
}

// Roles in "open" mode keep first use; "pinned" roles admit only the policy's key.
TEST(Enrolment, OpenAndPinnedRoles) {
  enrolment_bench e;
  auto pinned_key = e.agent_key("dbg-1", "DEBUGGER");
  std::string text = testing::read_text(testing::source_dir() / "config" / "policy.toml");
  text.replace(text.find("[roles.DEBUGGER]"), 16, "[roles.DEBUGGER]\nenrolment = \"pinned\"");
  text += "\n[roles.SANDBOX]\nsuite = \"ecdsa-p256-sha256\"\nallow_software = true\n"
          "assurance = [\"tpm\", \"tpm-batch\", \"software\"]\nenrolment = \"open\"\n"
          "\n[agents.dbg-1]\nrole = \"DEBUGGER\"\nfingerprint = \"" +
          pinned_key->public_key().fingerprint_hex() + "\"\n";
  e.pol = policy::parse(text, "test");  // the parts hold a reference to e.pol
  EXPECT_TRUE(e.enrol_with(*pinned_key, "dbg-1", b("r1"), nullptr).ok());
  auto other = e.agent_key("dbg-1-x", "DEBUGGER");
  EXPECT_EQ(e.enrol_with(*other, "dbg-1", b("r2"), nullptr).code(), status_code::key_changed);
  const secret_bytes token = e.issue_token("dbg-2", "DEBUGGER");
  EXPECT_EQ(e.enrol_with(*other, "dbg-2", b("r3"), &token).code(), status_code::not_authorised) << "no pin, token or not";
  EXPECT_TRUE(e.jobs.empty());
  EXPECT_TRUE(e.reg.find_agent("dbg-1")->pending_fingerprint.empty()) << "pinned roles change keys in the policy";

  auto sandbox = e.agent_key("box-1", "SANDBOX");
  EXPECT_TRUE(e.enrol_with(*sandbox, "box-1", b("r4"), nullptr).ok()) << "open: first use";
  auto squatter = e.agent_key("box-1-s", "SANDBOX");
  EXPECT_EQ(e.enrol_with(*squatter, "box-1", b("r5"), nullptr).code(), status_code::key_changed);
}

// Issue 12, case 2: a HELLO without a cookie costs the broker a MAC and an answer: no
// pending handshake, no TPM job, no registry read or row. A cookie is good only on its
// connection, for its name and key; returned there, the HELLO is admitted.
TEST(Enrolment, AHelloWithoutACookieIsAnsweredAndNothingKept) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  const suite s = *e.pol.suite_for("DEBUGGER");
  client::hop_handshake hs(*key, s, "debugger-1", "", &token);
  e.enrol->on_hello(b("r1"), std::vector<bytes>{hs.hello()});
  EXPECT_EQ(e.enrol->pending(), 0u);
  EXPECT_TRUE(e.jobs.empty());
  ASSERT_EQ(e.tx.to(b("r1"), session::frame::kCookie).size(), 1u);
  EXPECT_TRUE(e.tx.to(b("r1"), session::frame::kRefused).empty());
  EXPECT_EQ(e.stats.value("hello_cookies_total", "issued"), 1u);
  const bytes cookie = e.last_body(b("r1"), session::frame::kCookie);

  // The cookie returned on another connection, or for another name: a new cookie.
  client::hop_handshake elsewhere(*key, s, "debugger-1", "", &token);
  auto moved = elsewhere.with_cookie(cookie);
  ASSERT_TRUE(moved.ok());
  e.enrol->on_hello(b("r2"), std::vector<bytes>{*moved});
  client::hop_handshake renamed(*key, s, "debugger-2", "", &token);
  auto other_name = renamed.with_cookie(cookie);
  ASSERT_TRUE(other_name.ok());
  e.enrol->on_hello(b("r1"), std::vector<bytes>{*other_name});
  EXPECT_EQ(e.stats.value("hello_cookies_total", "renewed"), 2u);
  EXPECT_EQ(e.enrol->pending(), 0u);
  EXPECT_TRUE(e.jobs.empty());

  // On its own connection: admitted, credentialed (its token proven), its job first.
  auto returned = hs.with_cookie(cookie);
  ASSERT_TRUE(returned.ok());
  e.enrol->on_hello(b("r1"), std::vector<bytes>{*returned});
  EXPECT_EQ(e.enrol->pending(), 1u);
  ASSERT_EQ(e.jobs.size(), 1u);
  EXPECT_TRUE(e.jobs.front().priority);
}

// A cookie buys one HELLO: a signed HELLO replayed (refused or not) gets a new cookie,
// not another signature check; one name or key holds at most 2 pending handshakes
// however many connections it opens.
TEST(Enrolment, ACookieIsSpentOnceAndOneAgentHoldsAtMostTwoPlaces) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  const suite s = *e.pol.suite_for("DEBUGGER");
  client::hop_handshake hs(*key, s, "debugger-1", "", &token);
  e.enrol->on_hello(b("r1"), std::vector<bytes>{hs.hello()});
  auto signed_hello = hs.with_cookie(e.last_body(b("r1"), session::frame::kCookie));
  ASSERT_TRUE(signed_hello.ok());
  e.enrol->on_hello(b("r1"), std::vector<bytes>{*signed_hello});
  ASSERT_EQ(e.enrol->pending(), 1u);
  e.enrol->expire(std::chrono::steady_clock::now() + kEnrolmentTimeout + std::chrono::seconds(1));
  ASSERT_EQ(e.enrol->pending(), 0u);
  e.enrol->on_hello(b("r1"), std::vector<bytes>{*signed_hello});  // the same bytes again
  EXPECT_EQ(e.stats.value("hello_cookies_total", "spent"), 1u);
  EXPECT_EQ(e.enrol->pending(), 0u);
  for (int i = 2; i <= 4; ++i) {
    client::hop_handshake more(*key, s, "debugger-1", "", &token);
    e.hello(more, b("r" + std::to_string(i)));
  }
  EXPECT_EQ(e.enrol->pending(), kMaxPendingPerAgent);
  auto refused = session::decode_refused(e.last_body(b("r4"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::overloaded);
}

TEST(Enrolment, AHelloWhosePossessionSignatureFailsIsRefusedBeforeAnyWork) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &token);
  e.enrol->on_hello(b("r1"), std::vector<bytes>{hs.hello()});
  auto signed_hello = hs.with_cookie(e.last_body(b("r1"), session::frame::kCookie));
  ASSERT_TRUE(signed_hello.ok());
  auto h = session::decode_hello(*signed_hello);
  ASSERT_TRUE(h.ok());
  h->possession.back() ^= 1;
  e.enrol->on_hello(b("r1"), std::vector<bytes>{session::encode(*h)});
  auto refused = session::decode_refused(e.last_body(b("r1"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::bad_signature);
  EXPECT_TRUE(e.jobs.empty());
}

// In a token role a HELLO that no token, pin or registered key could authorise is
// refused at once: a flood of invented names queues nothing.
TEST(Enrolment, ATokenRoleRefusesAtHelloWhatNothingCouldAuthorise) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  client::hop_handshake bare(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "");
  e.hello(bare, b("r1"));
  auto refused = session::decode_refused(e.last_body(b("r1"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::not_authorised);
  // A token for another name proves nothing for this one.
  const secret_bytes someone_elses = e.issue_token("debugger-2", "DEBUGGER");
  client::hop_handshake wrong(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &someone_elses);
  e.hello(wrong, b("r2"));
  refused = session::decode_refused(e.last_body(b("r2"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::not_authorised);
  EXPECT_NE(refused->reason.find("token proof matches no usable"), std::string::npos) << refused->reason;
  EXPECT_TRUE(e.jobs.empty());
  EXPECT_EQ(e.enrol->pending(), 0u);
  // The registered key re-enrols without a token (a hop rekey, a restart): credentialed.
  const secret_bytes own = e.issue_token("debugger-1", "DEBUGGER");
  ASSERT_TRUE(e.enrol_with(*key, "debugger-1", b("r3"), &own).ok());
  client::hop_handshake rekey(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "");
  e.hello(rekey, b("r3"));
  ASSERT_EQ(e.jobs.size(), 1u);
  EXPECT_TRUE(e.jobs.front().priority);
}

// First-use handshakes of an open role fill their own pool only: past it they are
// overloaded, while a token holder is admitted and its TPM job runs first.
TEST(Enrolment, AFullOpenPoolLeavesRoomForCredentialedAgents) {
  enrolment_bench e;
  e.pol = open_policy();
  const suite sandbox = *e.pol.suite_for("SANDBOX");
  for (std::size_t i = 0; i < kMaxPendingOpen; ++i) {
    auto key = e.agent_key("box-" + std::to_string(i), "SANDBOX");  // one key holds at most 2 places
    client::hop_handshake hs(*key, sandbox, "box-" + std::to_string(i), "");
    e.hello(hs, b("open-" + std::to_string(i)));
  }
  ASSERT_EQ(e.enrol->pending(), kMaxPendingOpen);
  auto key = e.agent_key("box-x", "SANDBOX");
  client::hop_handshake one_more(*key, sandbox, "box-x", "");
  e.hello(one_more, b("open-x"));
  auto refused = session::decode_refused(e.last_body(b("open-x"), session::frame::kRefused));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, status_code::overloaded);

  auto debugger = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  client::hop_handshake hs(*debugger, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &token);
  e.hello(hs, b("credentialed"));
  EXPECT_EQ(e.enrol->pending(), kMaxPendingOpen + 1);
  ASSERT_EQ(e.jobs.size(), kMaxPendingOpen + 1);
  EXPECT_TRUE(e.jobs.back().priority);
  EXPECT_FALSE(e.jobs.front().priority);
}

TEST(Enrolment, AnExpiredHandshakeIsDroppedAndItsTpmJobSkipped) {
  enrolment_bench e;
  auto key = e.agent_key("debugger-1", "DEBUGGER");
  const secret_bytes token = e.issue_token("debugger-1", "DEBUGGER");
  client::hop_handshake hs(*key, *e.pol.suite_for("DEBUGGER"), "debugger-1", "", &token);
  e.hello(hs, b("r1"));
  ASSERT_EQ(e.jobs.size(), 1u);
  e.enrol->expire(std::chrono::steady_clock::now() + kEnrolmentTimeout + std::chrono::seconds(1));
  EXPECT_EQ(e.enrol->pending(), 0u);
  EXPECT_EQ(e.stats.value("enrolments_total", "timeout"), 1u);
  ASSERT_TRUE(e.jobs.front().cancelled->load()) << "the identity worker skips it";
  e.run_jobs();
  EXPECT_TRUE(e.tx.to(b("r1"), session::frame::kChallenge).empty());
}

// The connection guard's policy: nothing while unauthenticated connections fit the
// budget; past it, victims come from the source holding the most, and within a
// source: the big ones (largest first), then small ones, oldest first: idle past the
// handshake grace, then those that sent a HELLO, then those in their handshake; only
// as many as it takes.
TEST(ConnectionGuard, ShutsTheLargestUnauthenticatedConnectionsUntilTheRestFit) {
  using namespace std::chrono_literals;
  const auto now = std::chrono::steady_clock::now();
  const auto t0 = now - 10s;
  const std::uint64_t k = kConnectionOverhead;
  auto conn = [](int fd, std::uint64_t bytes, std::chrono::steady_clock::time_point at, std::string source = "10.0.0.1",
                 bool admitted = false) { return unauthenticated_connection{fd, bytes, at, std::move(source), admitted}; };
  std::vector<unauthenticated_connection> c = {conn(10, 500, t0), conn(11, 4 << 20, t0 + 1s), conn(12, 500, t0 + 2s),
                                               conn(13, 1 << 20, t0 + 3s), conn(14, 4 << 20, t0 + 4s)};
  const std::uint64_t all = 1000 + (9u << 20) + 5 * k;
  EXPECT_TRUE(choose_shutdowns(c, all, now).empty()) << "exactly at the budget";
  EXPECT_EQ(choose_shutdowns(c, all - 1, now), (std::vector<int>{11})) << "the largest, the older of two";
  EXPECT_EQ(choose_shutdowns(c, all - (4u << 20) - k, now), (std::vector<int>{11})) << "one was enough";
  EXPECT_EQ(choose_shutdowns(c, all - (4u << 20) - k - 1, now), (std::vector<int>{11, 14}));
  EXPECT_EQ(choose_shutdowns(c, 1000 + 2 * k, now), (std::vector<int>{11, 14, 13}));
  EXPECT_EQ(choose_shutdowns(c, 0, now), (std::vector<int>{11, 14, 13, 10, 12})) << "then the small, oldest first";
  EXPECT_TRUE(choose_shutdowns({}, 0, now).empty());

  // Small ones: idle past the grace, then those that sent a HELLO, then those in their
  // handshake, each oldest first; a young big one goes before all of them.
  std::vector<unauthenticated_connection> small = {
      conn(100, 0, t0), conn(101, 0, t0 + 1s), conn(200, 600, now - 10ms), conn(201, 600, now - 20ms),
      conn(300, 5000, now - 500ms, "10.0.0.1", true), conn(301, 5000, now - 3s, "10.0.0.1", true),
      conn(400, 1 << 20, now - 5ms)};
  EXPECT_EQ(choose_shutdowns(small, 0, now), (std::vector<int>{400, 100, 101, 301, 300, 201, 200}));

  // Two sources: the flooding one loses its connections first, although the other's
  // single connection is the largest.
  std::vector<unauthenticated_connection> two;
  for (int i = 0; i < 20; ++i) two.push_back(conn(500 + i, 100, t0, "192.0.2.66"));
  two.push_back(conn(600, 200'000, t0, "198.51.100.7", true));
  const std::uint64_t both = 20 * (100 + k) + 200'000 + k;
  auto flood = choose_shutdowns(two, both - 5 * (100 + k), now);
  ASSERT_EQ(flood.size(), 5u);
  for (int fd : flood) EXPECT_LT(fd, 600);
  // Once the flooding source holds less than the other, the other's goes.
  auto deeper = choose_shutdowns(two, 200'000 + k - 1, now);
  EXPECT_NE(std::find(deeper.begin(), deeper.end(), 600), deeper.end());
}

}  // namespace
}  // namespace agentbus::broker
