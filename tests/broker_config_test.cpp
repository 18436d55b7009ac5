// broker_config_test.cpp — the broker's TOML config: defaults, path resolution, one
// test per validation rule (each error names the file and the dotted field), and
// the configs shipped in config/ load.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <unistd.h>

#include "broker_config.hpp"
#include "socket_directory.hpp"

namespace agentbus::broker {
namespace {

namespace fs = std::filesystem;

const fs::path kFile = "/etc/agentbus/broker.toml";

// doc builds a config from key = value lines, valid until a test edits it.
struct doc {
  std::map<std::string, std::string> broker{{"endpoints", R"(["tcp://127.0.0.1:5555"])"},
                                            {"policy", R"("policy.toml")"},
                                            {"state_dir", R"("state")"}};
  std::map<std::string, std::string> identity{{"key_dir", R"("key")"}};
  std::string tail;  // further tables, verbatim

  std::string text() const {
    std::string out = "[broker]\n";
    for (const auto& [k, v] : broker) out += k + " = " + v + "\n";
    out += "\n[identity]\n";
    for (const auto& [k, v] : identity) out += k + " = " + v + "\n";
    return out + "\n" + tail;
  }
};

config_error parse_error_of(const std::string& text, const fs::path& file = kFile) {
  try {
    (void)parse_broker_config(text, file);
  } catch (const config_error& e) {
    return e;
  }
  ADD_FAILURE() << "no config_error for:\n" << text;
  return config_error("", "", "");
}

TEST(BrokerConfig, DefaultsApplyWhenOnlyRequiredKeysAreGiven) {
  const broker_config c = parse_broker_config(doc{}.text(), kFile);
  const broker_config d;
  EXPECT_EQ(c.name, "broker");
  EXPECT_EQ(c.endpoints, std::vector<std::string>{"tcp://127.0.0.1:5555"});
  EXPECT_EQ(c.admin_endpoint, "");
  EXPECT_EQ(c.tcti, "");
  EXPECT_FALSE(c.allow_software);
  EXPECT_EQ(c.suite, "ecdsa-p256-sha256");
  EXPECT_EQ(c.max_frame_bytes, 1114112u);
  EXPECT_EQ(c.max_frame_bytes, d.max_frame_bytes);
  EXPECT_EQ(c.send_hwm, 10000);
  EXPECT_EQ(c.recv_hwm, 10000);
  EXPECT_EQ(c.max_clock_skew_ms, 30000u);
  EXPECT_EQ(c.max_agents, 10000u);
  EXPECT_EQ(c.max_subscriptions_per_agent, 256u);
  EXPECT_EQ(c.heartbeat_interval_ms, 5000);
  EXPECT_TRUE(c.curve) << "TCP is CurveZMQ unless the operator turns it off";
  EXPECT_FALSE(c.admit_unknown_keys);
  EXPECT_EQ(c.curve_key_file, c.state_dir / "transport.key");
  EXPECT_EQ(c.handshake_timeout_ms, 5000);
  EXPECT_TRUE(c.wire_batches);
  EXPECT_EQ(c.rekey_after_messages, 1000000u);
  EXPECT_EQ(c.rekey_after_seconds, 3600u);
  EXPECT_EQ(c.rekey_grace_seconds, 30u);
  EXPECT_EQ(c.log_format, "text");
  EXPECT_EQ(c.log_level, "info");
}

TEST(BrokerConfig, EveryKeyIsRead) {
  doc d;
  d.broker["name"] = R"("broker-2.eu_west")";
  d.broker["endpoints"] = R"(["tcp://*:6000", "tcp://[::1]:6001", "ipc:///run/agentbus/b.sock"])";
  d.broker["admin_endpoint"] = R"("tcp://127.0.0.1:6002")";
  d.identity["tcti"] = R"("swtpm:host=127.0.0.1,port=2321")";
  d.identity["allow_software"] = "true";
  d.identity["suite"] = R"("ecdsa-p384-sha3-384")";
  d.tail = "[limits]\nmax_frame_bytes = 1024\nsend_hwm = 1\nrecv_hwm = 10000000\nmax_clock_skew_ms = 86400000\n"
           "max_agents = 1000000\nmax_subscriptions_per_agent = 1\nheartbeat_interval_ms = 0\n"
           "[sessions]\nrekey_after_messages = 9223372036854775807\nrekey_after_seconds = 31536000\nrekey_grace_seconds = 0\n"
           "[forwarding]\nwire_batches = false\n"
           "[transport]\ncurve = false\ncurve_key_file = \"/srv/keys/transport.key\"\nadmit_unknown_keys = true\n"
           "handshake_timeout_ms = 60000\n"
           "[logging]\nformat = \"json\"\nlevel = \"trace\"\n";
  const broker_config c = parse_broker_config(d.text(), kFile);
  EXPECT_FALSE(c.curve);
  EXPECT_EQ(c.curve_key_file, fs::path("/srv/keys/transport.key"));
  EXPECT_TRUE(c.admit_unknown_keys);
  EXPECT_EQ(c.handshake_timeout_ms, 60000);
  EXPECT_EQ(c.name, "broker-2.eu_west");
  EXPECT_EQ(c.endpoints.size(), 3u);
  EXPECT_EQ(c.endpoints[1], "tcp://[::1]:6001");
  EXPECT_EQ(c.admin_endpoint, "tcp://127.0.0.1:6002");
  EXPECT_EQ(c.tcti, "swtpm:host=127.0.0.1,port=2321");
  EXPECT_TRUE(c.allow_software);
  EXPECT_EQ(c.suite, "ecdsa-p384-sha3-384");
  EXPECT_EQ(c.max_frame_bytes, 1024u);
  EXPECT_EQ(c.send_hwm, 1);
  EXPECT_EQ(c.recv_hwm, 10000000);
  EXPECT_EQ(c.max_clock_skew_ms, 86400000u);
  EXPECT_EQ(c.max_agents, 1000000u);
  EXPECT_EQ(c.max_subscriptions_per_agent, 1u);
  EXPECT_EQ(c.heartbeat_interval_ms, 0);
  EXPECT_FALSE(c.wire_batches);
  EXPECT_EQ(c.rekey_after_messages, 9223372036854775807u);
  EXPECT_EQ(c.rekey_after_seconds, 31536000u);
  EXPECT_EQ(c.rekey_grace_seconds, 0u);
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.log_level, "trace");
}

TEST(BrokerConfig, RelativePathsResolveAgainstTheConfigDirectory) {
  doc d;
  d.broker["policy"] = R"("policy.toml")";
  d.broker["state_dir"] = R"("../state/./broker")";
  d.identity["key_dir"] = R"("/srv/keys/broker")";
  const broker_config c = parse_broker_config(d.text(), "/opt/agentbus/etc/broker.toml");
  EXPECT_EQ(c.policy_file, fs::path("/opt/agentbus/etc/policy.toml"));
  EXPECT_EQ(c.state_dir, fs::path("/opt/agentbus/state/broker"));
  EXPECT_EQ(c.key_dir, fs::path("/srv/keys/broker"));  // absolute paths stay as they are
}

TEST(BrokerConfig, RelativeConfigFileIsAnchoredAtTheCurrentDirectory) {
  const broker_config c = parse_broker_config(doc{}.text(), "conf/broker.toml");
  EXPECT_TRUE(c.policy_file.is_absolute()) << c.policy_file;
  EXPECT_EQ(c.policy_file, (fs::current_path() / "conf" / "policy.toml").lexically_normal());
  const broker_config unnamed = parse_broker_config(doc{}.text(), "");
  EXPECT_EQ(unnamed.state_dir, (fs::current_path() / "state").lexically_normal());
}

struct bad_case {
  std::string name;
  std::function<void(doc&)> edit;
  std::string field;
  std::string problem;  // a substring of the message
};

std::vector<bad_case> bad_cases() {
  return {
      {"name_empty", [](doc& d) { d.broker["name"] = R"("")"; }, "broker.name", "must not be empty"},
      {"name_first_not_alnum", [](doc& d) { d.broker["name"] = R"("-broker")"; }, "broker.name", "must start with"},
      {"name_space", [](doc& d) { d.broker["name"] = R"("my broker")"; }, "broker.name", "may contain only"},
      {"name_too_long", [](doc& d) { d.broker["name"] = "\"" + std::string(65, 'b') + "\""; }, "broker.name", "longer than 64"},
      {"name_not_string", [](doc& d) { d.broker["name"] = "5"; }, "broker.name", "must be a string"},
      {"endpoints_missing", [](doc& d) { d.broker.erase("endpoints"); }, "broker.endpoints", "missing"},
      {"endpoints_empty", [](doc& d) { d.broker["endpoints"] = "[]"; }, "broker.endpoints", "at least one"},
      {"endpoints_not_array", [](doc& d) { d.broker["endpoints"] = R"("tcp://127.0.0.1:5555")"; }, "broker.endpoints", "array"},
      {"endpoint_not_string", [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:5555", 5555])"; },
       "broker.endpoints[1]", "must be a string"},
      {"endpoint_scheme", [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:5555", "udp://127.0.0.1:5555"])"; },
       "broker.endpoints[1]", "unsupported transport"},
      {"endpoint_inproc", [](doc& d) { d.broker["endpoints"] = R"(["inproc://broker"])"; }, "broker.endpoints[0]", "unsupported"},
      {"endpoint_port_zero", [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:0"])"; }, "broker.endpoints[0]", "1..65535"},
      {"endpoint_port_too_big", [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:65536"])"; }, "broker.endpoints[0]", "1..65535"},
      {"endpoint_port_not_numeric", [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:http"])"; }, "broker.endpoints[0]", "1..65535"},
      {"endpoint_port_wildcard", [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:*"])"; }, "broker.endpoints[0]", "1..65535"},
      {"endpoint_no_port", [](doc& d) { d.broker["endpoints"] = R"(["tcp://localhost"])"; }, "broker.endpoints[0]", "host:port"},
      {"endpoint_no_host", [](doc& d) { d.broker["endpoints"] = R"(["tcp://:5555"])"; }, "broker.endpoints[0]", "no host"},
      {"endpoint_bare_ipv6", [](doc& d) { d.broker["endpoints"] = R"(["tcp://::1:5555"])"; }, "broker.endpoints[0]", "bracketed"},
      {"endpoint_ipc_relative", [](doc& d) { d.broker["endpoints"] = R"(["ipc://broker.sock"])"; }, "broker.endpoints[0]", "absolute"},
      {"endpoint_ipc_directory", [](doc& d) { d.broker["endpoints"] = R"(["ipc:///run/agentbus/"])"; }, "broker.endpoints[0]", "directory"},
      {"endpoint_ipc_too_long",
       [](doc& d) { d.broker["endpoints"] = "[\"ipc:///" + std::string(107, 's') + "\"]"; }, "broker.endpoints[0]", "longer than 107"},
      {"endpoint_duplicate",
       [](doc& d) { d.broker["endpoints"] = R"(["tcp://127.0.0.1:5555", "ipc:///tmp/a.sock", "tcp://127.0.0.1:5555"])"; },
       "broker.endpoints[2]", "duplicates broker.endpoints[0]"},
      {"policy_missing", [](doc& d) { d.broker.erase("policy"); }, "broker.policy", "missing"},
      {"policy_empty", [](doc& d) { d.broker["policy"] = R"("")"; }, "broker.policy", "must not be empty"},
      {"policy_not_string", [](doc& d) { d.broker["policy"] = "[\"a\"]"; }, "broker.policy", "must be a string"},
      {"state_dir_missing", [](doc& d) { d.broker.erase("state_dir"); }, "broker.state_dir", "missing"},
      {"admin_endpoint_invalid", [](doc& d) { d.broker["admin_endpoint"] = R"("ipc://admin")"; }, "broker.admin_endpoint", "absolute"},
      {"admin_endpoint_not_string", [](doc& d) { d.broker["admin_endpoint"] = "true"; }, "broker.admin_endpoint", "must be a string"},
      {"admin_endpoint_shared", [](doc& d) { d.broker["admin_endpoint"] = R"("tcp://127.0.0.1:5555")"; },
       "broker.admin_endpoint", "also in broker.endpoints"},
      {"broker_unknown_key", [](doc& d) { d.broker["nmae"] = R"("x")"; }, "broker.nmae", "did you mean 'name'"},
      {"broker_unknown_key_far", [](doc& d) { d.broker["colour"] = R"("x")"; }, "broker.colour", "unknown key"},
      {"key_dir_missing", [](doc& d) { d.identity.erase("key_dir"); }, "identity.key_dir", "missing"},
      {"key_dir_empty", [](doc& d) { d.identity["key_dir"] = R"("")"; }, "identity.key_dir", "must not be empty"},
      {"tcti_not_string", [](doc& d) { d.identity["tcti"] = "1"; }, "identity.tcti", "must be a string"},
      {"tcti_control_char", [](doc& d) { d.identity["tcti"] = R"("device:/dev/tpm\u0000rm0")"; }, "identity.tcti", "control character"},
      {"allow_software_string", [](doc& d) { d.identity["allow_software"] = R"("yes")"; }, "identity.allow_software", "true or false"},
      {"suite_empty", [](doc& d) { d.identity["suite"] = R"("")"; }, "identity.suite", "must not be empty"},
      {"suite_garbage", [](doc& d) { d.identity["suite"] = R"("ecdsa p256")"; }, "identity.suite", "not a suite name"},
      {"identity_unknown_key", [](doc& d) { d.identity["allow_sofware"] = "true"; }, "identity.allow_sofware",
       "did you mean 'allow_software'"},
      {"max_frame_bytes_low", [](doc& d) { d.tail = "[limits]\nmax_frame_bytes = 1023\n"; }, "limits.max_frame_bytes", "between 1024 and 67108864"},
      {"max_frame_bytes_high", [](doc& d) { d.tail = "[limits]\nmax_frame_bytes = 67108865\n"; }, "limits.max_frame_bytes", "(got 67108865)"},
      {"send_hwm_zero", [](doc& d) { d.tail = "[limits]\nsend_hwm = 0\n"; }, "limits.send_hwm", "between 1 and 10000000"},
      {"send_hwm_float", [](doc& d) { d.tail = "[limits]\nsend_hwm = 10.5\n"; }, "limits.send_hwm", "must be an integer"},
      {"send_hwm_string", [](doc& d) { d.tail = "[limits]\nsend_hwm = \"100\"\n"; }, "limits.send_hwm", "must be an integer"},
      {"recv_hwm_high", [](doc& d) { d.tail = "[limits]\nrecv_hwm = 10000001\n"; }, "limits.recv_hwm", "between 1 and 10000000"},
      {"clock_skew_low", [](doc& d) { d.tail = "[limits]\nmax_clock_skew_ms = 99\n"; }, "limits.max_clock_skew_ms", "between 100 and 86400000"},
      {"clock_skew_high", [](doc& d) { d.tail = "[limits]\nmax_clock_skew_ms = 86400001\n"; }, "limits.max_clock_skew_ms", "between"},
      {"max_agents_zero", [](doc& d) { d.tail = "[limits]\nmax_agents = 0\n"; }, "limits.max_agents", "between 1 and 1000000"},
      {"max_agents_negative", [](doc& d) { d.tail = "[limits]\nmax_agents = -5\n"; }, "limits.max_agents", "(got -5)"},
      {"max_subscriptions_high", [](doc& d) { d.tail = "[limits]\nmax_subscriptions_per_agent = 100001\n"; },
       "limits.max_subscriptions_per_agent", "between 1 and 100000"},
      {"heartbeat_negative", [](doc& d) { d.tail = "[limits]\nheartbeat_interval_ms = -1\n"; }, "limits.heartbeat_interval_ms",
       "between 0 and 3600000"},
      {"heartbeat_high", [](doc& d) { d.tail = "[limits]\nheartbeat_interval_ms = 3600001\n"; }, "limits.heartbeat_interval_ms",
       "(got 3600001)"},
      {"admin_not_loopback", [](doc& d) { d.broker["admin_endpoint"] = R"("tcp://0.0.0.0:6002")"; }, "broker.admin_endpoint",
       "is not loopback"},
      {"transport_unknown_key", [](doc& d) { d.tail = "[transport]\ncurv = false\n"; }, "transport.curv", "unknown key"},
      {"transport_curve_string", [](doc& d) { d.tail = "[transport]\ncurve = \"off\"\n"; }, "transport.curve", "true or false"},
      {"handshake_timeout_low", [](doc& d) { d.tail = "[transport]\nhandshake_timeout_ms = 99\n"; },
       "transport.handshake_timeout_ms", "between 100 and 60000"},
      {"curve_key_file_empty", [](doc& d) { d.tail = "[transport]\ncurve_key_file = \"\"\n"; }, "transport.curve_key_file",
       "must not be empty"},
      {"limits_unknown_key", [](doc& d) { d.tail = "[limits]\nmax_frame_byte = 2048\n"; }, "limits.max_frame_byte",
       "did you mean 'max_frame_bytes'"},
      {"limits_not_table", [](doc& d) { d.tail = "limits = 5\n"; }, "identity.limits", "unknown key"},
      {"rekey_messages_zero", [](doc& d) { d.tail = "[sessions]\nrekey_after_messages = 0\n"; }, "sessions.rekey_after_messages", "between 1 and"},
      {"rekey_seconds_zero", [](doc& d) { d.tail = "[sessions]\nrekey_after_seconds = 0\n"; }, "sessions.rekey_after_seconds", "between 1 and 31536000"},
      {"rekey_seconds_huge", [](doc& d) { d.tail = "[sessions]\nrekey_after_seconds = 31536001\n"; }, "sessions.rekey_after_seconds", "between"},
      {"rekey_grace_negative", [](doc& d) { d.tail = "[sessions]\nrekey_grace_seconds = -1\n"; }, "sessions.rekey_grace_seconds", "between 0 and"},
      {"rekey_grace_not_shorter", [](doc& d) { d.tail = "[sessions]\nrekey_after_seconds = 60\nrekey_grace_seconds = 60\n"; },
       "sessions.rekey_grace_seconds", "shorter than sessions.rekey_after_seconds (60)"},
      {"rekey_grace_vs_default", [](doc& d) { d.tail = "[sessions]\nrekey_grace_seconds = 3600\n"; }, "sessions.rekey_grace_seconds", "(3600)"},
      {"sessions_unknown_key", [](doc& d) { d.tail = "[sessions]\nrekey_after = 5\n"; }, "sessions.rekey_after", "unknown key"},
      {"forwarding_type", [](doc& d) { d.tail = "[forwarding]\nwire_batches = 1\n"; }, "forwarding.wire_batches",
       "must be true or false"},
      {"forwarding_unknown_key", [](doc& d) { d.tail = "[forwarding]\nwire_batch = true\n"; }, "forwarding.wire_batch",
       "did you mean 'wire_batches'"},
      {"log_format", [](doc& d) { d.tail = "[logging]\nformat = \"xml\"\n"; }, "logging.format", "\"text\" or \"json\""},
      {"log_level", [](doc& d) { d.tail = "[logging]\nlevel = \"warning\"\n"; }, "logging.level", "trace, debug, info, warn, error"},
      {"log_level_type", [](doc& d) { d.tail = "[logging]\nlevel = 3\n"; }, "logging.level", "must be a string"},
      {"logging_unknown_key", [](doc& d) { d.tail = "[logging]\nformats = \"json\"\n"; }, "logging.formats", "did you mean 'format'"},
      {"metrics_listen_no_port", [](doc& d) { d.tail = "[metrics]\nlisten = \"127.0.0.1\"\n"; }, "metrics.listen", "is not IPv4:port"},
      {"metrics_listen_name", [](doc& d) { d.tail = "[metrics]\nlisten = \"localhost:9464\"\n"; }, "metrics.listen", "is not IPv4:port"},
      {"metrics_listen_port", [](doc& d) { d.tail = "[metrics]\nlisten = \"127.0.0.1:65536\"\n"; }, "metrics.listen", "is not IPv4:port"},
      {"metrics_listen_octet", [](doc& d) { d.tail = "[metrics]\nlisten = \"127.0.0.256:9464\"\n"; }, "metrics.listen", "is not IPv4:port"},
      {"metrics_allow_not_array", [](doc& d) { d.tail = "[metrics]\nallow = \"127.0.0.1/32\"\n"; }, "metrics.allow", "must be an array"},
      {"metrics_allow_no_bits", [](doc& d) { d.tail = "[metrics]\nallow = [\"127.0.0.1/32\", \"10.0.0.1\"]\n"; }, "metrics.allow[1]",
       "is not an IPv4 CIDR block"},
      {"metrics_allow_bits", [](doc& d) { d.tail = "[metrics]\nallow = [\"10.0.0.0/33\"]\n"; }, "metrics.allow[0]", "is not an IPv4 CIDR"},
      {"metrics_unknown_key", [](doc& d) { d.tail = "[metrics]\nport = 9464\n"; }, "metrics.port", "unknown key"},
      {"unknown_table", [](doc& d) { d.tail = "[limit]\nsend_hwm = 5\n"; }, "limit", "did you mean 'limits'"},
      {"unknown_table_far", [](doc& d) { d.tail = "[telemetry]\nport = 5\n"; }, "telemetry", "expected one of: broker identity"},
  };
}

TEST(BrokerConfig, EveryValidationErrorNamesFileAndField) {
  for (const bad_case& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    doc d;
    c.edit(d);
    const config_error e = parse_error_of(d.text());
    EXPECT_EQ(e.file(), kFile.string());
    EXPECT_EQ(e.field(), c.field) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind(kFile.string() + ": " + c.field + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.problem), std::string::npos) << e.what();
  }
}

TEST(BrokerConfig, TablesThemselvesAreChecked) {
  const std::string identity = "[identity]\nkey_dir = \"k\"\n";
  const std::string broker = "[broker]\nendpoints = [\"tcp://127.0.0.1:1\"]\npolicy = \"p\"\nstate_dir = \"s\"\n";
  EXPECT_EQ(parse_error_of(identity).field(), "broker");
  EXPECT_NE(std::string(parse_error_of(identity).what()).find("missing table [broker]"), std::string::npos);
  EXPECT_EQ(parse_error_of(broker).field(), "identity");
  EXPECT_EQ(parse_error_of("broker = 5\n" + identity).field(), "broker");
  EXPECT_NE(std::string(parse_error_of("broker = 5\n" + identity).what()).find("must be a table"), std::string::npos);
  EXPECT_EQ(parse_error_of("limits = 5\n" + broker + identity).field(), "limits");
  EXPECT_EQ(parse_error_of("version = 1\n" + broker + identity).field(), "version");
}

TEST(BrokerConfig, ValueErrorsGiveTheLine) {
  doc d;
  d.tail = "[limits]\n\nsend_hwm = 0\n";
  const std::string text = d.text();
  // The line of "send_hwm = 0", counted from 1.
  std::size_t line = 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(text.find("send_hwm")), '\n'));
  const config_error e = parse_error_of(text);
  EXPECT_NE(std::string(e.what()).find("(line " + std::to_string(line) + ")"), std::string::npos) << e.what();
}

TEST(BrokerConfig, SyntaxErrorsGiveLineAndColumn) {
  const config_error e = parse_error_of("[broker]\nname = \"broker\"\nendpoints = [\"tcp://127.0.0.1:5555\"\n");
  EXPECT_EQ(e.file(), kFile.string());
  EXPECT_EQ(e.field().rfind("line ", 0), 0u) << e.what();
  EXPECT_NE(e.field().find(" column "), std::string::npos) << e.what();

  const config_error dup = parse_error_of("[broker]\nname = \"a\"\nname = \"b\"\n");
  EXPECT_EQ(dup.field().rfind("line 3 column", 0), 0u) << dup.what();
}

TEST(BrokerConfig, MissingFileIsAConfigError) {
  const fs::path missing = fs::temp_directory_path() / "agentbus-no-such-dir" / "broker.toml";
  try {
    (void)load_broker_config(missing);
    FAIL() << "loaded a missing file";
  } catch (const config_error& e) {
    EXPECT_EQ(e.file(), missing.string());
    EXPECT_EQ(e.field(), "(file)");
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  try {
    (void)load_broker_config(fs::temp_directory_path());
    FAIL() << "loaded a directory";
  } catch (const config_error& e) {
    EXPECT_EQ(e.field(), "(file)");
  }
}

TEST(BrokerConfig, LoadReadsTheFileAndResolvesAgainstItsDirectory) {
  const fs::path dir = fs::temp_directory_path() / ("agentbus-broker-config-" + std::to_string(::getpid()));
  fs::create_directories(dir / "etc");
  const fs::path file = dir / "etc" / "broker.toml";
  std::ofstream(file) << doc{}.text();
  const broker_config c = load_broker_config(file);
  EXPECT_EQ(c.policy_file, dir / "etc" / "policy.toml");
  EXPECT_EQ(c.key_dir, dir / "etc" / "key");

  std::ofstream(file) << doc{}.text() << "[limits]\nsend_hwm = -1\n";
  try {
    (void)load_broker_config(file);
    ADD_FAILURE() << "accepted send_hwm = -1";
  } catch (const config_error& e) {
    EXPECT_EQ(e.file(), file.string());
    EXPECT_EQ(e.field(), "limits.send_hwm");
  }
  fs::remove_all(dir);
}

TEST(BrokerConfig, ShippedDemoConfigLoads) {
  const fs::path file = fs::path(AGENTBUS_SOURCE_DIR) / "config" / "broker.toml";
  const broker_config c = load_broker_config(file);
  const fs::path root = fs::absolute(AGENTBUS_SOURCE_DIR).lexically_normal();
  auto normal = [](const fs::path& p) { return p.lexically_normal(); };
  EXPECT_EQ(c.name, "broker");
  EXPECT_EQ(c.endpoints, (std::vector<std::string>{"tcp://127.0.0.1:5555", "ipc:///tmp/agentbus/broker.sock"}));
  EXPECT_EQ(c.admin_endpoint, "ipc:///tmp/agentbus/admin.sock");
  EXPECT_EQ(normal(c.policy_file), normal(root / "config" / "policy.toml"));
  EXPECT_TRUE(fs::exists(c.policy_file)) << c.policy_file;
  EXPECT_EQ(normal(c.state_dir), normal(root / ".agentbus-state" / "broker"));
  EXPECT_EQ(normal(c.key_dir), normal(root / ".agentbus-state" / "broker" / "key"));
  EXPECT_EQ(c.tcti, "");
  EXPECT_FALSE(c.allow_software);
  EXPECT_EQ(c.log_format, "text");
  // The shipped values are the defaults.
  const broker_config d;
  EXPECT_EQ(c.max_frame_bytes, d.max_frame_bytes);
  EXPECT_EQ(c.send_hwm, d.send_hwm);
  EXPECT_EQ(c.heartbeat_interval_ms, d.heartbeat_interval_ms);
  EXPECT_EQ(c.wire_batches, d.wire_batches);
  EXPECT_EQ(c.rekey_grace_seconds, d.rekey_grace_seconds);
}

TEST(BrokerConfig, ShippedProductionConfigLoads) {
  const fs::path file = fs::path(AGENTBUS_SOURCE_DIR) / "config" / "broker.production.toml";
  const broker_config c = load_broker_config(file);
  EXPECT_EQ(c.endpoints, (std::vector<std::string>{"tcp://0.0.0.0:5555", "ipc:///run/agentbus/broker.sock"}));
  EXPECT_EQ(c.policy_file, fs::path("/etc/agentbus/policy.toml"));
  EXPECT_EQ(c.state_dir, fs::path("/var/lib/agentbus"));
  EXPECT_EQ(c.key_dir, fs::path("/var/lib/agentbus/key"));
  EXPECT_EQ(c.tcti, "device:/dev/tpmrm0");
  EXPECT_FALSE(c.allow_software);
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.heartbeat_interval_ms, 5000);
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(c.metrics_allow, std::vector<std::string>{"127.0.0.1/32"});
  EXPECT_NO_THROW(check_tpm_selection(c, file));
}

TEST(BrokerConfig, MetricsEndpointIsOffUnlessListenIsSet) {
  EXPECT_EQ(parse_broker_config(doc{}.text(), kFile).metrics_listen, "");
  doc d;
  d.tail = "[metrics]\nlisten = \"0.0.0.0:0\"\nallow = [\"10.0.0.0/8\", \"192.168.1.7/32\"]\n";
  const broker_config c = parse_broker_config(d.text(), kFile);
  EXPECT_EQ(c.metrics_listen, "0.0.0.0:0");
  EXPECT_EQ(c.metrics_allow, (std::vector<std::string>{"10.0.0.0/8", "192.168.1.7/32"}));
}

TEST(BrokerConfig, EmptyTctiWithoutSoftwareFallbackIsRefusedAtStartUp) {
  const fs::path file = fs::path(AGENTBUS_SOURCE_DIR) / "config" / "broker.toml";
  broker_config c = load_broker_config(file);
  try {
    check_tpm_selection(c, file);
    FAIL() << "accepted no TPM and no software fallback";
  } catch (const config_error& e) {
    EXPECT_EQ(e.field(), "identity.tcti");
    EXPECT_EQ(e.file(), file.string());
    EXPECT_NE(std::string(e.what()).find("--tcti"), std::string::npos) << e.what();
  }
  c.tcti = "swtpm:host=127.0.0.1,port=2321";  // as --tcti would set it
  EXPECT_NO_THROW(check_tpm_selection(c, file));
  c.tcti.clear();
  c.allow_software = true;
  EXPECT_NO_THROW(check_tpm_selection(c, file));
}

TEST(BrokerConfig, EndpointProblem) {
  for (const char* ok : {"tcp://127.0.0.1:5555", "tcp://*:1", "tcp://localhost:65535", "tcp://eth0:80", "tcp://[::1]:5555",
                         "tcp://[fe80::1%eth0]:5555", "ipc:///tmp/agentbus/broker.sock", "ipc:///x"}) {
    SCOPED_TRACE(ok);
    EXPECT_EQ(endpoint_problem(ok), std::nullopt) << *endpoint_problem(ok);
  }
  for (const char* bad : {"", "tcp://", "tcp://host:", "tcp://host:-1", "tcp://host:+80", "tcp://host:123456", "tcp://ho st:1",
                          "tcp://[::1:5", "tcp://[]:5", "tcp://a;b:5", "ipc://", "ipc:///", "ipc://@abstract", "ipc:///a\nb",
                          "TCP://127.0.0.1:5555", "pgm://eth0;239.192.1.1:5555", "ws://127.0.0.1:80"}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(endpoint_problem(bad), std::nullopt);
  }
  EXPECT_EQ(endpoint_problem("ipc:///" + std::string(106, 'a')), std::nullopt);  // 107 bytes: the limit
  EXPECT_NE(endpoint_problem("ipc:///" + std::string(107, 'a')), std::nullopt);
}

}  // namespace
}  // namespace agentbus::broker

// Issue 12, case 9: a socket directory someone else controls is refused.
namespace agentbus::broker {
namespace {
TEST(SocketDirectory, RefusesForeignWritableAndLinkedDirectories) {
  const auto base = std::filesystem::temp_directory_path() / ("agentbus-sockdir-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const auto mine = base / "mine";
  prepare_ipc_endpoint("ipc://" + (mine / "broker.sock").string());  // created, 0750
  EXPECT_EQ((std::filesystem::status(mine).permissions() & std::filesystem::perms::all),
            std::filesystem::perms::owner_all | std::filesystem::perms::group_read | std::filesystem::perms::group_exec);
  EXPECT_EQ(socket_directory_problem(mine, ::geteuid()), std::nullopt);
  prepare_ipc_endpoint("ipc://" + (mine / "broker.sock").string());  // again: accepted as it is

  auto problem = socket_directory_problem(mine, ::geteuid() + 1);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("owned by uid"), std::string::npos) << *problem;

  std::filesystem::permissions(mine, std::filesystem::perms::others_write, std::filesystem::perm_options::add);
  problem = socket_directory_problem(mine, ::geteuid());
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("writable"), std::string::npos) << *problem;
  EXPECT_THROW(prepare_ipc_endpoint("ipc://" + (mine / "broker.sock").string()), std::runtime_error);

  std::filesystem::create_directory_symlink(base, base / "link");
  problem = socket_directory_problem(base / "link", ::geteuid());
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("symbolic link"), std::string::npos) << *problem;
  prepare_ipc_endpoint("tcp://127.0.0.1:5555");  // not a path: nothing to do
  std::filesystem::remove_all(base);
}

// ---------------------------------------------------------------- [federation]

const std::string kFingerprintA(64, 'a'), kFingerprintB(64, 'b');

doc federated(const std::string& extra) {
  doc d;
  d.tail = "[federation]\nservers = [\"nats://127.0.0.1:4222\", \"tls://n2.example:4222\"]\n" + extra +
           "\n[federation.brokers]\nbroker = \"" + kFingerprintA + "\"\nwest = \"" + kFingerprintB + "\"\n";
  return d;
}

TEST(BrokerConfig, FederationIsReadWithItsDefaults) {
  const broker_config c = parse_broker_config(federated("nkey_seed_file = \"nats.nk\"\n").text(), kFile);
  EXPECT_EQ(c.federation_servers, (std::vector<std::string>{"nats://127.0.0.1:4222", "tls://n2.example:4222"}));
  EXPECT_EQ(c.federation_nkey_seed_file, fs::path("/etc/agentbus/nats.nk"));
  EXPECT_EQ(c.federation_prefix, "agentbus");
  EXPECT_EQ(c.federation_bucket, "agentbus_directory");
  EXPECT_EQ(c.federation_replicas, 3);
  EXPECT_EQ(c.federation_stale_after_ms, 5000);
  EXPECT_EQ(c.federation_brokers.size(), 2u);
  EXPECT_EQ(c.federation_brokers.at("west"), kFingerprintB);
  // Without the section: a broker alone.
  EXPECT_TRUE(parse_broker_config(doc{}.text(), kFile).federation_servers.empty());
}

TEST(BrokerConfig, FederationRefusesWhatCannotWork) {
  // No credentials: refused unless insecure_no_auth says so out loud.
  EXPECT_EQ(parse_error_of(federated("").text()).field(), "federation.nkey_seed_file");
  EXPECT_NO_THROW((void)parse_broker_config(federated("insecure_no_auth = true\n").text(), kFile));
  EXPECT_EQ(parse_error_of(federated("tls_cert = \"c.pem\"\n").text()).field(), "federation.tls_key");
  EXPECT_NO_THROW((void)parse_broker_config(federated("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").text(), kFile));
  // This broker must be listed, with a fingerprint of 64 lower-case hex digits.
  doc d = federated("insecure_no_auth = true\n");
  d.broker["name"] = "\"east\"";
  EXPECT_EQ(parse_error_of(d.text()).field(), "federation.brokers");
  doc bad_fp = federated("insecure_no_auth = true\n");
  bad_fp.tail += "north = \"ABC\"\n";
  EXPECT_EQ(parse_error_of(bad_fp.text()).field(), "federation.brokers.north");
  doc dotted = federated("insecure_no_auth = true\n");
  dotted.tail += "\"no.dots\" = \"" + kFingerprintA + "\"\n";
  EXPECT_EQ(parse_error_of(dotted.text()).field(), "federation.brokers.no.dots");
  // Server URLs, the prefix and the bucket are checked.
  doc url;
  url.tail = "[federation]\nservers = [\"http://x:1\"]\ninsecure_no_auth = true\n[federation.brokers]\nbroker = \"" +
             kFingerprintA + "\"\n";
  EXPECT_EQ(parse_error_of(url.text()).field(), "federation.servers[0]");
  EXPECT_EQ(parse_error_of(federated("insecure_no_auth = true\nsubject_prefix = \"a.b\"\n").text()).field(),
            "federation.subject_prefix");
  EXPECT_EQ(parse_error_of(federated("insecure_no_auth = true\nreplicas = 7\n").text()).field(), "federation.replicas");
  EXPECT_EQ(parse_error_of(federated("insecure_no_auth = true\nstale_after_ms = 100\n").text()).field(),
            "federation.stale_after_ms");
  EXPECT_EQ(parse_error_of(federated("insecure_no_auth = true\nsevers = 1\n").text()).field(), "federation.severs");
}

}  // namespace
}  // namespace agentbus::broker
