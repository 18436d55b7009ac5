// The trust graph against a live broker: agentbus-trust online, revocation end to
// end, key change refused until approved, unsigned or unauthorised changes refused,
// everything surviving a broker killed with SIGKILL.
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <atomic>
#include <thread>

#include "../broker/admin_protocol.hpp"
#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"
#include "support/log_capture.hpp"

namespace agentbus {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::broker_process;
using testing::connect_agent;
using testing::run_command;
using testing::shell_quote;
using testing::wait_until;

using testing::text;

class TrustOnline : public ::testing::Test {
 protected:
  void SetUp() override {
    // An operator key (software identity) listed in the broker's policy.
    op_ = testing::make_identity(dir_.path() / "operator", "DEBUGGER", /*software=*/true);
    std::string pol = testing::read_text(testing::source_dir() / "config" / "policy.toml");
    // MONITOR enrols first-come here: the approve flow is for open roles (token roles
    // rotate by token, and record no pending key).
    const std::string monitor = "[roles.MONITOR]\n";
    pol.replace(pol.find(monitor), monitor.size(), monitor + "enrolment = \"open\"\n");
    pol += "\n[operators.ops]\nfingerprint = \"" + op_.key->metadata().fingerprint + "\"\n";
    testing::write_text(dir_.path() / "policy.toml", pol);
    policy_ = std::make_shared<policy>(policy::load_file(dir_.path() / "policy.toml"));
    broker_process::options o;
    o.policy_file = dir_.path() / "policy.toml";
    broker_ = std::make_unique<broker_process>(o);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- broker log ----\n" << broker_->log();
  }

  testing::command_result trust(const std::string& args) {
    return run_command(shell_quote((testing::binary_dir() / "tools" / "agentbus-trust").string()) + " --admin " +
                       shell_quote(broker_->admin_endpoint()) + " --policy " +
                       shell_quote((dir_.path() / "policy.toml").string()) + " " + args);
  }
  json trust_json(const std::string& args) {
    auto r = trust(args + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json::parse(r.output);
  }
  // options_for: how a test's own agent object reaches this broker as `name`.
  agent_options options_for(const std::string& name) const {
    agent_options o;
    o.name = name;
    o.broker_endpoint = broker_->endpoint();
    o.broker_fingerprint = broker_->fingerprint();
    return o;
  }
  // present_changed_key: `id` enrols as `name`, which the registry holds with another
  // key: refused key_changed and (MONITOR being an open role here) recorded as the
  // name's pending key, whose fingerprint it returns.
  std::string present_changed_key(const testing::test_identity& id, const std::string& name) {
    try {
      agentbus::agent refused(options_for(name), id.key, policy_);
      ADD_FAILURE() << "a changed key was accepted before approval";
    } catch (const enrolment_error& e) {
      EXPECT_EQ(e.code(), status_code::key_changed) << e.what();
    }
    return trust_json("show " + name)["agent"]["pending_fingerprint"].get<std::string>();
  }
  testing::command_result approve(const std::string& name, const std::string& fingerprint) {
    return trust("approve " + name + " --fingerprint " + fingerprint + " --operator-key " +
                 shell_quote((dir_.path() / "operator").string()));
  }
  testing::bus_agent agent(const std::string& name, const std::string& role) {
    return connect_agent(*broker_, dir_.path() / "agents" / std::to_string(++n_), name, role, false, {}, policy_);
  }

  testing::scoped_temp_dir dir_;
  testing::test_identity op_;
  std::shared_ptr<policy> policy_;
  std::unique_ptr<broker_process> broker_;
  int n_ = 0;
};

TEST_F(TrustOnline, AgentsAndEdgesAsJsonTablesDotAndPng) {
  auto director = agent("director-1", "DIRECTOR");
  auto monitor = agent("monitor-1", "MONITOR");
  std::atomic<int> got{0};
  director->on_message([&](const message&) { ++got; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(monitor->send("director-1", "text/plain", text("x")).ok());
  ASSERT_TRUE(wait_until([&] { return got == 3; }));

  json agents = trust_json("agents");
  ASSERT_EQ(agents.size(), 2u) << agents.dump(2);
  for (const auto& a : agents) {
    EXPECT_EQ(a["protection"], "tpm");
    EXPECT_TRUE(a["online"].get<bool>());
    EXPECT_EQ(a["tpm_manufacturer"], "IBM");
  }
  EXPECT_EQ(agents[0]["name"], "director-1");
  EXPECT_EQ(agents[0]["suite"], "rsa3072-pss-sha384");
  EXPECT_EQ(agents[1]["suite"], "ecdsa-p256-sha256");

  // The edge and its traffic appear once the broker's one-second flush has run.
  ASSERT_TRUE(wait_until([&] {
    json edges = trust_json("edges");
    return edges.size() == 1 && edges[0]["messages_a_to_b"].get<std::uint64_t>() + edges[0]["messages_b_to_a"].get<std::uint64_t>() == 3;
  }, 5s)) << trust("edges --json").output;
  json edges = trust_json("edges");
  EXPECT_EQ(edges[0]["curve"], "P-384");  // the stronger role's curve (DIRECTOR)

  auto table = trust("agents");
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.output.find("director-1"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("rsa3072-pss-sha384"), std::string::npos) << table.output;

  testing::write_text(dir_.path() / "g.dot", trust("graph --format dot").output);
  auto svg = run_command("dot -Tsvg " + shell_quote((dir_.path() / "g.dot").string()) + " -o /dev/null");
  EXPECT_EQ(svg.exit_code, 0) << svg.output << testing::read_text(dir_.path() / "g.dot");
  auto png = trust("graph --png " + shell_quote((dir_.path() / "g.png").string()));
  ASSERT_EQ(png.exit_code, 0) << png.output;
  std::string bytes_png = testing::read_text(dir_.path() / "g.png");
  ASSERT_GT(bytes_png.size(), 8u);
  EXPECT_EQ(bytes_png.substr(1, 3), "PNG");
}

TEST_F(TrustOnline, RevocationTakesEffectAtOnceAndPersists) {
  auto director = agent("director-1", "DIRECTOR");
  auto monitor = agent("monitor-1", "MONITOR");
  std::atomic<int> got{0};
  std::atomic<int> refused_revoked{0};
  director->on_message([&](const message&) { ++got; });
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return got == 1; }));

  auto r = trust("revoke monitor-1 --reason 'key compromised' --operator-key " +
                 shell_quote((dir_.path() / "operator").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Its next envelope goes nowhere; the director refuses it even directly.
  (void)monitor->send("director-1", "text/plain", text("after"));
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(got.load(), 1) << "a revoked agent's envelope was delivered";
  status st = director->send("monitor-1", "text/plain", text("to a revoked agent"));
  EXPECT_EQ(st.code(), status_code::revoked_agent) << st.to_string();

  json shown = trust_json("show monitor-1");
  EXPECT_TRUE(shown["agent"]["revoked"].get<bool>()) << shown.dump(2);
  EXPECT_EQ(shown["agent"]["revoked_reason"], "key compromised");
  json edges = trust_json("edges");
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_TRUE(edges[0]["revoked"].get<bool>());

  // Killed without warning and restarted: the revocation is still there.
  broker_->stop(SIGKILL);
  broker_->start();
  try {
    auto again = connect_agent(*broker_, dir_.path() / "agents" / "after-restart", "monitor-1", "MONITOR", false, {}, policy_);
    ADD_FAILURE() << "a revoked agent enrolled again after a restart";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::revoked_agent) << e.what();
  }
}

TEST_F(TrustOnline, ChangedKeyIsRefusedUntilAnOperatorApprovesIt) {
  { auto first = agent("monitor-1", "MONITOR"); }
  // A new key (its own TPM) under the same name.
  auto second = testing::make_identity(dir_.path() / "second", "MONITOR", false, *policy_);
  const std::string pending = present_changed_key(second, "monitor-1");
  EXPECT_EQ(pending, second.key->metadata().fingerprint);

  auto wrong = approve("monitor-1", std::string(64, 'a'));
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;
  const agent_options o = options_for("monitor-1");
  EXPECT_THROW(agentbus::agent(o, second.key, policy_), enrolment_error);

  auto ok = approve("monitor-1", pending);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  agentbus::agent approved(o, second.key, policy_);  // enrols now
  EXPECT_EQ(trust_json("show monitor-1")["agent"]["fingerprint"], second.key->metadata().fingerprint);
}

// Issue 11's last finding, replayed: after an operator approves a changed key, the
// peers that kept running learn it (the broker's key_changed notice) and traffic goes
// on. The director sends to monitor-1 throughout (before, during and after the
// change): every send it made is delivered (to the old key or the new) or reported to
// it with a typed code, none is refused wrong_key, the new key's envelopes are
// accepted, and the old key is refused afterwards under its name.
TEST_F(TrustOnline, AnApprovedKeyChangeReachesRunningPeersWhileTrafficFlows) {
  auto director = agent("director-1", "DIRECTOR");
  testing::inbox d;
  d.attach(*director.client);
  auto old_monitor = agent("monitor-1", "MONITOR");
  testing::inbox m1;
  m1.attach(*old_monitor.client);
  ASSERT_TRUE(old_monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; })) << d.describe();

  std::atomic<bool> stop{false};
  std::atomic<int> accepted{0}, refused_at_send{0};
  std::thread ticker([&] {
    while (!stop) {
      if (director->send("monitor-1", "text/plain", text("tick")).ok()) ++accepted;
      else ++refused_at_send;  // typed, to the caller: not accepted
      std::this_thread::sleep_for(20ms);
    }
  });
  ASSERT_TRUE(wait_until([&] { return m1.count() >= 3; })) << "traffic flows before the change";

  auto second = testing::make_identity(dir_.path() / "second", "MONITOR", false, *policy_);
  const std::string pending = present_changed_key(second, "monitor-1");
  ASSERT_EQ(pending, second.key->metadata().fingerprint);
  auto ok = approve("monitor-1", pending);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  const agent_options o = options_for("monitor-1");
  agentbus::agent new_monitor(o, second.key, policy_);  // takes the name over from the running old key
  testing::inbox m2;
  m2.attach(new_monitor);
  ASSERT_TRUE(new_monitor.send("director-1", "text/plain", text("after")).ok());
  EXPECT_TRUE(wait_until([&] { return d.count() == 2; })) << "the director accepts the new key: " << d.describe();
  EXPECT_TRUE(wait_until([&] { return m2.count() >= 3; })) << "the director's traffic reaches the new key";
  stop = true;
  ticker.join();

  // Every accepted send was delivered or reported (at most the last few are in flight).
  EXPECT_TRUE(wait_until([&] {
    return static_cast<int>(m1.count() + m2.count() + d.rejections_of(status_code::not_deliverable, "broker") +
                            d.rejections_of(status_code::timeout, "broker")) >= accepted.load();
  })) << "accepted " << accepted << ", delivered " << m1.count() << " + " << m2.count() << ", reported: "
      << d.describe();
  EXPECT_EQ(d.rejections_of(status_code::wrong_key, "receiver") + d.rejections_of(status_code::wrong_key, "sender"), 0u)
      << d.describe();
  EXPECT_EQ(m2.rejected(), 0u) << m2.describe();
  std::cerr << "ticks: " << accepted << " accepted (" << m1.count() << " to the old key, " << m2.count()
            << " to the new), " << refused_at_send << " refused at send\n";

  // The old key is the name's no more: what it sends is not delivered, and it cannot
  // enrol again (superseded keys are revoked).
  (void)old_monitor->send("director-1", "text/plain", text("from the old key"));
  std::this_thread::sleep_for(1000ms);
  EXPECT_EQ(d.count(), 2u) << "an envelope of the old key was delivered";
  try {
    agentbus::agent old_again(o, old_monitor.id.key, policy_);
    ADD_FAILURE() << "the rotated-out key enrolled again";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::revoked_key) << e.what();
  }
}

// The operator's path end to end: `agentbus-trust token create --out` writes the
// bundle, the agent enrols from it (the broker pinned, the token sealed), the token
// is spent; a revoked key is then refused under a new name (revoked_key) and the
// registry holds no row for it.
TEST_F(TrustOnline, AnAgentEnrolsFromTheBundleAnOperatorIssued) {
  const std::string op_key = shell_quote((dir_.path() / "operator").string());
  auto id = testing::make_identity(dir_.path() / "director-9", "DIRECTOR", false, *policy_);
  const auto bundle = dir_.path() / "director-9.bundle";
  auto created = trust("token create director-9 --role DIRECTOR --ttl 600 --endpoint " + shell_quote(broker_->endpoint()) +
                       " --out " + shell_quote(bundle.string()) + " --operator-key " + op_key);
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_EQ(std::filesystem::status(bundle).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto again = trust("token create director-9 --role DIRECTOR --out " + shell_quote(bundle.string()) + " --operator-key " + op_key);
  EXPECT_NE(again.exit_code, 0) << "a bundle is never overwritten";

  agent_options o;
  EXPECT_EQ(load_enrolment_bundle(bundle, o), "DIRECTOR");
  EXPECT_EQ(o.broker_endpoint, broker_->endpoint());
  EXPECT_EQ(o.broker_fingerprint, broker_->fingerprint());
  json tokens = trust_json("token list");
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_TRUE(tokens[0]["used_at"].is_null());
  {
    agentbus::agent director(o, id.key, policy_);
    EXPECT_FALSE(trust_json("token list")[0]["used_at"].is_null()) << "spent";
  }
  // The same bundle for another key: the token is spent.
  auto thief = testing::make_identity(dir_.path() / "thief", "DIRECTOR", false, *policy_);
  try {
    agentbus::agent stolen(o, thief.key, policy_);
    ADD_FAILURE() << "a spent token enrolled another key";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::not_authorised) << e.what();
  }

  auto revoked = trust("revoke-key " + id.key->metadata().fingerprint + " --reason 'laptop stolen' --operator-key " + op_key);
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_TRUE(trust_json("show director-9")["agent"]["revoked"].get<bool>());
  agent_options renamed = o;
  renamed.name = "director-10";
  renamed.enrolment_token = broker_->issue_token("director-10", "DIRECTOR");
  try {
    agentbus::agent again_as(renamed, id.key, policy_);
    ADD_FAILURE() << "a revoked key enrolled under a new name";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::revoked_key) << e.what();
  }
  EXPECT_NE(trust("show director-10").exit_code, 0) << "no registry row for the refused name";
}

// Enrolment refuses an unpinned broker unless the agent opts out, loudly.
TEST_F(TrustOnline, AnAgentRefusesAnUnpinnedBroker) {
  auto id = testing::make_identity(dir_.path() / "m", "MONITOR", false, *policy_);
  agent_options o;
  o.name = "monitor-7";
  o.broker_endpoint = broker_->endpoint();
  EXPECT_THROW(agentbus::agent(o, id.key, policy_), std::invalid_argument);
  o.broker_fingerprint = "not hex";
  EXPECT_THROW(agentbus::agent(o, id.key, policy_), std::invalid_argument);
  o.broker_fingerprint.clear();
  o.insecure_trust_any_broker = true;
  o.enrolment_token = broker_->issue_token("monitor-7", "MONITOR");
  testing::log_capture log;
  agentbus::agent opted_out(o, id.key, policy_);  // enrols, with a critical log line
  EXPECT_EQ(opted_out.name(), "monitor-7");
  EXPECT_GE(log.lines_with("[critical] [monitor-7] enrolling WITHOUT authenticating the broker"), 1u)
      << "the opt-out is logged loudly";
}

TEST_F(TrustOnline, UnsignedOrUnauthorisedChangesAreRefused) {
  auto monitor = agent("monitor-1", "MONITOR");
  auto ask = [&](const std::string& request) {
    zmq::context_t ctx(1);
    zmq::socket_t req(ctx, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    req.set(zmq::sockopt::rcvtimeo, 3000);
    req.connect(broker_->admin_endpoint());
    req.send(zmq::buffer(request), zmq::send_flags::none);
    zmq::message_t reply;
    EXPECT_TRUE(req.recv(reply));
    return json::parse(reply.to_string());
  };
  json unsigned_reply = ask(R"({"op":"revoke","agent":"monitor-1","reason":"no signature"})");
  EXPECT_FALSE(unsigned_reply["ok"].get<bool>()) << unsigned_reply.dump();

  // Signed, but by a key that is not an operator's.
  auto stranger = testing::make_identity(dir_.path() / "stranger", "DEBUGGER", true);
  std::string signed_by_stranger = broker::make_signed_request(
      json{{"op", "revoke"}, {"agent", "monitor-1"}, {"reason", "not an operator"}}, *stranger.key, "mallory", broker_->fingerprint());
  json stranger_reply = ask(signed_by_stranger);
  EXPECT_FALSE(stranger_reply["ok"].get<bool>());
  EXPECT_EQ(stranger_reply["error"]["code"], "acl_denied") << stranger_reply.dump();

  // A genuine operator request replayed is refused the second time.
  std::string genuine = broker::make_signed_request(
      json{{"op", "reset_counters"}, {"agent", "monitor-1"}}, *op_.key, "ops", broker_->fingerprint());
  EXPECT_TRUE(ask(genuine)["ok"].get<bool>());
  json replayed = ask(genuine);
  EXPECT_EQ(replayed["error"]["code"], "replayed") << replayed.dump();

  // None of the refused requests changed anything.
  json shown = trust_json("show monitor-1");
  EXPECT_FALSE(shown["agent"]["revoked"].get<bool>());
  EXPECT_TRUE(trust_json("agents")[0]["online"].get<bool>());
}

TEST_F(TrustOnline, BrokerDownAndMissingDatabaseGiveClearErrors) {
  auto down = run_command(shell_quote((testing::binary_dir() / "tools" / "agentbus-trust").string()) +
                          " --admin ipc:///nonexistent/agentbus/admin.sock agents");
  EXPECT_EQ(down.exit_code, 3) << down.output;
  auto missing = run_command(shell_quote((testing::binary_dir() / "tools" / "agentbus-trust").string()) +
                             " --db /nonexistent/registry.db agents");
  EXPECT_EQ(missing.exit_code, 4) << missing.output;
  // Offline from the live broker's database (read-only, WAL readers do not block it).
  auto offline = run_command(shell_quote((testing::binary_dir() / "tools" / "agentbus-trust").string()) + " --db " +
                             shell_quote((broker_->dir() / "state" / "registry.db").string()) + " agents --json");
  EXPECT_EQ(offline.exit_code, 0) << offline.output;
}

}  // namespace
}  // namespace agentbus
