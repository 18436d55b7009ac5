// Hostile peers (issue 12): each case replays an attack against a real broker process
// and checks its budget (docs/threat-model.md) while a legitimate agent keeps
// enrolling and exchanging envelopes.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include <zmq.hpp>

#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "admin_protocol.hpp"
#include "enrolment.hpp"
#include "registry.hpp"
#include "session_offers.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/session_keys.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/testing/local_host.hpp"
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

using testing::text;

class Hostile : public testing::broker_test {};

// gauge reads one unlabelled series from the broker's Prometheus text (-1 if absent).
double gauge(broker_process& b, const std::string& name) { return b.metric(name).value_or(-1); }

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

// hello_flood plays many peers on connections of their own, each claiming a name in
// `role` with the same software key: a HELLO without a cookie, then (return_cookies)
// the signed HELLO returning the broker's COOKIE, as the protocol asks.
class hello_flood {
 public:
  hello_flood(const std::string& endpoint, std::size_t connections, std::vector<std::shared_ptr<identity_key>> keys,
              const std::string& role, const std::string& name_prefix)
      : ctx_(1), keys_(std::move(keys)) {
    ctx_.set(zmq::ctxopt::max_sockets, static_cast<int>(connections + 16));
    const auto ephemeral = crypto::ec_keypair::generate(keys_.front()->key_suite().ecdh_curve);
    for (std::size_t i = 0; i < connections; ++i) {
      identity_key& key = *keys_[i % keys_.size()];
      peer p{zmq::socket_t(ctx_, zmq::socket_type::dealer), {}, {}, &key};
      p.socket.set(zmq::sockopt::linger, 0);
      p.socket.connect(endpoint);
      p.hello.name = name_prefix + std::to_string(i);
      p.hello.role = role;
      p.hello.suite = key.key_suite().name;
      p.hello.key_protection = protection::software;
      p.hello.identity_der = key.public_key().der();
      p.hello.ephemeral_der = ephemeral.public_part().der();
      p.hello.nonce = crypto::random_bytes(session::kNonceSize);
      peers_.push_back(std::move(p));
    }
  }
  // send_first: every peer sends a HELLO without a cookie.
  void send_first() {
    for (auto& p : peers_) send(p, session::encode(p.hello));
  }
  // return_cookies: every peer holding a COOKIE returns it in a signed HELLO.
  void return_cookies() {
    for (auto& p : peers_) {
      auto it = p.answers.find("COOKIE");
      if (it == p.answers.end()) continue;
      auto c = session::decode_cookie(it->second);
      if (!c) continue;
      p.hello.cookie = c->cookie;
      const bytes hu = session::encode(p.hello, false);
      p.hello.possession = *p.key->sign_message(session::hello_transcript(hu));
      p.answers.clear();
      send(p, session::encode(p.hello));
    }
  }
  // collect reads answers until `expected` peers have one (or `wait` passed); returns
  // how many peers got each kind (the REFUSED ones by code name).
  std::map<std::string, int> collect(std::size_t expected, std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::size_t answered = 0;
    while (answered < expected && std::chrono::steady_clock::now() < deadline) {
      bool any = false;
      for (auto& p : peers_) {
        zmq::message_t kind, body;
        if (!p.socket.recv(kind, zmq::recv_flags::dontwait)) continue;
        any = true;
        if (kind.more()) (void)p.socket.recv(body);
        zmq::message_t rest;
        while (body.more() && p.socket.recv(rest, zmq::recv_flags::dontwait) && rest.more()) {
        }
        if (p.answers.empty()) ++answered;
        std::string k = kind.to_string();
        const auto* d = static_cast<const std::uint8_t*>(body.data());
        if (k == "REFUSED") {
          auto r = session::decode_refused(bytes(d, d + body.size()));
          k += " " + std::string(r ? status_code_name(r->code) : "?");
        }
        p.answers[k] = bytes(d, d + body.size());
      }
      if (!any) std::this_thread::sleep_for(2ms);
    }
    std::map<std::string, int> out;
    for (const auto& p : peers_)
      for (const auto& [k, v] : p.answers) ++out[k];
    return out;
  }

 private:
  struct peer {
    zmq::socket_t socket;
    session::hello_msg hello;
    std::map<std::string, bytes> answers;
    identity_key* key;
  };
  static void send(peer& p, const bytes& body) {
    p.socket.send(zmq::buffer(session::frame::kHello), zmq::send_flags::sndmore);
    p.socket.send(zmq::buffer(body.data(), body.size()), zmq::send_flags::none);
  }
  zmq::context_t ctx_;
  std::vector<std::shared_ptr<identity_key>> keys_;
  std::vector<peer> peers_;
};

std::string describe(const std::map<std::string, int>& m) {
  std::string out;
  for (const auto& [k, n] : m) out += k + ": " + std::to_string(n) + "; ";
  return out;
}

// tpm_operations: the broker's TPM operations so far (all kinds).
double tpm_operations(broker_process& b) {
  const std::string text = b.admin("metrics");
  double total = 0;
  for (std::size_t at = text.find("agentbus_tpm_operation_duration_seconds_count{"); at != std::string::npos;
       at = text.find("agentbus_tpm_operation_duration_seconds_count{", at + 1)) {
    const std::size_t sp = text.find(' ', text.find('}', at));
    total += std::stod(text.substr(sp + 1, text.find('\n', sp) - sp - 1));
  }
  return total;
}

// Case 3: refusals used to be counted per claimed name, so one connection inventing
// names wrote a registry row each (170,008 rows in 15 s). A HELLO without a cookie
// now leaves no row at all; refusals of HELLOs that returned one share one row per
// reason, whatever the names. A legitimate agent enrols meanwhile.
TEST_F(Hostile, Case3RefusedEnrolmentsOfInventedNamesShareOneRegistryRowPerReason) {
  auto& b = broker();
  std::shared_ptr<identity_key> key =
      identity_key::create_software(dir_.path() / "raw", "MONITOR", *policy::builtin_default().suite_for("MONITOR"));
  const std::size_t kNames = 300;
  hello_flood flood(b.endpoint(), kNames, {key}, "NO_SUCH_ROLE", "invented-");
  flood.send_first();
  auto first = flood.collect(kNames, 20s);
  EXPECT_EQ(first["COOKIE"], static_cast<int>(kNames)) << describe(first);
  broker::admin_client admin(b.admin_endpoint());
  auto none = admin.request({{"op", "violations"}});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "a HELLO without a cookie leaves nothing: " << none->dump(2);

  flood.return_cookies();
  auto legit = connect_agent(b, dir_.path(), "monitor-1", "MONITOR");  // enrols meanwhile
  auto second = flood.collect(kNames, 20s);
  EXPECT_EQ(second["REFUSED unknown_role"], static_cast<int>(kNames)) << describe(second);
  nlohmann::json rows;
  ASSERT_TRUE(wait_until([&] {
    auto r = admin.request({{"op", "violations"}});
    if (!r) return false;
    rows = *r;
    std::uint64_t counted = 0;
    for (const auto& row : rows) counted += row["count"].get<std::uint64_t>();
    return counted >= kNames;
  }))
      << rows.dump(2);
  ASSERT_EQ(rows.size(), 1u) << rows.dump(2);
  EXPECT_EQ(rows[0]["agent"], "(enrolment)");
  EXPECT_EQ(rows[0]["reason"], "unknown_role");
  EXPECT_EQ(rows[0]["count"], kNames);
  EXPECT_NE(rows[0]["last_detail"].get<std::string>().find("'invented-"), std::string::npos) << "the claimed name";
}

// Case 3, second half: admin requests ran on the event loop, so reading a large
// registry through the admin endpoint stopped routing (0.7 s for 170,008 rows). The
// admin endpoint now has a thread and a registry connection of its own: envelopes are
// delivered while a large read is being answered.
TEST_F(Hostile, Case3AdminReadsDoNotStopRouting) {
  auto& b = broker();
  {
    // 20,000 registry rows, written beside the running broker (SQLite WAL).
    broker::registry reg(b.dir() / "state" / "registry.db");
    broker::agent_record a;
    a.role = "MONITOR";
    a.suite = "ecdsa-p256-sha256";
    a.public_key_pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
    a.protection = "software";
    a.enrolled_at = a.last_seen = 1'700'000'000'000;
    for (int i = 0; i < 20'000; ++i) {
      a.name = "bulk-" + std::to_string(i);
      a.fingerprint = to_hex(crypto::digest(hash_algorithm::sha256, text(a.name)));
      reg.upsert_agent(a);
    }
  }
  auto director = connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR");
  auto monitor = connect_agent(b, dir_.path() / "m", "monitor-1", "MONITOR");
  using clock = std::chrono::steady_clock;
  std::mutex mu;
  std::vector<clock::time_point> deliveries;
  director->on_message([&](const message&) {
    std::lock_guard lock(mu);
    deliveries.push_back(clock::now());
  });
  std::atomic<bool> reading{true};
  std::vector<std::pair<clock::time_point, clock::time_point>> spans;
  std::thread reader([&] {
    broker::admin_client admin(b.admin_endpoint(), 30'000);
    for (int i = 0; i < 3; ++i) {
      const auto t0 = clock::now();
      auto r = admin.request({{"op", "agents"}});
      spans.emplace_back(t0, clock::now());
      EXPECT_TRUE(r.ok() && r->size() >= 20'000u) << (r ? std::to_string(r->size()) : r.error().to_string());
    }
    reading = false;
  });
  int sent = 0;
  while (reading.load()) {
    ASSERT_TRUE(monitor->send("director-1", "text/plain", text("during the read")).ok());
    ++sent;
    std::this_thread::sleep_for(2ms);
  }
  reader.join();
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return deliveries.size() == static_cast<std::size_t>(sent);
  }, 30s));
  // Deliveries inside the longest admin request.
  auto longest = *std::max_element(spans.begin(), spans.end(), [](const auto& x, const auto& y) {
    return x.second - x.first < y.second - y.first;
  });
  std::size_t inside = 0;
  {
    std::lock_guard lock(mu);
    for (auto t : deliveries) inside += t > longest.first && t < longest.second ? 1 : 0;
  }
  std::printf("[ measure  ] the longest 'agents' read (20,000 rows) took %lld ms; %zu envelopes were delivered meanwhile\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(longest.second - longest.first).count()),
              inside);
  EXPECT_GT(inside, 0u) << "routing stopped while the admin endpoint answered";
}

// Case 2: 1,024 HELLOs from 1,024 connections used to fill the pending table and lock
// every new agent out (REFUSED overloaded) for 30 s, each queuing a TPM signature. Now
// a HELLO without a cookie costs no TPM work and keeps nothing; peers that return
// their cookies in an open role fill only the open pool (256); and an agent holding a token
// enrols within 2 s (its connect_timeout) while that pool is full and the broker's
// TPM works through the flood's signatures, its own job first.
TEST_F(Hostile, Case2AHelloFloodNeitherLocksEnrolmentOutNorSpendsTheTpmBeforeACookie) {
  testing::write_text(dir_.path() / "open-policy.toml",
                      testing::read_text(testing::source_dir() / "config" / "policy.toml") +
                          "\n[roles.SANDBOX]\nsuite = \"ecdsa-p256-sha256\"\nallow_software = true\n"
                          "assurance = [\"tpm\", \"tpm-batch\", \"software\"]\nenrolment = \"open\"\n");
  broker_process::options o;
  o.policy_file = dir_.path() / "open-policy.toml";
  auto& b = broker(o);
  auto director = connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR");
  auto monitor_id = testing::make_identity(dir_.path() / "m", "MONITOR");
  // The flood's keys: one holds at most 2 pending handshakes, so the attacker brings many.
  std::vector<std::shared_ptr<identity_key>> keys;
  for (int i = 0; i < 300; ++i)
    keys.push_back(identity_key::create_software(dir_.path() / ("raw-" + std::to_string(i)), "SANDBOX",
                                                 *policy::builtin_default().suite_for("MONITOR")));

  // What the operator handed the monitor's owner (its bundle), before the flood.
  agent_options within_budget;
  within_budget.name = "monitor-1";
  b.prepare(within_budget, "MONITOR", *monitor_id.key);
  within_budget.connect_timeout = 2s;

  const std::size_t kPeers = 1100;  // the attack's 1,024 connections and more; the open pool holds 256
  hello_flood flood(b.endpoint(), kPeers, keys, "SANDBOX", "box-");
  const double tpm_before = tpm_operations(b);
  auto t0 = std::chrono::steady_clock::now();
  flood.send_first();
  auto cookies = flood.collect(kPeers, 30s);
  std::printf("[ measure  ] %zu COOKIE answers in %lld ms\n", kPeers,
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()));
  EXPECT_EQ(cookies["COOKIE"], static_cast<int>(kPeers)) << describe(cookies);
  EXPECT_EQ(tpm_operations(b), tpm_before) << "no TPM work for a peer that has not returned a cookie";

  flood.return_cookies();
  const auto started = std::chrono::steady_clock::now();
  auto monitor = testing::enrol_identity(b, std::move(monitor_id), "monitor-1", within_budget);
  std::printf("[ measure  ] a token holder enrolled in %lld ms during the flood\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - started)
                                         .count()));
  auto answers = flood.collect(kPeers, 60s);
  EXPECT_LE(answers["CHALLENGE"], static_cast<int>(broker::kMaxPendingOpen)) << describe(answers);
  EXPECT_GE(answers["REFUSED overloaded"], static_cast<int>(kPeers - broker::kMaxPendingOpen)) << describe(answers);

  // The enrolled agents exchange envelopes as before.
  inbox m;
  m.attach(*monitor.client);
  ASSERT_TRUE(director->send("monitor-1", "text/plain", text("through the flood")).ok());
  ASSERT_TRUE(wait_until([&] { return m.count() == 1; })) << m.describe();
  EXPECT_EQ(m.rejected(), 0u) << m.describe();
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

// Case 7: control_total{op} took any string an agent sent (300,000 ops: RSS +59 MiB,
// 19 MB of metrics text). Operations are typed now: an invented one is refused
// (invalid_field, one nack) and counted under the refusal's code, never as a label.
TEST_F(Hostile, Case7InventedControlOpsAddNoMetricSeries) {
  using testing::agent_access;
  auto& b = broker();
  auto debugger = connect_agent(b, dir_.path() / "g", "debugger-1", "DEBUGGER", true);
  inbox g;
  g.attach(*debugger.client);
  auto series = [&] {
    const std::string text = b.admin("metrics");
    std::size_t n = 0;
    for (std::size_t at = 0; (at = text.find("\nagentbus_control", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  const std::size_t before = series();
  constexpr int kOps = 3000;
  for (int i = 0; i < kOps; ++i) ASSERT_TRUE(agent_access::send_control_op(*debugger.client, "op-" + std::to_string(i)).ok());
  ASSERT_TRUE(wait_until([&] { return g.rejections_of(status_code::invalid_field, "broker") >= static_cast<std::size_t>(kOps); }, 30s))
      << g.rejections_of(status_code::invalid_field, "broker");
  EXPECT_LE(series(), before + 1) << "at most the refusal code's own series";
  const std::string text = b.admin("metrics");
  EXPECT_EQ(text.find("op-1"), std::string::npos);
  expect_traffic_flows(b, dir_.path(), "7");
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

// rss_kib: a process's resident memory (VmRSS), in KiB (-1 if unreadable).
long rss_kib(pid_t pid) {
  const auto kib = testing::resident_kib(pid);
  return kib ? static_cast<long>(*kib) : -1;
}

// Case 4: a subscriber that never reads made the broker buffer 2000 × 1 MiB (RSS 15 MiB
// → 2 GiB; the ceiling was send_hwm × 1 MiB ≈ 10 GiB a connection). Now a recipient's
// queue holds at most max_queued_bytes_per_agent (here 8 MiB), senders are told
// `overloaded` past it, the reading subscriber gets everything, and with
// drop_stuck_consumer_seconds the stuck one loses its connection.
TEST_F(Hostile, Case4ASubscriberThatDoesNotReadCostsTheBrokerABoundedQueue) {
  broker_process::options o;
  o.extra_limits = "max_queued_bytes_per_agent = 8388608\ndrop_stuck_consumer_seconds = 2\n";
  auto& b = broker(o);
  auto publisher = connect_agent(b, dir_.path() / "p", "monitor-1", "MONITOR");
  auto reader = connect_agent(b, dir_.path() / "r", "optimizer-1", "OPTIMIZER");
  agent_options slow;
  slow.max_pending = 4;    // the stuck agent stops reading soon (its own memory is its own business)
  slow.receive_queue = 4;
  auto stuck = connect_agent(b, dir_.path() / "s", "director-1", "DIRECTOR", false, slow);
  inbox p;
  p.attach(*publisher.client);
  std::atomic<int> read{0};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(reader->subscribe("metrics/big", [&](const message&) { ++read; }).ok());
  ASSERT_TRUE(stuck->subscribe("metrics/big", [released](const message&) { released.wait(); }).ok());
  std::this_thread::sleep_for(500ms);  // the publisher learns both members
  const long before = rss_kib(b.pid());
  const bytes payload(512 * 1024, 0x5a);
  constexpr int kMessages = 300;  // 150 MiB
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(publisher->publish("metrics/big", "application/octet-stream", payload).ok());
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(wait_until([&] { return read.load() == kMessages; }, 60s)) << read.load();
  const long after = rss_kib(b.pid());
  std::printf("[ measure  ] %d × 512 KiB to a reader and a subscriber that does not read: broker RSS %ld → %ld KiB\n",
              kMessages, before, after);
  if (testing::kResidentSetIsMeaningful) {
    EXPECT_LT(after - before, 64 * 1024) << "the broker held more than the stuck recipient's budget";
  }
  EXPECT_TRUE(wait_until([&] { return p.has_rejection(status_code::overloaded, "broker"); })) << p.describe();
  // The stuck one is dropped once nothing has been written to it for 2 s (it re-enrols
  // once it reads again).
  EXPECT_TRUE(wait_until([&] { return b.admin("metrics").find("agentbus_consumers_dropped_total 1") != std::string::npos; }, 15s))
      << b.admin("metrics");
  release.set_value();
}

// Case 5: a DEBUGGER got 300 session acceptances from a DIRECTOR in 4.4 s, each a TPM
// signature and a TPM ECDH on the director's session thread. Now the broker lets an
// offer through on the offering side's rights (against them, to recover a session the
// other side lost, once per 1.5 s per pair), one unanswered offer per pair at a time,
// and the recipient answers at most 16 of one peer's at once, then one a second.
// Other peers are unaffected.
TEST_F(Hostile, Case5OfferFloodsCostTheRecipientABoundedNumberOfAnswers) {
  using testing::agent_access;
  auto& b = broker();
  auto director = connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR");
  auto monitor = connect_agent(b, dir_.path() / "m", "monitor-1", "MONITOR");       // may send to DIRECTOR
  auto debugger = connect_agent(b, dir_.path() / "g", "debugger-1", "DEBUGGER", true);  // may not
  inbox d, m, g;
  d.attach(*director.client);
  m.attach(*monitor.client);
  g.attach(*debugger.client);
  const policy& pol = policy::builtin_default();
  const ec_curve director_curve = pol.suite_for("DIRECTOR")->ecdh_curve;
  const auto before = director->stats();
  const auto started = std::chrono::steady_clock::now();
  constexpr int kOffers = 300;
  for (int i = 0; i < kOffers; ++i) {
    ASSERT_TRUE(agent_access::send_session_offer(*monitor.client, "director-1",
                                                 session::curve_for_pair(pol.suite_for("MONITOR")->ecdh_curve, director_curve))
                    .ok());
    ASSERT_TRUE(agent_access::send_session_offer(*debugger.client, "director-1",
                                                 session::curve_for_pair(pol.suite_for("DEBUGGER")->ecdh_curve, director_curve))
                    .ok());
  }
  // The broker: the debugger's once per 1.5 s; the monitor's one unanswered at a time.
  EXPECT_TRUE(wait_until([&] { return g.rejections_of(status_code::overloaded, "broker") >= kOffers - 3; }, 20s))
      << g.rejections_of(status_code::overloaded, "broker") << "\n" << g.describe();
  EXPECT_TRUE(wait_until([&] { return m.rejections_of(status_code::overloaded, "broker") >= kOffers / 2; }, 20s));
  std::this_thread::sleep_for(1s);  // answers in progress finish
  const auto after = director->stats();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto answered = (after.sessions + after.rekeys) - (before.sessions + before.rekeys);
  std::printf("[ measure  ] %d + %d offers: the director answered %llu in %.1f s, refused %llu unanswered\n", kOffers,
              kOffers, static_cast<unsigned long long>(answered), seconds,
              static_cast<unsigned long long>(after.offers_refused));
  EXPECT_LE(answered, static_cast<std::uint64_t>(2 * 16 + 2 * seconds + 2));
  // What passed the broker: those the director answered (each freed the pair's place)
  // and one per 1.5 s besides.
  EXPECT_GE(m.rejections_of(status_code::overloaded, "broker") + answered + static_cast<std::uint64_t>(seconds / 1.5) + 1,
            static_cast<std::uint64_t>(kOffers));

  // Its other peers get their sessions and envelopes through at once.
  auto architect = connect_agent(b, dir_.path() / "a", "architect-1", "ARCHITECT");
  inbox a;
  a.attach(*architect.client);
  ASSERT_TRUE(architect->send("director-1", "text/plain", text("a fresh peer")).ok());
  ASSERT_TRUE(director->send("architect-1", "text/plain", text("and back")).ok());
  ASSERT_TRUE(wait_until([&] { return a.count() == 1; })) << a.describe();
  ASSERT_TRUE(wait_until([&] { return d.count() >= 1; })) << d.describe();
}

// Case 5, the receiver's own budget: it never trusts the broker, so a broker that lets
// a flood through (here one in permissive testing mode, which checks no ACL) still
// costs the recipient at most 16 answers of one peer at once, then one a second.
TEST_F(Hostile, Case5AReceiverAnswersABoundedNumberOfOffersWhateverTheBrokerLetsThrough) {
  using testing::agent_access;
  broker_process::options o;
  o.permissive = true;
  auto& b = broker(o);
  auto director = connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR");
  auto monitor = connect_agent(b, dir_.path() / "m", "monitor-1", "MONITOR");
  inbox d;
  d.attach(*director.client);
  const policy& pol = policy::builtin_default();
  const ec_curve curve = session::curve_for_pair(pol.suite_for("MONITOR")->ecdh_curve, pol.suite_for("DIRECTOR")->ecdh_curve);
  const auto before = director->stats();
  const auto started = std::chrono::steady_clock::now();
  constexpr int kOffers = 100;
  for (int i = 0; i < kOffers; ++i) ASSERT_TRUE(agent_access::send_session_offer(*monitor.client, "director-1", curve).ok());
  ASSERT_TRUE(wait_until([&] {
    const auto s = director->stats();
    return (s.sessions + s.rekeys - before.sessions - before.rekeys) + s.offers_refused >= static_cast<std::uint64_t>(kOffers);
  }, 30s)) << d.describe();
  const auto after = director->stats();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto answered = (after.sessions + after.rekeys) - (before.sessions + before.rekeys);
  std::printf("[ measure  ] %d offers through a permissive broker: %llu answered in %.1f s, %llu refused unanswered\n",
              kOffers, static_cast<unsigned long long>(answered), seconds,
              static_cast<unsigned long long>(after.offers_refused));
  EXPECT_LE(answered, static_cast<std::uint64_t>(16 + seconds + 1));
  EXPECT_GE(after.offers_refused, static_cast<std::uint64_t>(kOffers - 16 - seconds - 1));
  EXPECT_TRUE(d.has_rejection(status_code::overloaded, "receiver")) << d.describe();
}

}  // namespace
}  // namespace agentbus
