// The bus end to end: real agentbus-broker processes, real ZeroMQ sockets, one
// swtpm per agent identity.
#include <signal.h>

#include <atomic>
#include <cctype>
#include <sstream>
#include <mutex>
#include <random>
#include <thread>
#include <zmq.hpp>

#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "session/handshake.hpp"
#include "session/session_keys.hpp"
#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"

namespace agentbus {
namespace {

using namespace std::chrono_literals;
using testing::broker_process;
using testing::bus_agent;
using testing::connect_agent;
using testing::scoped_temp_dir;
using testing::wait_until;

using testing::text;
std::string text_of(const bytes& b) { return std::string(b.begin(), b.end()); }

using testing::inbox;

class Bus : public testing::broker_test {};

TEST_F(Bus, DirectMessagesForAllThreeSignatureFamilies) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto architect = connect_agent(b, dir_.path(), "architect-1", "ARCHITECT");
  inbox d, m, a;
  d.attach(*director.client);
  m.attach(*monitor.client);
  a.attach(*architect.client);

  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("from the director")).ok());   // RSA-3072-PSS
  ASSERT_TRUE(monitor->send("architect-1", "text/plain", text("from the monitor")).ok());   // ECDSA P-256
  ASSERT_TRUE(architect->send("director-1", "text/plain", text("from the architect")).ok());  // ECDSA P-384/SHA3
  ASSERT_TRUE(wait_until([&] { return d.count() == 1 && m.count() == 1 && a.count() == 1; })) << d.describe() << m.describe();

  EXPECT_EQ(text_of(m.messages[0].header.payload), "from the director");
  EXPECT_EQ(m.messages[0].sender_role, "DIRECTOR");
  EXPECT_EQ(m.messages[0].header.suite, "rsa3072-pss-sha384");
  EXPECT_EQ(m.messages[0].level, assurance::tpm);
  EXPECT_EQ(a.messages[0].header.suite, "ecdsa-p256-sha256");
  EXPECT_EQ(d.messages[0].header.suite, "ecdsa-p384-sha3-384");
  EXPECT_EQ(d.rejected() + m.rejected() + a.rejected(), 0u) << d.describe() << m.describe() << a.describe();
  // Every agent has a TPM, so every session's keys mix a TPM ECDH_ZGen.
  for (const auto* x : {&director, &monitor, &architect}) {
    EXPECT_EQ((*x)->stats().sessions, 2u);
    EXPECT_EQ((*x)->stats().tpm_ecdh_sessions, 2u);
  }
}

TEST_F(Bus, SoftwareAgentsTalkWithEphemeralEcdhOnlyAndAreFlagged) {
  auto& b = broker();
  auto one = connect_agent(b, dir_.path(), "debugger-1", "DEBUGGER", /*software=*/true);
  auto two = connect_agent(b, dir_.path(), "debugger-2", "DEBUGGER", /*software=*/true);
  inbox t;
  t.attach(*two.client);
  ASSERT_TRUE(one->send("debugger-2", "text/plain", text("software to software")).ok());
  ASSERT_TRUE(wait_until([&] { return t.count() == 1; })) << t.describe();
  EXPECT_EQ(t.messages[0].level, assurance::software);
  EXPECT_EQ(t.messages[0].sender_protection, protection::software);
  EXPECT_EQ(one->stats().sessions, 1u);
  EXPECT_EQ(one->stats().tpm_ecdh_sessions, 0u);
}

TEST_F(Bus, TopicDeliversToEverySubscriberWithItsOwnMac) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto architect = connect_agent(b, dir_.path(), "architect-1", "ARCHITECT");
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  inbox d, a, m;
  d.attach(*director.client);
  a.attach(*architect.client);
  m.attach(*monitor.client);
  ASSERT_TRUE(director->subscribe("metrics/cpu", d.handler()).ok());
  ASSERT_TRUE(architect->subscribe("metrics/cpu", a.handler()).ok());
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(monitor->publish("metrics/cpu", "application/json", text("{\"cpu\":" + std::to_string(i) + "}")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 5 && a.count() == 5; })) << d.describe() << a.describe() << m.describe();
  EXPECT_EQ(d.messages[4].header.to, "metrics/cpu");
  EXPECT_EQ(d.messages[4].header.to_kind, recipient_kind::topic);
  EXPECT_EQ(d.rejected() + a.rejected() + m.rejected(), 0u) << d.describe() << a.describe() << m.describe();
}

TEST_F(Bus, SubscribingOutsideTheAclIsRefused) {
  auto& b = broker();
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  status st = monitor->subscribe("design/updates", [](const message&) {});
  EXPECT_EQ(st.code(), status_code::acl_denied) << st.to_string();
  EXPECT_TRUE(monitor->subscribe("metrics/cpu", [](const message&) {}).ok());
}

TEST_F(Bus, RequestReply) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto architect = connect_agent(b, dir_.path(), "architect-1", "ARCHITECT");
  architect->on_request([](const message& m) -> std::optional<bytes> { return text("plan for " + text_of(m.header.payload)); });
  auto reply = director->request("architect-1", "text/plain", text("bridge"), 5s);
  ASSERT_TRUE(reply.ok()) << reply.error().to_string();
  EXPECT_EQ(text_of(reply->header.payload), "plan for bridge");
  EXPECT_EQ(reply->header.type, envelope_type::reply);
  EXPECT_EQ(reply->sender_role, "ARCHITECT");
}

// ---- refusals at publish (broker) -----------------------------------------

struct broker_refusal_case {
  const char* name;
  status_code expected;
  std::function<status(agent&)> misbehave;
};

class BrokerRefusal : public Bus, public ::testing::WithParamInterface<broker_refusal_case> {};

TEST_P(BrokerRefusal, IsTypedCountedAndHarmlessToOtherTraffic) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto rogue = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto debugger = connect_agent(b, dir_.path(), "debugger-1", "DEBUGGER", /*software=*/true);
  inbox d, r;
  d.attach(*director.client);
  r.attach(*rogue.client);
  ASSERT_TRUE(rogue->send("director-1", "text/plain", text("honest first")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; }));

  status sent = GetParam().misbehave(*rogue.client);
  ASSERT_TRUE(sent.ok() || sent.code() == GetParam().expected) << sent.to_string();
  if (sent.ok()) {
    ASSERT_TRUE(wait_until([&] { return r.has_rejection(GetParam().expected, "broker"); })) << r.describe();
  }
  // Nothing reached the director, and honest traffic still flows.
  ASSERT_TRUE(rogue->send("director-1", "text/plain", text("honest again")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 2; })) << d.describe();
  EXPECT_EQ(text_of(d.messages[1].header.payload), "honest again");
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
  auto stats = b.admin("stats");
  EXPECT_NE(stats.find(std::string(status_code_name(GetParam().expected))), std::string::npos) << stats;
}

using tweaks = testing::seal_tweaks;
status tweaked(agent& a, const std::string& to, tweaks t, recipient_kind k = recipient_kind::agent) {
  return testing::agent_access::send_tweaked(a, k, to, "text/plain", text("misbehaving"), t);
}

INSTANTIATE_TEST_SUITE_P(
    Misbehaviour, BrokerRefusal,
    ::testing::Values(
        broker_refusal_case{"WrongSuite", status_code::suite_mismatch,
                            [](agent& a) {
                              tweaks t;
                              t.edit_header = [](envelope_header& h) { h.suite = "rsa3072-pss-sha384"; };
                              return tweaked(a, "director-1", t);
                            }},
        // A sender that hashes under the suite it declares (not its role's): the declared
        // suite is checked before the hop MAC, so it is suite_mismatch, not bad_mac.
        broker_refusal_case{"WrongSuiteAndItsHash", status_code::suite_mismatch,
                            [](agent& a) {
                              tweaks t;
                              t.edit_header = [](envelope_header& h) { h.suite = "ecdsa-p256-sha3-256"; };
                              t.digest_hash = hash_algorithm::sha3_256;
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"Replay", status_code::replayed,
                            [](agent& a) { return testing::agent_access::resend_last(a); }},
        broker_refusal_case{"TamperedPayload", status_code::bad_signature,
                            [](agent& a) {
                              tweaks t;
                              t.edit_after_signing = [](bytes& signed_part) { signed_part[signed_part.size() - 1] ^= 1; };
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"SpoofedSender", status_code::spoofed_sender,
                            [](agent& a) {
                              tweaks t;
                              t.edit_header = [](envelope_header& h) { h.sender = "director-1"; };
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"MissingHopMac", status_code::bad_mac,
                            [](agent& a) {
                              tweaks t;
                              t.omit_hop_mac = true;
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"WrongKeyId", status_code::wrong_key,
                            [](agent& a) {
                              tweaks t;
                              t.edit_auth = [](envelope_auth& auth) { auth.key_id[0] ^= 1; };
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"SoftwareClaimFromTpmKey", status_code::assurance_refused,
                            [](agent& a) {
                              tweaks t;
                              t.edit_auth = [](envelope_auth& auth) { auth.level = assurance::software; };
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"StaleTimestamp", status_code::stale,
                            [](agent& a) {
                              tweaks t;
                              t.edit_header = [](envelope_header& h) { h.timestamp_ms -= 3'600'000; };
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"AclDirect", status_code::acl_denied,
                            [](agent& a) {
                              // MONITOR may not send to DEBUGGER (a session could not be set up
                              // either): readdress a sealed envelope.
                              tweaks t;
                              t.edit_header = [](envelope_header& h) { h.to = "debugger-1"; };
                              return tweaked(a, "director-1", t);
                            }},
        broker_refusal_case{"AclTopic", status_code::acl_denied,
                            [](agent& a) {
                              tweaks t;  // MONITOR may not publish directives
                              return testing::agent_access::send_tweaked(a, recipient_kind::topic, "directives/all",
                                                                     "text/plain", text("x"), t);
                            }},
        broker_refusal_case{"UnknownRecipient", status_code::not_deliverable,
                            [](agent& a) {
                              tweaks t;
                              t.edit_header = [](envelope_header& h) { h.to = "nobody-1"; };
                              return tweaked(a, "director-1", t);
                            }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(Bus, OfflineRecipientIsNotDeliverable) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  inbox d;
  d.attach(*director.client);
  {
    auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
    ASSERT_TRUE(director->send("monitor-1", "text/plain", text("hello")).ok());
  }  // monitor-1 says bye and goes away
  ASSERT_TRUE(wait_until([&] { return b.admin("stats").find("bye") != std::string::npos; }));
  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("anyone?")).ok());  // the session still exists
  ASSERT_TRUE(wait_until([&] { return d.has_rejection(status_code::not_deliverable, "broker"); })) << d.describe();
}

// ---- enrolment refusals ----------------------------------------------------

TEST_F(Bus, EnrolmentRefusesSoftwareKeysForTpmRolesUnknownRolesRevokedAgentsAndChangedKeys) {
  // A policy with a revoked agent and a role the broker's copy lacks.
  std::string base = testing::read_text(testing::source_dir() / "config" / "policy.toml");
  std::string broker_policy = base;
  broker_policy.replace(broker_policy.find("revoked = []"), 12, "revoked = [\"banned-1\"]");
  testing::write_text(dir_.path() / "broker-policy.toml", broker_policy);
  std::string agent_policy = base + "\n[roles.GHOST]\nsuite = \"ecdsa-p256-sha256\"\n";
  testing::write_text(dir_.path() / "agent-policy.toml", agent_policy);
  broker_process::options o;
  o.policy_file = dir_.path() / "broker-policy.toml";
  auto& b = broker(o);
  auto ghost_policy = std::make_shared<policy>(policy::load_file(dir_.path() / "agent-policy.toml"));

  int attempt = 0;
  auto expect_refusal = [&](const std::string& name, const std::string& role, bool software, status_code code,
                            std::shared_ptr<const policy> pol = nullptr) {
    try {
      // Each attempt gets a fresh key directory: a new key each time.
      auto a = connect_agent(b, dir_.path() / std::to_string(++attempt), name, role, software, {}, pol);
      ADD_FAILURE() << name << " was enrolled";
    } catch (const enrolment_error& e) {
      EXPECT_EQ(e.code(), code) << name << ": " << e.what();
    }
  };
  expect_refusal("director-sw", "DIRECTOR", /*software=*/true, status_code::software_key_refused);
  expect_refusal("ghost-1", "GHOST", false, status_code::unknown_role, ghost_policy);
  expect_refusal("banned-1", "MONITOR", false, status_code::revoked_agent);

  { auto first = connect_agent(b, dir_.path(), "monitor-1", "MONITOR"); }  // pinned on first use
  expect_refusal("monitor-1", "MONITOR", false, status_code::key_changed);  // a new key under the same name
  auto stats = b.admin("stats");
  EXPECT_NE(stats.find("key_changed"), std::string::npos) << stats;
  EXPECT_NE(stats.find("software_key_refused"), std::string::npos) << stats;
}

TEST_F(Bus, AgentsPinningTheBrokerKeyRefuseAnotherBroker) {
  auto& b = broker();
  // The broker's fingerprint, as an operator would copy it (upper case is fine).
  std::string fp = identity_key::read_metadata(b.dir() / "key").fingerprint;
  std::string upper = fp;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  agent_options pinned;
  pinned.broker_fingerprint = upper;
  auto ok = connect_agent(b, dir_.path() / "a", "monitor-1", "MONITOR", false, pinned);
  agent_options wrong;
  wrong.broker_fingerprint = std::string(64, '0');
  try {
    auto refused = connect_agent(b, dir_.path() / "b", "monitor-2", "MONITOR", false, wrong);
    ADD_FAILURE() << "an agent enrolled with a broker whose key it does not pin";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::key_changed) << e.what();
  }
}

// Rotation without downtime (issue 11): an operator's token admits a new key for
// monitor-1; director-1, which keeps running, learns it from the broker's key_changed
// notice, and traffic flows both ways under the new key. The old key is refused.
TEST_F(Bus, ARotatedKeyIsLearnedByRunningPeers) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  inbox d;
  d.attach(*director.client);
  auto old_monitor = connect_agent(b, dir_.path() / "v1", "monitor-1", "MONITOR");
  inbox m1;
  m1.attach(*old_monitor.client);
  ASSERT_TRUE(old_monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("to v1")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1 && m1.count() == 1; })) << d.describe() << m1.describe();

  // The new key, admitted by a token (the old process is still running: the new
  // enrolment takes the name over).
  agent_options rotated;
  rotated.enrolment_token = b.issue_token("monitor-1", "MONITOR");
  auto new_monitor = connect_agent(b, dir_.path() / "v2", "monitor-1", "MONITOR", false, rotated);
  inbox m2;
  m2.attach(*new_monitor.client);
  ASSERT_TRUE(new_monitor->send("director-1", "text/plain", text("after")).ok());
  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("to v2")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 2 && m2.count() == 1; })) << d.describe() << m2.describe();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
  EXPECT_EQ(m2.rejected(), 0u) << m2.describe();
  EXPECT_EQ(new_monitor->stats().refused_by_broker, 0u);

  // The old key is no longer the name's: its re-enrolment is refused.
  try {
    agent_options again;
    again.name = "monitor-1";
    again.broker_endpoint = b.endpoint();
    again.broker_fingerprint = b.fingerprint();
    agent old_again(again, old_monitor.id.key, std::make_shared<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml")));
    ADD_FAILURE() << "the rotated-out key enrolled again";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::revoked_key) << e.what() << " (superseded keys are revoked)";
  }
}

TEST_F(Bus, PinnedKeysSurviveABrokerRestart) {
  auto& b = broker();
  { auto first = connect_agent(b, dir_.path(), "monitor-1", "MONITOR"); }
  b.stop();
  b.start();
  try {
    auto impostor = connect_agent(b, dir_.path() / "again", "monitor-1", "MONITOR");
    ADD_FAILURE() << "a new key was accepted for a pinned agent after a restart";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::key_changed) << e.what();
  }
}

// ---- refusals at receive (the library does not trust the broker) ------------

struct receiver_case {
  const char* name;
  status_code expected;
  std::function<status(agent&)> misbehave;
};

class ReceiverRefusal : public Bus, public ::testing::WithParamInterface<receiver_case> {};

TEST_P(ReceiverRefusal, APermissiveBrokerForwardsItAndTheReceiverRefusesIt) {
  broker_process::options o;
  o.permissive = true;
  auto& b = broker(o);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto rogue = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  inbox d;
  d.attach(*director.client);
  ASSERT_TRUE(director->subscribe("directives/all", d.handler()).ok());
  ASSERT_TRUE(rogue->send("director-1", "text/plain", text("honest")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; })) << d.describe();

  ASSERT_TRUE(GetParam().misbehave(*rogue.client).ok());
  ASSERT_TRUE(wait_until([&] { return d.has_rejection(GetParam().expected, "receiver"); })) << d.describe();
  EXPECT_EQ(d.count(), 1u) << "a refused envelope reached the handler";
  EXPECT_EQ(director->stats().rejected_at_receive, 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Misbehaviour, ReceiverRefusal,
    ::testing::Values(
        receiver_case{"TamperedPayload", status_code::bad_signature,
                      [](agent& a) {
                        tweaks t;
                        t.edit_after_signing = [](bytes& s) { s[s.size() - 1] ^= 1; };
                        return tweaked(a, "director-1", t);
                      }},
        receiver_case{"WrongSuite", status_code::suite_mismatch,
                      [](agent& a) {
                        tweaks t;
                        t.edit_header = [](envelope_header& h) { h.suite = "ecdsa-p384-sha3-384"; };
                        return tweaked(a, "director-1", t);
                      }},
        receiver_case{"Replay", status_code::replayed, [](agent& a) { return testing::agent_access::resend_last(a); }},
        receiver_case{"MissingEndToEndMac", status_code::no_session,
                      [](agent& a) {
                        tweaks t;
                        t.omit_e2e_macs = true;
                        return tweaked(a, "director-1", t);
                      }},
        receiver_case{"ForgedEndToEndMac", status_code::bad_mac,
                      [](agent& a) {
                        tweaks t;
                        t.edit_auth = [](envelope_auth& auth) {
                          // Signature intact; the MAC entry will be computed, then we break
                          // it by naming a session that does not exist.
                          auth.e2e_macs.push_back(session_mac{"director-1", bytes(16, 0xee), bytes(32, 0)});
                        };
                        t.omit_e2e_macs = true;
                        return tweaked(a, "director-1", t);
                      }},
        receiver_case{"AclViolation", status_code::acl_denied,
                      [](agent& a) {
                        tweaks t;
                        return testing::agent_access::send_tweaked(a, recipient_kind::topic, "directives/all",
                                                               "text/plain", text("x"), t);
                      }}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- rekeying, restart, hostile traffic ---------------------------------------

TEST_F(Bus, RekeyingUnderTrafficLosesAndRejectsNothing) {
  auto& b = broker();
  agent_options o;
  o.rekey_after_messages = 40;
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, o);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR", false, o);
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);
  constexpr int kMessages = 600;
  for (int i = 0; i < kMessages; ++i)
    ASSERT_TRUE(monitor->send("director-1", "text/plain", text(std::to_string(i))).ok()) << i;
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages; }, 30s)) << d.count() << "\n" << d.describe();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
  EXPECT_EQ(m.rejected(), 0u) << m.describe();
  EXPECT_GE(monitor->stats().rekeys + director->stats().rekeys, 5u);
}

// A session's first envelopes can reach the initiator before it has installed the
// keys: the responder installs right after queueing its acceptance and may send at
// once, while the initiator completes the acceptance on its dispatch thread, here held
// up by a slow handler. They wait for the keys instead of being refused (no_session).
TEST_F(Bus, EnvelopesUnderANewSessionWaitForTheInitiatorToInstallItsKeys) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto architect = connect_agent(b, dir_.path(), "architect-1", "ARCHITECT");
  inbox d, m;
  std::atomic<bool> blocking{false};
  director->on_message([&, h = d.handler()](const message& msg) {
    if (text_of(msg.header.payload) == "block") {
      blocking = true;
      std::this_thread::sleep_for(1500ms);  // the dispatch thread is busy meanwhile
    }
    h(msg);
  });
  director->on_rejected([s = d.st](const rejection& r) {
    std::lock_guard lock(s->mu);
    s->rejections.push_back(r);
  });
  m.attach(*monitor.client);
  ASSERT_TRUE(architect->send("director-1", "text/plain", text("warm")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; })) << d.describe();
  ASSERT_TRUE(architect->send("director-1", "text/plain", text("block")).ok());
  ASSERT_TRUE(wait_until([&] { return blocking.load(); }));

  // director-1 offers monitor-1 a session; completing it waits behind the handler.
  status first_send;
  std::thread initiator([&] { first_send = director->send("monitor-1", "text/plain", text("hello")); });
  ASSERT_TRUE(wait_until([&] { return monitor->stats().sessions >= 1; })) << "monitor-1 did not accept the session";
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("early")).ok());  // under the new keys, at once
  initiator.join();
  EXPECT_TRUE(first_send.ok()) << first_send.to_string();
  ASSERT_TRUE(wait_until([&] { return d.count() == 3; }, 10s)) << d.describe();
  ASSERT_TRUE(wait_until([&] { return m.count() == 1; })) << m.describe();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
  std::lock_guard lock(d.mu);
  EXPECT_EQ(text_of(d.messages.back().header.payload), "early");
}

TEST_F(Bus, AgentsReconnectAfterABrokerRestart) {
  auto& b = broker();
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  inbox d;
  d.attach(*director.client);
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; }));

  b.stop();
  EXPECT_EQ(b.wait_exit(), 0) << "SIGTERM must stop the broker cleanly";
  b.start();
  // Both agents notice (reconnection → ping → unknown_agent) and enrol again; then
  // traffic flows.
  ASSERT_TRUE(wait_until([&] { return monitor->stats().reenrolments >= 1 && director->stats().reenrolments >= 1; }, 15s));
  ASSERT_TRUE(wait_until([&] {
    (void)monitor->send("director-1", "text/plain", text("after"));
    return wait_until([&] { return d.count() >= 2; }, 500ms);
  }, 15s)) << d.describe();
  std::lock_guard lock(d.mu);
  EXPECT_EQ(text_of(d.messages.back().header.payload), "after");
}

// The default agent sends no application pings: only the connection monitor makes a
// silent agent (director-1 never sends) notice a broker killed without warning.
TEST_F(Bus, AgentsWithoutPingsReenrolAfterTheBrokerIsKilledAndRestarted) {
  ASSERT_EQ(agent_options{}.ping_interval.count(), 0) << "this test is about the default: no periodic ping";
  auto& b = broker();
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; }));

  b.stop(SIGKILL);
  b.start();
  ASSERT_TRUE(wait_until([&] { return monitor->stats().reenrolments >= 1 && director->stats().reenrolments >= 1; }, 10s))
      << "monitor " << monitor->stats().reenrolments << ", director " << director->stats().reenrolments;
  ASSERT_TRUE(wait_until([&] {
    (void)monitor->send("director-1", "text/plain", text("after"));
    return wait_until([&] { return d.count() >= 2; }, 500ms);
  }, 15s)) << d.describe();
  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("back")).ok());
  ASSERT_TRUE(wait_until([&] { return m.count() == 1; })) << m.describe();
  {
    std::lock_guard lock(d.mu);
    EXPECT_EQ(text_of(d.messages.back().header.payload), "after");
  }
  // One reconnection, one re-enrolment: nothing kept pinging the new broker.
  EXPECT_EQ(director->stats().reenrolments, 1u);
}

// counter_lines returns the broker's metric lines of one counter family (all labels).
std::string counter_lines(broker_process& b, const std::string& family) {
  std::istringstream in(b.admin("metrics"));
  std::string line, out;
  while (std::getline(in, line))
    if (line.find(family + "{") != std::string::npos) out += line + "\n";
  return out;
}

TEST_F(Bus, AnIdleAgentSendsNothingUnlessItsPingIntervalIsSet) {
  auto& b = broker();
  auto quiet = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  std::this_thread::sleep_for(300ms);  // whatever enrolment left in flight
  const std::string control = counter_lines(b, "control_total"), envelopes = counter_lines(b, "envelopes_total");
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(counter_lines(b, "control_total"), control);
  EXPECT_EQ(counter_lines(b, "envelopes_total"), envelopes);
  EXPECT_EQ(control.find("\"ping\""), std::string::npos) << control;

  agent_options o;
  o.ping_interval = 100ms;
  auto chatty = connect_agent(b, dir_.path(), "director-1", "DIRECTOR", false, o);
  EXPECT_TRUE(wait_until([&] { return counter_lines(b, "control_total").find("\"ping\"") != std::string::npos; }, 5s))
      << counter_lines(b, "control_total");
}

// ZMTP heartbeats: a broker that stops answering without closing its connections
// (frozen with SIGSTOP, as a hung host or a cut link would be) is declared dead by
// ZeroMQ itself, through the agent's own heartbeats or the TTL the broker's carry; the
// DEALER reconnects, and once the broker runs again the monitor's ping has the agent
// re-enrol on the new connection. Without heartbeats the old connection simply
// survives the freeze.
struct freeze_case {
  const char* name;
  int broker_heartbeat_ms;
  std::chrono::milliseconds agent_heartbeat;
  bool reconnects;
};

class BrokerFreeze : public Bus, public ::testing::WithParamInterface<freeze_case> {};

TEST_P(BrokerFreeze, HeartbeatsDropTheSilentConnection) {
  broker_process::options bo;
  bo.extra_limits = "heartbeat_interval_ms = " + std::to_string(GetParam().broker_heartbeat_ms);
  auto& b = broker(std::move(bo));
  agent_options o;
  o.heartbeat_interval = GetParam().agent_heartbeat;
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, o);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR", false, o);
  inbox d;
  d.attach(*director.client);
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; }));
  // libzmq (4.3.4) arms the TTL timer when a PING arrives and cancels it on any other
  // traffic, so a TTL only takes effect when a PING was the last thing received: idle
  // for 5 broker ping intervals first. (The agent's own heartbeats have no such gap,
  // which is why agents heartbeat by default.)
  std::this_thread::sleep_for(500ms);

  ASSERT_EQ(::kill(b.pid(), SIGSTOP), 0);
  std::this_thread::sleep_for(1500ms);  // 5 heartbeat timeouts
  ASSERT_EQ(::kill(b.pid(), SIGCONT), 0);
  if (GetParam().reconnects) {
    ASSERT_TRUE(wait_until([&] { return monitor->stats().reenrolments >= 1 && director->stats().reenrolments >= 1; }, 10s))
        << "monitor " << monitor->stats().reenrolments << ", director " << director->stats().reenrolments;
  } else {
    std::this_thread::sleep_for(1000ms);
    EXPECT_EQ(monitor->stats().reenrolments + director->stats().reenrolments, 0u);
  }
  ASSERT_TRUE(wait_until([&] {
    (void)monitor->send("director-1", "text/plain", text("after"));
    return wait_until([&] { return d.count() >= 2; }, 500ms);
  }, 15s)) << d.describe();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
}

INSTANTIATE_TEST_SUITE_P(
    Liveness, BrokerFreeze,
    ::testing::Values(freeze_case{"AgentHeartbeats", 0, 100ms, true},
                      freeze_case{"BrokerHeartbeatTtl", 100, 0ms, true},
                      freeze_case{"NoHeartbeats", 0, 0ms, false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(Bus, TenThousandMalformedFramesDoNotDisturbLegitimateTraffic) {
  auto& b = broker();
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  inbox d;
  d.attach(*director.client);

  std::atomic<bool> done{false};
  std::thread hostile([&] {
    zmq::context_t ctx(1);
    zmq::socket_t raw(ctx, zmq::socket_type::dealer);
    raw.set(zmq::sockopt::linger, 0);
    raw.set(zmq::sockopt::rcvhwm, 100);
    raw.connect(b.endpoint());
    std::mt19937 rng(42);
    const std::vector<std::string> kinds{"ENV", "CTRL", "HELLO", "PROOF", "WHAT", ""};
    for (int i = 0; i < 10'000; ++i) {
      bytes junk(rng() % 200);
      for (auto& c : junk) c = static_cast<std::uint8_t>(rng());
      const std::string& kind = kinds[i % kinds.size()];
      raw.send(zmq::buffer(kind), zmq::send_flags::sndmore);
      raw.send(zmq::buffer(junk.data(), junk.size()), i % 3 == 0 ? zmq::send_flags::sndmore : zmq::send_flags::none);
      if (i % 3 == 0) raw.send(zmq::buffer(junk.data(), junk.size() / 2), zmq::send_flags::none);
      zmq::message_t drain;
      while (raw.recv(drain, zmq::recv_flags::dontwait)) {
      }
    }
    done = true;
  });
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(monitor->send("director-1", "text/plain", text(std::to_string(i))).ok());
    if (i % 20 == 0) std::this_thread::sleep_for(5ms);
  }
  hostile.join();
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages; }, 30s)) << d.count();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
  // The broker counted the garbage and is still alive.
  auto stats = b.admin("stats");
  EXPECT_NE(stats.find("frames_refused_total"), std::string::npos) << stats;
  EXPECT_TRUE(b.running());
}

}  // namespace
}  // namespace agentbus
