// Hostile peers (issue 12): each case replays an attack against a real broker process
// and checks its budget (docs/threat-model.md) while a legitimate agent keeps
// enrolling and exchanging envelopes.
#include <unistd.h>

#include <zmq.hpp>

#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "admin_protocol.hpp"
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
using testing::inbox;
using testing::wait_until;

bytes text(std::string_view s) { return bytes(s.begin(), s.end()); }

class Hostile : public testing::broker_test {};

// gauge reads one unlabelled series from the broker's Prometheus text.
double gauge(broker_process& b, const std::string& name) {
  const std::string text = b.admin("metrics");
  const std::string prefix = "agentbus_" + name + " ";
  for (std::size_t at = 0; at < text.size();) {
    std::size_t eol = text.find('\n', at);
    if (eol == std::string::npos) eol = text.size();
    if (text.compare(at, prefix.size(), prefix) == 0) return std::stod(text.substr(at + prefix.size(), eol - at - prefix.size()));
    at = eol + 1;
  }
  return -1;
}

// The legitimate agent's check: a director and a monitor exchange an envelope.
void expect_traffic_flows(broker_process& b, const std::filesystem::path& dir, const std::string& suffix) {
  auto director = connect_agent(b, dir / ("d" + suffix), "director-" + suffix, "DIRECTOR");
  auto monitor = connect_agent(b, dir / ("m" + suffix), "monitor-" + suffix, "MONITOR");
  inbox m;
  m.attach(*monitor.client);
  ASSERT_TRUE(director->send("monitor-" + suffix, "text/plain", text("still here")).ok());
  ASSERT_TRUE(wait_until([&] { return m.count() == 1; })) << m.describe();
  EXPECT_EQ(m.rejected(), 0u) << m.describe();
}

// Issue 12, case 3: refusals used to be counted per claimed name, so one connection
// inventing names wrote a registry row each (170,008 rows in 15 s). Enrolment refusals
// now share one row per reason, whatever the names; a legitimate agent enrols meanwhile.
TEST_F(Hostile, Case3RefusedEnrolmentsOfInventedNamesShareOneRegistryRowPerReason) {
  auto& b = broker();
  zmq::context_t ctx(1);
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(b.endpoint());
  const int kNames = 300;
  for (int i = 0; i < kNames; ++i) {
    session::hello_msg h;
    h.name = "invented-" + std::to_string(i);
    h.role = "NO_SUCH_ROLE";
    h.suite = "ecdsa-p256-sha256";
    h.key_protection = protection::software;
    h.identity_der = crypto::ec_keypair::generate(ec_curve::p256).public_part().der();
    h.ephemeral_der = h.identity_der;
    h.nonce = crypto::random_bytes(session::kNonceSize);
    const bytes body = session::encode(h);
    raw.send(zmq::buffer(session::frame::kHello), zmq::send_flags::sndmore);
    raw.send(zmq::buffer(body.data(), body.size()), zmq::send_flags::none);
  }
  auto legit = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");  // enrols meanwhile
  broker::admin_client admin(b.admin_endpoint());
  nlohmann::json rows;
  ASSERT_TRUE(wait_until([&] {
    auto r = admin.request({{"op", "violations"}});
    if (!r) return false;
    rows = *r;
    std::uint64_t counted = 0;
    for (const auto& row : rows) counted += row["count"].get<std::uint64_t>();
    return counted >= static_cast<std::uint64_t>(kNames);
  }))
      << rows.dump(2);
  ASSERT_EQ(rows.size(), 1u) << rows.dump(2);
  EXPECT_EQ(rows[0]["agent"], "(enrolment)");
  EXPECT_EQ(rows[0]["reason"], "unknown_role");
  EXPECT_EQ(rows[0]["count"], kNames);
  EXPECT_NE(rows[0]["last_detail"].get<std::string>().find("'invented-"), std::string::npos) << "the claimed name";
}

// Case 6: names that enrolled and left used to count against max_agents for good (50
// names enrolled and left in 0.2 s locked a max_agents = 50 broker). Online agents
// count now; the records of those gone are forgotten beyond max_agents.
TEST_F(Hostile, Case6NamesThatLeftDoNotFillMaxAgents) {
  broker_process::options o;
  o.extra_limits = "max_agents = 4\n";
  auto& b = broker(o);
  for (int i = 0; i < 12; ++i) {
    auto squatter = connect_agent(b, dir_.path() / ("s" + std::to_string(i)), "debugger-" + std::to_string(i), "DEBUGGER",
                                  /*software=*/true);
  }  // each says bye as it goes
  // Memory: at most max_agents offline records once the sweep (every second) has run.
  EXPECT_TRUE(wait_until([&] { const double k = gauge(b, "agents_known"); return k >= 0 && k <= 4; }, 5s))
      << gauge(b, "agents_known");
  expect_traffic_flows(b, dir_.path(), "1");
  // The budget is agents online: four held connections fill it; one leaving frees a place.
  std::vector<bus_agent> held;
  for (int i = 0; i < 4; ++i)
    held.push_back(connect_agent(b, dir_.path() / ("h" + std::to_string(i)), "debugger-h" + std::to_string(i), "DEBUGGER", true));
  try {
    auto extra = connect_agent(b, dir_.path() / "x", "debugger-x", "DEBUGGER", true);
    ADD_FAILURE() << "a fifth agent was enrolled beyond max_agents = 4";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::overloaded) << e.what();
  }
  held.pop_back();
  EXPECT_TRUE(wait_until([&] { return gauge(b, "agents_online") == 3; }));
  auto extra = connect_agent(b, dir_.path() / "x2", "debugger-x", "DEBUGGER", true);
}

// Case 9: the broker bound its sockets in whatever directory it found (/tmp/agentbus
// created first by another local user was accepted: that user can replace the socket).
// Now it refuses to start on such a directory and says why.
TEST_F(Hostile, Case9RefusesASocketDirectoryOthersControl) {
  using testing::run_command;
  using testing::shell_quote;
  const auto shared = dir_.path() / "shared";
  std::filesystem::create_directories(shared);
  std::filesystem::permissions(shared, std::filesystem::perms::all);  // 0777, as another user's mkdir may leave it
  auto cfg = dir_.path() / "broker.toml";
  auto start_with = [&](const std::filesystem::path& sock) {
    testing::write_text(cfg, "[broker]\nname = \"b\"\nendpoints = [\"ipc://" + sock.string() + "\"]\npolicy = \"" +
                                 (testing::source_dir() / "config" / "policy.toml").string() +
                                 "\"\nstate_dir = \"s\"\n[identity]\nkey_dir = \"k\"\nallow_software = true\n");
    return run_command("timeout 5 " + shell_quote((testing::binary_dir() / "broker" / "agentbus-broker").string()) +
                       " --config " + shell_quote(cfg.string()));
  };
  auto r = start_with(shared / "broker.sock");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("refusing the socket directory " + shared.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("writable by its group or by others"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(shared / "broker.sock"));
  if (::geteuid() == 0) {
    // Another user's directory, however strict its mode (as root the test can make one).
    const auto theirs = dir_.path() / "theirs";
    std::filesystem::create_directories(theirs);
    ASSERT_EQ(::chown(theirs.c_str(), 65534, 65534), 0);
    r = start_with(theirs / "broker.sock");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("owned by uid 65534"), std::string::npos) << r.output;
  }
  // The legitimate broker (its own directory) serves agents as ever.
  auto& b = broker();
  expect_traffic_flows(b, dir_.path(), "9");
}

// Case 8: a signed `revoke` captured from one broker was carried out again after a
// restart (nonces in memory only), and would be by any broker sharing the operator
// key. Requests now name their broker, and the nonces of those carried out are kept
// in the registry.
TEST_F(Hostile, Case8ASignedRequestIsCarriedOutOnceAndOnlyByTheBrokerItNames) {
  auto& a = broker();
  { auto m = connect_agent(a, dir_.path() / "a-m", "monitor-1", "MONITOR"); }
  // What an eavesdropper on the operator's connection keeps (signed without an
  // operator name, which a request may omit, so that broker B's own name for the key
  // does not refuse it first).
  const std::string captured = broker::make_signed_request(
      {{"op", "revoke"}, {"agent", "monitor-1"}, {"reason", "compromised"}}, a.operator_key(), "", a.fingerprint());
  broker::admin_client admin_a(a.admin_endpoint());
  auto first = admin_a.request(nlohmann::json::parse(captured));
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  ASSERT_TRUE(admin_a.request({{"op", "show"}, {"agent", "monitor-1"}})->at("agent").at("revoked").get<bool>());

  a.stop();
  a.start();
  auto replayed = admin_a.request(nlohmann::json::parse(captured));
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.error().code(), status_code::replayed) << replayed.error().to_string();

  // Broker B trusts the same operator key and has its own monitor-1.
  const auto policy_b = dir_.path() / "policy-b.toml";
  testing::write_text(policy_b, testing::read_text(testing::source_dir() / "config" / "policy.toml") +
                                    "\n[operators.shared]\nfingerprint = \"" +
                                    a.operator_key().public_key().fingerprint_hex() + "\"\n");
  broker_process::options ob;
  ob.policy_file = policy_b;
  broker_process b(ob);
  auto m_b = connect_agent(b, dir_.path() / "b-m", "monitor-1", "MONITOR");
  broker::admin_client admin_b(b.admin_endpoint());
  auto elsewhere = admin_b.request(nlohmann::json::parse(captured));
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_EQ(elsewhere.error().code(), status_code::acl_denied) << elsewhere.error().to_string();
  EXPECT_NE(elsewhere.error().detail().find("addressed to broker"), std::string::npos) << elsewhere.error().to_string();
  EXPECT_FALSE(admin_b.request({{"op", "show"}, {"agent", "monitor-1"}})->at("agent").at("revoked").get<bool>());
  // The operator's own request to B, addressed to B, is carried out.
  auto own = admin_b.signed_request({{"op", "reset_counters"}}, a.operator_key(), "");
  EXPECT_TRUE(own.ok()) << own.error().to_string();
  expect_traffic_flows(a, dir_.path(), "8");
}

}  // namespace
}  // namespace agentbus
