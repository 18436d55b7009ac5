// trust_cli_test.cpp — agentbus-trust as a user runs it: offline against a registry
// database built here (tables, JSON, DOT parsed by Graphviz, PNG), online against a
// stand-in admin endpoint (the broker's own admin_handler on a REP socket, over the
// same kind of registry), and the exit codes scripts rely on.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include <nlohmann/json.hpp>

#include "admin_protocol.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "registry.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using broker::agent_record;
using broker::registry;
using testing::command_result;
using testing::scoped_temp_dir;
using testing::shell_quote;

constexpr std::int64_t kT0 = 1'700'000'000'000;  // 2023-11-14 22:13:20Z

std::string q(const fs::path& p) { return shell_quote(p.string()); }
std::string tool() { return q(testing::binary_dir() / "tools" / "agentbus-trust"); }
std::string policy_arg() { return " --policy " + q(testing::source_dir() / "config" / "policy.toml"); }

// trust runs the tool with stdout and stderr merged; trust_stdout keeps only stdout
// (for JSON and DOT).
command_result trust(const std::string& args) { return testing::run_command(tool() + " " + args); }
command_result trust_stdout(const std::string& args) {
  return testing::run_command("{ " + tool() + " " + args + " 2>/dev/null; }");
}

std::string fingerprint_of(const std::string& name) {
  return to_hex(crypto::digest(hash_algorithm::sha256, as_bytes(name)));
}

agent_record agent(const std::string& name, const std::string& role, const std::string& suite, const std::string& prot) {
  agent_record a;
  a.name = name;
  a.role = role;
  a.suite = suite;
  a.fingerprint = fingerprint_of(name);
  a.public_key_pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
  a.protection = prot;
  a.tpm_manufacturer = prot == "tpm" ? "IBM" : "";
  a.tpm_simulator = prot == "tpm";
  a.enrolled_at = kT0;
  a.last_seen = kT0 + 60'000;
  return a;
}

// build_registry writes the demo-like registry every test reads.
void build_registry(const fs::path& db) {
  registry reg(db);
  agent_record director = agent("director-1", "DIRECTOR", "rsa3072-pss-sha384", "tpm");
  director.ek_ca = "test-ca";  // attested; the other TPM agents' facts are declared
  director.ek_issuer = "CN=swtpm-localca";
  director.ek_fingerprint = std::string(64, 'e');
  director.ak_name = "000b" + std::string(64, 'a');
  reg.upsert_agent(director);
  reg.upsert_agent(agent("monitor-1", "MONITOR", "ecdsa-p256-sha256", "tpm"));
  reg.upsert_agent(agent("optimizer-1", "OPTIMIZER", "ecdsa-p256-sha256", "tpm"));
  reg.upsert_agent(agent("debugger-1", "DEBUGGER", "ecdsa-p256-sha256", "software"));
  reg.upsert_agent(agent("architect-1", "ARCHITECT", "ecdsa-p384-sha3-384", "tpm"));
  reg.record_session("monitor-1", "director-1", "P-384", "hmac-sha384", kT0 + 1000, false);
  reg.record_session("monitor-1", "optimizer-1", "P-256", "hmac-sha256", kT0 + 2000, false);
  reg.record_session("monitor-1", "optimizer-1", "P-256", "hmac-sha256", kT0 + 3000, true);
  reg.flush({{"monitor-1", "director-1", 12}, {"director-1", "monitor-1", 7}, {"monitor-1", "optimizer-1", 40}},
            {{"debugger-1", "acl_denied", "role DEBUGGER may not send to role DIRECTOR (recipient 'director-1')", 3, kT0 + 4000},
             {"monitor-1", "acl_denied", "role MONITOR may not publish to 'design/plans'", 1, kT0 + 5000},
             {"ghost", "bad_signature", "signature does not verify", 2, kT0 + 6000}},
            {});
  ASSERT_TRUE(reg.set_pending_key({"architect-1", fingerprint_of("architect-1 new key"),
                                   "-----BEGIN PUBLIC KEY-----\nnew\n-----END PUBLIC KEY-----\n", kT0 + 8000,
                                   "tcp://192.0.2.7:50412", "declared tpm, manufacturer IBM, simulator"}));
  ASSERT_TRUE(reg.revoke("optimizer-1", "compromised host", kT0 + 7000));
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// code_points splits UTF-8 text into code points (tables align by code point).
std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80 && !out.empty()) out.back() += s[i];
    else out.emplace_back(1, s[i]);
  }
  return out;
}

// column_value returns what a table row holds under `header` (tables are aligned,
// so the header's column is the cell's).
std::string column_value(const std::string& table, const std::string& header, const std::string& row_key) {
  auto lines = lines_of(table);
  for (std::size_t h = 0; h < lines.size(); ++h) {
    const bool header_line =
        lines[h].rfind("NAME", 0) == 0 || lines[h].rfind("A ", 0) == 0 || lines[h].rfind("AGENT", 0) == 0 ||
        lines[h].rfind("ROLE ", 0) == 0;
    auto at = lines[h].find(header);
    if (at == std::string::npos || !header_line) continue;
    const std::size_t col = code_points(lines[h].substr(0, at)).size();
    for (std::size_t r = h + 1; r < lines.size() && !lines[r].empty(); ++r) {
      if (lines[r].rfind(row_key + " ", 0) != 0) continue;
      auto cps = code_points(lines[r]);
      std::string cell;
      for (std::size_t i = col; i < cps.size(); ++i) cell += cps[i];
      return cell.substr(0, cell.find("  "));
    }
  }
  return {};
}

class TrustOffline : public ::testing::Test {
 protected:
  void SetUp() override { build_registry(db_); }
  std::string db_arg() const { return " --db " + q(db_) + policy_arg(); }

  scoped_temp_dir tmp_;
  fs::path db_ = tmp_.path() / "registry.db";
};

TEST_F(TrustOffline, AgentsTableIsAlignedAndShowsProtectionAndRevocation) {
  auto r = trust("agents" + db_arg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* h : {"NAME", "ROLE", "SUITE", "PROTECTION", "TPM", "FINGERPRINT", "ONLINE", "LAST-SEEN", "REVOKED"})
    EXPECT_NE(r.output.find(h), std::string::npos) << h << "\n" << r.output;
  EXPECT_EQ(column_value(r.output, "ROLE", "director-1"), "DIRECTOR") << r.output;
  EXPECT_EQ(column_value(r.output, "SUITE", "architect-1"), "ecdsa-p384-sha3-384") << r.output;
  EXPECT_EQ(column_value(r.output, "PROTECTION", "debugger-1"), "software") << r.output;
  EXPECT_EQ(column_value(r.output, "PROTECTION", "monitor-1"), "tpm") << r.output;
  EXPECT_EQ(column_value(r.output, "TPM", "monitor-1"), "IBM (sim), declared") << r.output;
  EXPECT_EQ(column_value(r.output, "TPM", "director-1"), "IBM (sim), attested") << r.output;
  EXPECT_EQ(column_value(r.output, "FINGERPRINT", "monitor-1"), fingerprint_of("monitor-1").substr(0, 16)) << r.output;
  EXPECT_EQ(column_value(r.output, "ONLINE", "monitor-1"), "?") << r.output;  // an offline file cannot know
  EXPECT_EQ(column_value(r.output, "LAST-SEEN", "monitor-1"), "2023-11-14 22:14:20Z") << r.output;
  EXPECT_EQ(column_value(r.output, "REVOKED", "optimizer-1"), "REVOKED") << r.output;
  EXPECT_EQ(column_value(r.output, "REVOKED", "monitor-1"), "no") << r.output;
  // The changed key awaiting approval is pointed out, with a warning instead of a ready
  // approve command (anyone who reaches the broker can present a key).
  EXPECT_NE(r.output.find("architect-1 presented a new key sha256:" + fingerprint_of("architect-1 new key")),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("compare this fingerprint with the one its owner's agentbus-key printed"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("agentbus-trust approve architect-1"), std::string::npos) << r.output;
}

TEST_F(TrustOffline, AgentsJsonIsTheAdminResult) {
  auto r = trust_stdout("agents --json" + db_arg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json agents = json::parse(r.output);
  ASSERT_TRUE(agents.is_array());
  ASSERT_EQ(agents.size(), 5u);
  EXPECT_EQ(agents[0].at("name"), "architect-1");
  EXPECT_EQ(agents[0].at("pending_fingerprint"), fingerprint_of("architect-1 new key"));
  const json& opt = agents[4];
  EXPECT_EQ(opt.at("name"), "optimizer-1");
  EXPECT_EQ(opt.at("revoked"), true);
  EXPECT_EQ(opt.at("revoked_reason"), "compromised host");
  EXPECT_EQ(opt.at("revoked_at"), kT0 + 7000);
  EXPECT_EQ(opt.at("online"), false);
  EXPECT_EQ(opt.at("tpm_simulator"), true);
}

TEST_F(TrustOffline, ShowPrintsEveryFieldEdgesAndRefusals) {
  auto r = trust("show debugger-1" + db_arg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string& s : std::vector<std::string>{"DEBUGGER", "software (NOT hardware-protected)", fingerprint_of("debugger-1"), "BEGIN PUBLIC KEY",
                              "edges (0)", "refusals (1)", "acl_denied", "2023-11-14 22:13:20Z"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;

  auto o = trust("show optimizer-1" + db_arg());
  ASSERT_EQ(o.exit_code, 0) << o.output;
  EXPECT_NE(o.output.find("REVOKED at 2023-11-14 22:13:27Z: compromised host"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("edges (1)"), std::string::npos) << o.output;

  // An attested key shows who vouched for it; a pending key change where it came from.
  auto d = trust("show director-1" + db_arg());
  ASSERT_EQ(d.exit_code, 0) << d.output;
  for (const std::string& s : {std::string("by EK CA test-ca (issuer CN=swtpm-localca)"), "sha256:" + std::string(64, 'e'),
                               "000b" + std::string(64, 'a')})
    EXPECT_NE(d.output.find(s), std::string::npos) << s << "\n" << d.output;
  auto p = trust("show architect-1" + db_arg());
  ASSERT_EQ(p.exit_code, 0) << p.output;
  for (const std::string& s : {"sha256:" + fingerprint_of("architect-1 new key") + " (awaiting approval)",
                               std::string("tcp://192.0.2.7:50412"), std::string("declared tpm, manufacturer IBM"),
                               std::string("2023-11-14 22:13:28Z"), std::string("no: the TPM facts above are declared")})
    EXPECT_NE(p.output.find(s), std::string::npos) << s << "\n" << p.output;

  auto j = trust_stdout("show monitor-1 --json" + db_arg());
  ASSERT_EQ(j.exit_code, 0) << j.output;
  json show = json::parse(j.output);
  EXPECT_EQ(show.at("agent").at("name"), "monitor-1");
  EXPECT_EQ(show.at("edges").size(), 2u);
  EXPECT_EQ(show.at("refusals").size(), 1u);
}

TEST_F(TrustOffline, EdgesShowTrafficAndRevokedEnds) {
  auto r = trust("edges" + db_arg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* h : {"CURVE", "MAC", "ESTABLISHED", "REKEYS", "A→B", "B→A"})
    EXPECT_NE(r.output.find(h), std::string::npos) << h << "\n" << r.output;
  EXPECT_EQ(column_value(r.output, "CURVE", "director-1"), "P-384") << r.output;
  EXPECT_EQ(column_value(r.output, "STATUS", "director-1"), "ok") << r.output;
  EXPECT_EQ(column_value(r.output, "STATUS", "monitor-1"), "REVOKED") << r.output;  // monitor-1 ↔ optimizer-1
  EXPECT_EQ(column_value(r.output, "REKEYS", "monitor-1"), "1") << r.output;

  auto j = trust_stdout("edges --json" + db_arg());
  ASSERT_EQ(j.exit_code, 0) << j.output;
  json edges = json::parse(j.output);
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_EQ(edges[0].at("a"), "director-1");
  EXPECT_EQ(edges[0].at("messages_a_to_b"), 7u);
  EXPECT_EQ(edges[0].at("messages_b_to_a"), 12u);
  EXPECT_EQ(edges[0].at("revoked"), false);
  EXPECT_EQ(edges[1].at("a"), "monitor-1");
  EXPECT_EQ(edges[1].at("b"), "optimizer-1");
  EXPECT_EQ(edges[1].at("revoked"), true);
}

TEST_F(TrustOffline, ViolationsListCountsPerAgentAndReason) {
  auto r = trust("violations" + db_arg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(column_value(r.output, "REASON", "ghost"), "bad_signature") << r.output;
  EXPECT_EQ(column_value(r.output, "COUNT", "debugger-1"), "3") << r.output;
  auto j = trust_stdout("violations --json" + db_arg());
  ASSERT_EQ(j.exit_code, 0) << j.output;
  EXPECT_EQ(json::parse(j.output).size(), 3u);
}

TEST_F(TrustOffline, GraphTableJsonAndDotParsedByGraphviz) {
  auto t = trust("graph" + db_arg());
  ASSERT_EQ(t.exit_code, 0) << t.output;
  EXPECT_NE(t.output.find("trust edges (2)"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("allowed by the policy but unused"), std::string::npos) << t.output;
  // ARCHITECT may send to MONITOR, but architect-1 has no session with anyone.
  EXPECT_NE(t.output.find("ARCHITECT  "), std::string::npos) << t.output;

  auto j = trust_stdout("graph --format json" + db_arg());
  ASSERT_EQ(j.exit_code, 0) << j.output;
  json g = json::parse(j.output);
  EXPECT_EQ(g.at("agents").size(), 5u);
  EXPECT_EQ(g.at("edges").size(), 2u);
  EXPECT_EQ(g.at("refusals").size(), 3u);
  ASSERT_FALSE(g.at("policy_edges").empty());
  EXPECT_EQ(g.at("policy_edges")[0].size(), 4u);  // from_role, to_role, kind, topic

  auto d = trust_stdout("graph --format dot" + db_arg());
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_EQ(d.output.rfind("digraph", 0), 0u) << d.output;
  EXPECT_NE(d.output.find("<S><B>optimizer-1</B></S>"), std::string::npos);  // revoked: struck through
  EXPECT_NE(d.output.find("dashed"), std::string::npos);                      // software key, unused policy edges
  EXPECT_NE(d.output.find(">software<"), std::string::npos);
  EXPECT_NE(d.output.find("<B>attested</B> (test-ca)"), std::string::npos) << d.output;  // attested vs declared
  EXPECT_EQ(d.output.find("<B>attested</B>", d.output.find("<B>attested</B>") + 1), std::string::npos)
      << "only director-1 is attested";
  EXPECT_NE(d.output.find("\"debugger-1\" -> \"director-1\" [style=dotted, color=red"), std::string::npos)
      << d.output;  // the refused attempt, attributed
  testing::write_text(tmp_.path() / "trust.dot", d.output);
  auto svg = testing::run_command("dot -Tsvg " + q(tmp_.path() / "trust.dot") + " -o " + q(tmp_.path() / "trust.svg"));
  EXPECT_EQ(svg.exit_code, 0) << svg.output;
  EXPECT_EQ(svg.output.find("Error"), std::string::npos) << svg.output;
  EXPECT_EQ(svg.output.find("Warning"), std::string::npos) << svg.output;
}

TEST_F(TrustOffline, PngIsWrittenWithGraphviz) {
  const fs::path png = tmp_.path() / "trust.png";
  auto r = trust("graph --png " + q(png) + db_arg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("wrote " + png.string()), std::string::npos) << r.output;
  ASSERT_TRUE(fs::exists(png));
  std::string bytes = testing::read_text(png);
  ASSERT_GT(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST_F(TrustOffline, DatabaseIsOnlyRead) {
  auto before = fs::last_write_time(db_);
  ASSERT_EQ(trust("graph" + db_arg()).exit_code, 0);
  EXPECT_EQ(fs::last_write_time(db_), before);
  EXPECT_EQ(registry::open_readonly(db_).agents().size(), 5u);
}

TEST_F(TrustOffline, ExitCodesForMissingDatabaseUnknownAgentAndUsage) {
  auto missing = trust("agents --db " + q(tmp_.path() / "nope.db"));
  EXPECT_EQ(missing.exit_code, 4) << missing.output;
  EXPECT_NE(missing.output.find("no registry database at"), std::string::npos) << missing.output;

  testing::write_text(tmp_.path() / "not-a-db", "hello, I am not SQLite\n");
  auto garbage = trust("agents --db " + q(tmp_.path() / "not-a-db"));
  EXPECT_EQ(garbage.exit_code, 4) << garbage.output;

  auto unknown = trust("show nobody" + db_arg());
  EXPECT_EQ(unknown.exit_code, 5) << unknown.output;
  EXPECT_NE(unknown.output.find("nobody"), std::string::npos) << unknown.output;

  EXPECT_EQ(trust("frobnicate").exit_code, 2);
  EXPECT_EQ(trust("graph --format svg" + db_arg()).exit_code, 2);
  EXPECT_EQ(trust("show" + db_arg()).exit_code, 2);
  EXPECT_EQ(trust("agents --db x --admin ipc:///tmp/x").exit_code, 2);
  EXPECT_EQ(trust("revoke monitor-1 --reason r --operator-key /nonexistent" + db_arg()).exit_code, 2);
  EXPECT_EQ(trust("revoke monitor-1 --operator-key /nonexistent").exit_code, 2);  // --reason is required
}

// A fingerprint option takes what agentbus-key prints ("sha256:<hex>", any case) as
// well as the bare hex agentbus-trust prints; anything else is a usage error naming the form.
TEST_F(TrustOffline, FingerprintOptionsTakeEveryPrintedForm) {
  std::string upper = fingerprint_of("architect-1 new key");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& fp : {"sha256:" + fingerprint_of("architect-1 new key"), "SHA256:" + upper, upper}) {
    SCOPED_TRACE(fp);
    // Parsed: the tool gets as far as refusing --db for a change.
    auto r = trust("approve architect-1 --fingerprint " + fp + " --operator-key /nonexistent" + db_arg());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("a change goes to the running broker"), std::string::npos) << r.output;
  }
  for (const std::string& fp : {"sha1:" + fingerprint_of("x"), "sha256:" + fingerprint_of("x").substr(1), std::string("zz")}) {
    SCOPED_TRACE(fp);
    auto r = trust("approve architect-1 --fingerprint " + fp + " --operator-key /nonexistent" + db_arg());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("must be 64 hex digits"), std::string::npos) << r.output;
  }
}

TEST(TrustCli, HelpOnEveryCommandDocumentsExitCodes) {
  for (std::string cmd : {"", "agents", "show", "edges", "violations", "graph", "revoke", "approve", "reset-counters"}) {
    SCOPED_TRACE(cmd);
    auto r = trust(cmd + " --help");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("3 broker unreachable"), std::string::npos) << r.output;
  }
}

TEST(TrustCli, BrokerUnreachableIsExitCode3) {
  scoped_temp_dir tmp;
  // No socket file at all: reported at once.
  auto none = trust("agents --admin ipc://" + (tmp.path() / "missing" / "admin.sock").string());
  EXPECT_EQ(none.exit_code, 3) << none.output;
  EXPECT_NE(none.output.find("broker is not answering at ipc://"), std::string::npos) << none.output;
  // A stale socket path nobody listens on: reported after the timeout.
  testing::write_text(tmp.path() / "stale.sock", "");
  auto stale = trust("graph --timeout-ms 300 --admin ipc://" + (tmp.path() / "stale.sock").string());
  EXPECT_EQ(stale.exit_code, 3) << stale.output;
  EXPECT_NE(stale.output.find("no reply within 300 ms"), std::string::npos) << stale.output;
  // $AGENTBUS_ADMIN is the default endpoint.
  auto env = testing::run_command("AGENTBUS_ADMIN=ipc://" + (tmp.path() / "env.sock").string() + " " + tool() + " agents");
  EXPECT_EQ(env.exit_code, 3) << env.output;
  EXPECT_NE(env.output.find("env.sock"), std::string::npos) << env.output;
}

// ---------------------------------------------------------------- online, stand-in broker

// stand_in_broker answers the admin protocol on a REP socket as the broker does:
// legacy text aside, every frame goes to broker::admin_handler over a registry
// (its own connection, opened on its thread). `legacy` answers like a broker
// without the JSON protocol.
class stand_in_broker {
 public:
  stand_in_broker(fs::path db, std::shared_ptr<const policy> pol, std::string endpoint, bool legacy = false)
      : db_(std::move(db)), pol_(std::move(pol)), endpoint_(std::move(endpoint)), legacy_(legacy) {
    std::promise<void> bound;
    auto ready = bound.get_future();
    thread_ = std::thread([this, &bound] { run(bound); });
    ready.get();
  }
  ~stand_in_broker() {
    stop_ = true;
    thread_.join();
  }

 private:
  void run(std::promise<void>& bound) {
    registry reg(db_);
    // A broker says who it is (the `broker` op; signed requests are addressed to it).
    struct named_state : broker::registry_admin_state {
      using registry_admin_state::registry_admin_state;
      nlohmann::json broker_identity() override {
        return {{"name", "stand-in"}, {"fingerprint", std::string(64, 'b')}, {"suite", "ecdsa-p256-sha256"}};
      }
    } state(reg);
    broker::admin_handler handler(pol_, state);
    zmq::context_t ctx(1);
    zmq::socket_t rep(ctx, zmq::socket_type::rep);
    rep.set(zmq::sockopt::linger, 0);
    rep.bind(endpoint_);
    bound.set_value();
    while (!stop_) {
      zmq::pollitem_t items[] = {{rep.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(50));
      if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
      zmq::message_t req;
      if (!rep.recv(req, zmq::recv_flags::dontwait)) continue;
      std::string reply = legacy_ ? "error: commands are 'metrics' and 'stats'"
                                  : handler.handle(req.to_string(), broker::now_unix_ms());
      rep.send(zmq::buffer(reply), zmq::send_flags::none);
    }
  }

  fs::path db_;
  std::shared_ptr<const policy> pol_;
  std::string endpoint_;
  bool legacy_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class TrustOnline : public ::testing::Test {
 protected:
  void SetUp() override {
    build_registry(db_);
    auto s = *policy::builtin_default().suite_for("MONITOR");
    auto alice = identity_key::create_software(tmp_.path() / "alice", "MONITOR", s);
    (void)identity_key::create_software(tmp_.path() / "mallory", "MONITOR", s);
    std::string text = testing::read_text(testing::source_dir() / "config" / "policy.toml");
    text += "\n[operators.alice]\nfingerprint = \"" + alice->public_key().fingerprint_hex() + "\"\n";
    broker_.emplace(db_, std::make_shared<const policy>(policy::parse(text, "test")), endpoint_);
  }
  std::string admin() const { return " --admin " + shell_quote(endpoint_); }
  std::string key(const std::string& who) const { return " --operator-key " + q(tmp_.path() / who); }

  scoped_temp_dir tmp_;
  fs::path db_ = tmp_.path() / "registry.db";
  std::string endpoint_ = "ipc://" + (tmp_.path() / "admin.sock").string();
  std::optional<stand_in_broker> broker_;
};

// The tool finds the broker the way the broker's configuration says: --config, then
// $AGENTBUS_CONFIG (the installed /etc/agentbus/broker.toml otherwise, or the checkout's
// config/broker.toml from a build tree), run from any directory.
TEST_F(TrustOnline, FindsTheBrokerThroughItsConfiguration) {
  const fs::path cfg = tmp_.path() / "broker.toml";
  testing::write_text(cfg, "[broker]\nendpoints = [\"ipc:///tmp/unused.sock\"]\npolicy = \"policy.toml\"\n"
                           "state_dir = \"state\"\nadmin_endpoint = \"" + endpoint_ + "\"\n[identity]\nkey_dir = \"key\"\n");
  const std::string elsewhere = "cd / && ";
  auto by_option = testing::run_command(elsewhere + tool() + " agents --config " + q(cfg));
  EXPECT_EQ(by_option.exit_code, 0) << by_option.output;
  EXPECT_NE(by_option.output.find("monitor-1"), std::string::npos) << by_option.output;
  auto by_env = testing::run_command(elsewhere + "AGENTBUS_CONFIG=" + q(cfg) + " " + tool() + " agents");
  EXPECT_EQ(by_env.exit_code, 0) << by_env.output;
  // --admin and $AGENTBUS_ADMIN still come first.
  auto admin_first = testing::run_command(elsewhere + "AGENTBUS_ADMIN=ipc://" + (tmp_.path() / "none.sock").string() +
                                          " " + tool() + " agents --config " + q(cfg));
  EXPECT_EQ(admin_first.exit_code, 3) << admin_first.output;

  // A configuration without an admin endpoint, or one that does not load: usage
  // errors that name the file and the field.
  const fs::path no_admin = tmp_.path() / "no-admin.toml";
  testing::write_text(no_admin, "[broker]\nendpoints = [\"ipc:///tmp/unused.sock\"]\npolicy = \"policy.toml\"\n"
                                "state_dir = \"state\"\n[identity]\nkey_dir = \"key\"\n");
  auto none = trust("agents --config " + q(no_admin));
  EXPECT_EQ(none.exit_code, 2) << none.output;
  EXPECT_NE(none.output.find("broker.admin_endpoint: not set"), std::string::npos) << none.output;
  auto missing = trust("agents --config " + q(tmp_.path() / "missing.toml"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("missing.toml"), std::string::npos) << missing.output;
}

TEST_F(TrustOnline, ProfilesShowWhatEachRoleRunsWith) {
  auto r = trust_stdout("profiles --json" + admin());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  ASSERT_EQ(j["profiles"].size(), 3u);
  bool seen = false;
  for (const auto& p : j["profiles"])
    if (p["name"] == "high_security") {
      EXPECT_EQ(p["roles"], json::array({"DIRECTOR", "SECURITY"}));
      EXPECT_EQ(p["rekey"]["after_seconds"], 600);
      seen = true;
    }
  EXPECT_TRUE(seen);
  for (const auto& role : j["roles"])
    if (role["role"] == "OPTIMIZER") {
      EXPECT_EQ(role["profile"], "realtime");
    }
  auto table = trust("profiles" + admin());
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_EQ(column_value(table.output, "PROFILE", "DIRECTOR"), "high_security") << table.output;
  EXPECT_NE(table.output.find("high_security: Highest assurance"), std::string::npos) << table.output;
}

TEST_F(TrustOnline, ReadsTheSameJsonAsOffline) {
  auto online = trust_stdout("graph --json" + admin());
  ASSERT_EQ(online.exit_code, 0) << online.output;
  auto offline = trust_stdout("graph --json --db " + q(db_) + policy_arg());
  ASSERT_EQ(offline.exit_code, 0) << offline.output;
  EXPECT_EQ(json::parse(online.output), json::parse(offline.output));

  auto table = trust("agents" + admin());
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_EQ(column_value(table.output, "ONLINE", "monitor-1"), "no") << table.output;  // live: known

  EXPECT_EQ(trust("show nobody" + admin()).exit_code, 5);
}

TEST_F(TrustOnline, SignedRevokeByAnOperatorTakesEffect) {
  auto r = trust("revoke monitor-1 --reason 'key leaked' --operator alice" + key("alice") + admin());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("revoked monitor-1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("by operator alice"), std::string::npos) << r.output;
  auto m = registry::open_readonly(db_).find_agent("monitor-1");
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->revoked);
  EXPECT_EQ(m->revoked_reason, "key leaked");

  // Both of monitor-1's edges now show as revoked.
  auto e = trust_stdout("edges --json" + admin());
  ASSERT_EQ(e.exit_code, 0) << e.output;
  for (const auto& edge : json::parse(e.output)) EXPECT_EQ(edge.at("revoked"), true) << edge.dump();
}

TEST_F(TrustOnline, ChangesNotSignedByAnOperatorAreRefusedWithExitCode6) {
  auto r = trust("revoke director-1 --reason spite" + key("mallory") + admin());
  EXPECT_EQ(r.exit_code, 6) << r.output;
  EXPECT_NE(r.output.find("acl_denied"), std::string::npos) << r.output;
  EXPECT_FALSE(registry::open_readonly(db_).find_agent("director-1")->revoked);

  auto named = trust("revoke director-1 --reason spite --operator bob" + key("alice") + admin());
  EXPECT_EQ(named.exit_code, 6) << named.output;

  auto unknown = trust("revoke nobody --reason r" + key("alice") + admin());
  EXPECT_EQ(unknown.exit_code, 5) << unknown.output;
}

TEST_F(TrustOnline, ApproveNeedsTheFingerprintThatWasPresented) {
  const std::string pending = fingerprint_of("architect-1 new key");
  auto wrong = trust("approve architect-1 --fingerprint " + fingerprint_of("other") + key("alice") + admin());
  EXPECT_EQ(wrong.exit_code, 6) << wrong.output;
  auto bad = trust("approve architect-1 --fingerprint abc" + key("alice") + admin());
  EXPECT_EQ(bad.exit_code, 2) << bad.output;

  auto ok = trust("approve architect-1 --fingerprint " + pending + key("alice") + admin());
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  auto a = registry::open_readonly(db_).find_agent("architect-1");
  EXPECT_EQ(a->fingerprint, pending);
  EXPECT_TRUE(a->pending_fingerprint.empty());
}

TEST_F(TrustOnline, ResetCountersClearsRefusals) {
  auto r = trust("reset-counters ghost --json" + key("alice") + admin());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(registry::open_readonly(db_).refusals().size(), 2u);
}

TEST(TrustCliLegacy, ABrokerWithoutTheJsonProtocolIsAClearFailure) {
  scoped_temp_dir tmp;
  build_registry(tmp.path() / "registry.db");
  const std::string endpoint = "ipc://" + (tmp.path() / "admin.sock").string();
  stand_in_broker legacy(tmp.path() / "registry.db", std::make_shared<const policy>(policy::builtin_default()), endpoint, true);
  auto r = trust("agents --admin " + shell_quote(endpoint));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("does not speak the JSON admin protocol"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace agentbus
