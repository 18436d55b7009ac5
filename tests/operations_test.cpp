// operations_test.cpp — what an operator relies on in the logs (issue 14): no key in
// use ever reaches a log line, at any level, on either side; JSON logs stay one JSON
// object per line through a TPM failure, tpm2-tss's own lines included.
#include <openssl/evp.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "client/agent_internals.hpp"
#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"
#include "tpm/tss_log.hpp"

namespace agentbus {
namespace {

using namespace std::chrono_literals;
using testing::broker_process;
using testing::connect_agent;
using testing::inbox;
using testing::text;
using testing::wait_until;

std::string to_base64(const bytes& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), raw.data(), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The forms a key could take in a log line: hex either case, base64, and the first 8
// bytes as hex (a truncated dump).
std::vector<std::string> printed_forms(const bytes& raw) {
  std::string upper = to_hex(raw);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return {to_hex(raw), upper, to_base64(raw), to_hex(bytes(raw.begin(), raw.begin() + 8))};
}

// keys_in_use collects the MAC keys an agent holds: its hop session with the broker
// (both directions) and its end-to-end sessions with each peer.
// (Copies, in this test only: the library never copies a key out of its secret_bytes.)
std::vector<bytes> keys_in_use(agent& a, const std::vector<std::string>& peers) {
  client::agent_runtime& rt = client::agent_internals::of(a);
  std::vector<bytes> keys;
  auto copy = [](const session::mac_key& k) { return bytes(k.key.view().begin(), k.key.view().end()); };
  auto add = [&](const session::session_state* s) {
    if (s == nullptr) return;
    if (const session::mac_key* k = s->send_key()) {
      keys.push_back(copy(*k));
      if (const session::mac_key* r = s->find_receive(k->session_id)) keys.push_back(copy(*r));
    }
  };
  rt.link.with_hop([&](const session::session_state& s) { add(&s); });
  for (const auto& p : peers) rt.sessions.with_session(p, add);
  return keys;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class Operations : public testing::broker_test {};

TEST_F(Operations, NoKeyInUseAppearsInAnyLogLineAtTraceLevel) {
  // Both sides at their most talkative: the broker at trace in JSON, the agents (this
  // process) at trace into a file.
  broker_process::options o;
  o.log_format = "json";
  o.log_level = "trace";
  auto& b = broker(o);
  const auto agent_log = dir_.path() / "agents.log";
  auto previous = spdlog::default_logger();
  auto file_logger = std::make_shared<spdlog::logger>("agents", std::make_shared<spdlog::sinks::basic_file_sink_mt>(agent_log.string()));
  file_logger->set_level(spdlog::level::trace);
  file_logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(file_logger);
  spdlog::set_level(spdlog::level::trace);

  std::vector<bytes> keys;
  {
    auto director = connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR");
    auto monitor = connect_agent(b, dir_.path() / "m", "monitor-1", "MONITOR");
    inbox at_director, at_monitor;
    at_director.attach(*director.client);
    at_monitor.attach(*monitor.client);
    ASSERT_TRUE(director->subscribe("metrics/cpu", at_director.handler()).ok());
    ASSERT_TRUE(director->send("monitor-1", "text/plain", text("to the monitor")).ok());
    ASSERT_TRUE(monitor->send("director-1", "text/plain", text("to the director")).ok());
    ASSERT_TRUE(monitor->publish("metrics/cpu", "application/json", text("{\"cpu\":1}")).ok());
    ASSERT_TRUE(wait_until([&] { return at_director.count() == 2 && at_monitor.count() == 1; })) << at_director.describe();
    for (auto* a : {director.client.get(), monitor.client.get()}) {
      auto k = keys_in_use(*a, {"director-1", "monitor-1"});
      keys.insert(keys.end(), k.begin(), k.end());
    }
  }
  spdlog::set_default_logger(previous);
  // Hop keys both ways for each agent, and an end-to-end session each way: the test
  // looks for real keys, not for nothing.
  ASSERT_GE(keys.size(), 6u);
  for (const auto& k : keys) ASSERT_GE(k.size(), 32u);

  const std::string broker_log = b.log();
  const std::string agents_log = read_file(agent_log);
  // The logs are not empty: they speak about the handshakes these keys came from.
  ASSERT_NE(broker_log.find("\"agent\":\"monitor-1\""), std::string::npos) << broker_log;
  ASSERT_NE(agents_log.find("identity"), std::string::npos) << agents_log;
  for (const auto& k : keys)
    for (const std::string& form : printed_forms(k)) {
      EXPECT_EQ(broker_log.find(form), std::string::npos) << "a key in the broker's log: " << form;
      EXPECT_EQ(agents_log.find(form), std::string::npos) << "a key in the agents' log: " << form;
    }
}

TEST_F(Operations, JsonLogsParseLineByLineThroughATpmFailure) {
  broker_process::options o;
  o.log_format = "json";
  auto& b = broker(o);
  auto monitor = connect_agent(b, dir_.path() / "m", "monitor-1", "MONITOR");
  // The broker's TPM goes away: the next enrolment needs a TPM signature (CHALLENGE).
  ASSERT_EQ(::kill(b.tpm_pid(), SIGKILL), 0);
  EXPECT_THROW(connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR"), std::exception);
  ASSERT_TRUE(b.running()) << "a TPM failure is the broker's problem to report, not to die of";

  ASSERT_TRUE(wait_until([&] { return b.log().find("\"logger\":\"tss2\"") != std::string::npos; }, 10s)) << b.log();
  std::istringstream in(b.log());
  std::size_t lines = 0, tss_lines = 0, errors = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    SCOPED_TRACE(line);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << "not one JSON object: " << line;
    ASSERT_TRUE(j.is_object());
    for (const char* key : {"ts", "level", "logger", "msg"}) EXPECT_TRUE(j.contains(key)) << key;
    if (j["logger"] == "tss2") ++tss_lines;
    if (j["level"] == "error" || j["level"] == "critical") ++errors;
  }
  EXPECT_GT(lines, 5u);
  EXPECT_GT(tss_lines, 0u) << "tpm2-tss's own lines come through the same logger";
  EXPECT_GT(errors, 0u) << "the failure is reported";
}

// A role's profile bounds its agents' session rekeys: the shipped high_security
// profile (DIRECTOR) rekeys every 100,000 messages or 10 minutes whatever the agent's
// options ask; a role without one keeps the options' limits.
TEST_F(Operations, ARolesProfileBoundsItsAgentsSessionRekeys) {
  auto& b = broker();
  agent_options lax;
  lax.rekey_after_messages = 5'000'000;
  lax.rekey_after = std::chrono::hours(5);
  auto director = connect_agent(b, dir_.path() / "d", "director-1", "DIRECTOR", false, lax);
  auto architect = connect_agent(b, dir_.path() / "a", "architect-1", "ARCHITECT", false, lax);
  const agent_options& d = client::agent_internals::of(*director.client).opts;
  EXPECT_EQ(d.rekey_after_messages, 100'000u);
  EXPECT_EQ(d.rekey_after, std::chrono::seconds(600));
  EXPECT_LT(d.rekey_grace, d.rekey_after);
  const agent_options& a = client::agent_internals::of(*architect.client).opts;
  EXPECT_EQ(a.rekey_after_messages, 5'000'000u);
  EXPECT_EQ(a.rekey_after, std::chrono::hours(5));
}

// tpm2-tss lines are forwarded at their level; its debug and trace lines (buffer
// dumps that hold secrets) never are.
TEST(TssLog, LinesAreForwardedAtTheirLevelAndDebugDumpsAreDropped) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_pattern("%n|%l|%v");
  auto logger = std::make_shared<spdlog::logger>("test", sink);
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  tpm::forward_tss_line("ERROR:tcti:src/tss2-tcti/tcti-swtpm.c:614:Tss2_Tcti_Swtpm_Init() Cannot connect");
  tpm::forward_tss_line("WARNING:esys:src/tss2-esys/esys_iutil.c:394:iesys_handle_to_tpm_handle() Error");
  tpm::forward_tss_line("debug:marshal:src/tss2-mu/base-types.c:300:Tss2_MU_UINT8_Marshal() SECRET-BYTES");
  tpm::forward_tss_line("trace:tcti:src/util/io.c:100:write_all() SECRET-BYTES");
  // A buffer dump: its header at debug, then hex lines with no level of their own.
  tpm::forward_tss_line("debug:tcti:src/tss2-tcti/tcti-swtpm.c:200:tcti_swtpm_transmit() sending 32 byte command buffer:");
  tpm::forward_tss_line("0000: 80 01 00 00 00 20 00 00 01 5d SECRET-BYTES");
  spdlog::set_default_logger(previous);
  const std::string text = out.str();
  EXPECT_NE(text.find("tss2|error|tcti:src/tss2-tcti/tcti-swtpm.c:614:Tss2_Tcti_Swtpm_Init() Cannot connect"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tss2|warning|esys:"), std::string::npos) << text;
  EXPECT_EQ(text.find("SECRET-BYTES"), std::string::npos) << text;
  EXPECT_NE(text.find("dropped"), std::string::npos) << "one warning says why: " << text;
}

// Asking a TPM without an endorsement key for its EK is an answer (not_attested), not
// an error: the library asks which handles exist before it reads one, so tpm2-tss
// logs nothing (it used to log three ERROR lines for every identity without an EK).
TEST(TssLog, ATpmWithoutAnEkIsAskedNotProbed) {
  testing::swtpm_process plain;  // no EK provisioned
  auto t = std::make_shared<tpm::tpm>(plain.tcti());
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_pattern("%n|%l|%v");
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  auto ek = t->read_endorsement();
  tpm::drain_tss_log();
  spdlog::set_default_logger(previous);
  ASSERT_FALSE(ek.ok());
  EXPECT_EQ(ek.error().code(), status_code::not_attested);
  EXPECT_EQ(out.str().find("tss2|"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace agentbus
