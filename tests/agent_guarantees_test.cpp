// agent_guarantees_test.cpp — what the agent promises its users, against real broker
// processes and swtpm: nothing accepted is lost silently, refusals are reported and
// counted and logged within limits, handshakes never disturb traffic. Each test
// replays a defect of issue 10 that the previous agent had.
#include <spdlog/spdlog.h>

#include <signal.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"
#include "support/log_capture.hpp"

namespace agentbus {
namespace {

using namespace std::chrono_literals;
using testing::agent_access;
using testing::broker_process;
using testing::connect_agent;
using testing::inbox;
using testing::scoped_temp_dir;
using testing::wait_until;

using testing::text;

using testing::log_capture;

class Guarantees : public testing::broker_test {};

// Handlers slower than the traffic: with max_pending 50 and a 10 ms handler, 500
// sends used to succeed and 446 envelopes vanished after acceptance (stats showed no
// rejection, the sender heard nothing). Now the receiver stops reading while its
// dispatcher is full, and every envelope is delivered.
TEST_F(Guarantees, HandlersSlowerThanTheTrafficLoseNothing) {
  auto& b = broker();
  agent_options slow;
  slow.max_pending = 50;
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR", false, slow);
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  inbox d, m;
  director->on_message([h = d.handler()](const message& msg) {
    std::this_thread::sleep_for(10ms);
    h(msg);
  });
  director->on_rejected(d.rejection_recorder());
  m.attach(*monitor.client);
  constexpr int kMessages = 500;
  for (int i = 0; i < kMessages; ++i)
    ASSERT_TRUE(monitor->send("director-1", "text/plain", text(std::to_string(i))).ok()) << i;
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages; }, 60s))
      << d.count() << " delivered\n" << d.describe() << m.describe();
  std::lock_guard lock(d.mu);
  const auto& got = d.messages;
  for (int i = 0; i < kMessages; ++i)
    ASSERT_EQ(std::string(got[i].header.payload.begin(), got[i].header.payload.end()), std::to_string(i)) << "order";
  EXPECT_TRUE(d.rejections.empty());
  EXPECT_EQ(m.rejected(), 0u) << m.describe();
  EXPECT_EQ(director->stats().dispatch_dropped, 0u);
  EXPECT_EQ(director->stats().rejected_at_receive, 0u);
}

// A fan-out wire batch that reaches an agent while its hop rekey waits for the
// broker's CHALLENGE used to be taken for the CHALLENGE: the rekey failed, the batch
// was lost unreported and the broker kept a half enrolment. The io thread now only
// hands handshake frames to the link worker; everything else is handled as usual.
// The broker's swtpm is stopped while the rekey waits, so the batch surely arrives
// before the CHALLENGE (which the broker's TPM signs).
TEST_F(Guarantees, AWireBatchArrivingWhileAHopRekeyWaitsIsDelivered) {
  broker_process::options o;
  o.extra_sections = "[sessions]\nrekey_after_messages = 8\nrekey_after_seconds = 3600\nrekey_grace_seconds = 30\n";
  auto& b = broker(o);
  agent_options batching;
  batching.batch_signing = true;
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, batching);
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);
  ASSERT_GT(b.tpm_pid(), 0);
  // The director's session offer and 8 envelopes: its hop is due for a rekey, which
  // starts while the broker cannot sign its CHALLENGE.
  ::kill(b.tpm_pid(), SIGSTOP);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(director->send("monitor-1", "text/plain", text("d" + std::to_string(i))).ok());
  ASSERT_TRUE(wait_until([&] { return m.count() == 8; })) << m.describe();
  std::this_thread::sleep_for(300ms);  // the rekey's HELLO is out; the broker's signature waits
  // Four envelopes in one signed batch and one wire batch (the monitor's hop stays
  // below its own rekey: its acceptance and these four).
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(monitor->send("director-1", "text/plain", text("m" + std::to_string(i))).ok());
  const bool early = wait_until([&] { return d.count() == 4; }, 2s);
  ::kill(b.tpm_pid(), SIGCONT);
  EXPECT_TRUE(early) << "the wire batch waited for the rekey (or was lost): " << d.count() << "\n" << d.describe();
  ASSERT_TRUE(wait_until([&] { return d.count() == 4 && director->stats().hop_rekeys >= 1; }, 20s))
      << d.count() << " delivered, " << director->stats().hop_rekeys << " rekeys\n" << d.describe();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
  EXPECT_EQ(m.rejected(), 0u) << m.describe();
  EXPECT_GE(monitor->stats().batch_roots, 1u);
}

// An acceptance that could not be queued (the outbound queue full) used to install
// its keys all the same: the responder then MACed with keys the initiator never got
// (bad_mac there). Now it installs nothing and reports the failure; the session in
// force stays in force.
TEST_F(Guarantees, AnAcceptanceThatCannotBeQueuedInstallsNoKeys) {
  auto& b = broker();
  agent_options initiator_opts;
  initiator_opts.rekey_after_messages = 3;  // the director's 4th send offers a rekey
  initiator_opts.session_timeout = 1s;
  agent_options responder_opts;
  responder_opts.max_pending = 4;
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR", false, initiator_opts);
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR", false, responder_opts);
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(director->send("monitor-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return m.count() == 3; })) << m.describe();

  // The monitor's queue held and full: its acceptance of the rekey cannot leave.
  agent_access::hold_outbound(*monitor.client, true);
  int queued = 0;
  while (agent_access::send_frames(*monitor.client, {text("JUNK")}).ok()) ++queued;
  ASSERT_EQ(queued, 4);
  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("under the old keys")).ok());
  ASSERT_TRUE(wait_until([&] { return m.count() == 4 && monitor->stats().failed_at_sender >= 1; }))
      << m.count() << "\n" << m.describe();
  EXPECT_TRUE(m.has_rejection(status_code::overloaded, "sender")) << m.describe();
  EXPECT_EQ(monitor->stats().rekeys, 0u) << "keys installed for an acceptance that never left";
  agent_access::hold_outbound(*monitor.client, false);
  ASSERT_TRUE(wait_until([&] { return agent_access::outbound_empty(*monitor.client); }));

  // The monitor MACs under the session both sides hold: delivered, not bad_mac.
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("after")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; })) << d.describe();
  EXPECT_EQ(d.rejected(), 0u) << d.describe();
}

// Handlers may send (agent.hpp). A handler sending to a peer it had no session with
// used to wait session_timeout and fail no_session: the acceptance it waited for was
// completed on the dispatch thread, queued behind that very handler. Session jobs now
// run on a thread of their own.
TEST_F(Guarantees, AHandlerCanSendToAPeerItHasNoSessionWithYet) {
  auto& b = broker();
  auto director = connect_agent(b, dir_.path(), "director-1", "DIRECTOR");
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto architect = connect_agent(b, dir_.path(), "architect-1", "ARCHITECT");
  inbox a, d;
  a.attach(*architect.client);
  director->on_rejected(d.rejection_recorder());
  std::mutex mu;
  std::optional<status> forwarded;
  director->on_message([&](const message& m) {
    status st = director->send("architect-1", "text/plain", m.header.payload);  // no session with architect-1 yet
    std::lock_guard lock(mu);
    forwarded = st;
  });
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("pass it on")).ok());
  ASSERT_TRUE(wait_until([&] { return a.count() == 1; }, 20s)) << a.describe() << d.describe();
  std::lock_guard lock(mu);
  ASSERT_TRUE(forwarded.has_value());
  EXPECT_TRUE(forwarded->ok()) << forwarded->to_string();
  EXPECT_EQ(a.rejected(), 0u) << a.describe();
}

// After a broker restart the agent re-enrols and subscribes again. A re-subscription
// the (restarted, re-configured) broker refuses used to vanish: the handler stayed,
// nothing ever arrived, nobody was told. Now it is reported and the handler removed.
TEST_F(Guarantees, AReSubscriptionRefusedAfterABrokerRestartIsReported) {
  const auto policy_file = dir_.path() / "broker-policy.toml";
  const std::string original = testing::read_text(testing::source_dir() / "config" / "policy.toml");
  testing::write_text(policy_file, original);
  broker_process::options o;
  o.policy_file = policy_file;
  auto& b = broker(o);
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  inbox m;
  m.attach(*monitor.client);
  ASSERT_TRUE(monitor->subscribe("metrics/cpu", m.handler()).ok());

  b.stop();
  std::string narrowed = original;
  const std::string from = "subscribe = [\"directives/>\", \"metrics/>\"]";
  ASSERT_NE(narrowed.find(from), std::string::npos);
  narrowed.replace(narrowed.find(from), from.size(), "subscribe = [\"directives/>\"]");
  testing::write_text(policy_file, narrowed);
  b.start();

  ASSERT_TRUE(wait_until([&] { return m.has_rejection(status_code::acl_denied, "broker"); }, 20s)) << m.describe();
  std::lock_guard lock(m.mu);
  bool named = false;
  for (const auto& r : m.rejections) named = named || (r.recipient == "metrics/cpu" && r.reason.code() == status_code::acl_denied);
  EXPECT_TRUE(named);
  EXPECT_GE(monitor->stats().reenrolments, 1u);
}

// Receiver-side refusals used to be logged one line each, unthrottled (a peer could
// flood the receiver's log). Now a burst per reason per second, then a count.
TEST_F(Guarantees, ReceiverRefusalsAreReportedEachButLoggedWithinALimit) {
  broker_process::options o;
  o.permissive = true;  // forwards what its ACL would refuse: the receiver must
  auto& b = broker(o);
  auto monitor = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");
  auto debugger = connect_agent(b, dir_.path(), "debugger-1", "DEBUGGER", /*software=*/true);
  inbox g;
  g.attach(*debugger.client);
  log_capture logs;
  const auto started = std::chrono::steady_clock::now();
  constexpr int kMessages = 300;  // MONITOR may not send to DEBUGGER: each is refused acl_denied
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(monitor->send("debugger-1", "text/plain", text("x")).ok()) << i;
  ASSERT_TRUE(wait_until([&] { return g.rejected() == kMessages; }, 30s)) << g.rejected();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(g.count(), 0u);
  EXPECT_EQ(debugger->stats().rejected_at_receive, static_cast<std::uint64_t>(kMessages));
  const std::size_t lines = logs.lines_with("receiver refused an envelope");
  EXPECT_GE(lines, 1u);
  EXPECT_LE(lines, static_cast<std::size_t>(10 * (seconds + 2))) << "over " << seconds << " s";
}

// A TPM identity whose static ECDH key cannot be loaded used to run its handshakes
// without the TPM share, silently. Now it is logged and counted; traffic still flows.
TEST_F(Guarantees, AStaticEcdhKeyThatCannotBeLoadedIsLoggedAndCounted) {
  auto& b = broker();
  const auto pol = std::make_shared<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml"));
  testing::test_identity id = testing::make_identity(dir_.path() / "monitor-1", "MONITOR", false, *pol);
  testing::write_text(dir_.path() / "monitor-1" / "ecdh-P-256.pub", "not a TPM2B_PUBLIC");
  testing::write_text(dir_.path() / "monitor-1" / "ecdh-P-256.priv", "not a TPM2B_PRIVATE");
  log_capture logs;
  agent_options opts;
  opts.name = "monitor-1";
  opts.broker_endpoint = b.endpoint();
  b.prepare(opts, "MONITOR", *id.key);
  agent monitor(opts, id.key, pol);
  auto optimizer = connect_agent(b, dir_.path(), "optimizer-1", "OPTIMIZER");
  inbox o;
  o.attach(*optimizer.client);
  ASSERT_TRUE(monitor.send("optimizer-1", "text/plain", text("over P-256")).ok());
  ASSERT_TRUE(wait_until([&] { return o.count() == 1; })) << o.describe();
  EXPECT_GE(monitor.stats().static_ecdh_failures, 2u) << "the hop and the session both went without it";
  EXPECT_GE(logs.lines_with("no static ECDH key on P-256"), 1u);
  EXPECT_EQ(o.rejected(), 0u) << o.describe();
}

}  // namespace
}  // namespace agentbus
