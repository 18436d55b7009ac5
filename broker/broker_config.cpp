#include "broker_config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <system_error>
#include <utility>

namespace agentbus::broker {

config_error::config_error(std::string file, std::string field, const std::string& problem)
    : std::runtime_error(file + ": " + field + ": " + problem), file_(std::move(file)), field_(std::move(field)) {}

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxNameLength = 64;
constexpr std::size_t kMaxSunPath = 107;  // sizeof(sockaddr_un::sun_path) - 1 on Linux

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

std::string quote_value(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (is_control(c)) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(static_cast<unsigned char>(c) >> 4) & 0xf];
      out += kHex[static_cast<unsigned char>(c) & 0xf];
    } else {
      out += c;
    }
  }
  return out + "'";
}

// edit_distance is Levenshtein's, for "did you mean" hints on unknown keys.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> tcp_problem(std::string_view rest) {
  // rest is "host:port"; the port is after the last ':' (IPv6 hosts are bracketed).
  std::size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return "tcp endpoint needs host:port";
  std::string_view host = rest.substr(0, colon);
  std::string_view port = rest.substr(colon + 1);
  if (host.empty()) return "tcp endpoint has no host (use * for all interfaces)";
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return "bracketed IPv6 host must be [address]";
    for (char c : host.substr(1, host.size() - 2))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.' && c != '%' && !is_alnum(c))
        return "invalid character in IPv6 address";
  } else if (host != "*") {
    for (char c : host)
      if (!is_alnum(c) && c != '.' && c != '-' && c != '_')
        return c == ':' ? "IPv6 hosts must be bracketed: tcp://[::1]:port" : "invalid character in tcp host";
  }
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return "tcp port must be a number 1..65535";
  unsigned value = 0;
  std::from_chars(port.data(), port.data() + port.size(), value);
  if (value < 1 || value > 65535) return "tcp port must be a number 1..65535";
  return std::nullopt;
}

std::optional<std::string> ipc_problem(std::string_view path) {
  if (path.empty() || path.front() != '/') return "ipc endpoint needs an absolute path: ipc:///dir/name.sock";
  if (path.size() == 1 || path.back() == '/') return "ipc path must name a socket file, not a directory";
  if (path.size() > kMaxSunPath) return "ipc path is longer than " + std::to_string(kMaxSunPath) + " bytes (the socket address limit)";
  if (std::any_of(path.begin(), path.end(), is_control)) return "ipc path contains a control character";
  return std::nullopt;
}

// config_reader validates one TOML document and names the file and field in every
// error; value errors also give the line, which is what an operator looks for.
class config_reader {
 public:
  explicit config_reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& field, std::string problem, const toml::node* at = nullptr) const {
    if (at != nullptr && at->source().begin.line > 0) problem += " (line " + std::to_string(at->source().begin.line) + ")";
    throw config_error(file_, field, problem);
  }

  static std::string join(std::string_view table, std::string_view key) {
    return table.empty() ? std::string(key) : std::string(table) + "." + std::string(key);
  }

  void only_keys(const toml::table& t, std::string_view where, std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) continue;
      std::string problem = where.empty() ? "unknown table or key" : "unknown key";
      std::string_view best;
      std::size_t best_distance = 3;  // suggest only close matches
      for (std::string_view a : allowed) {
        std::size_t d = edit_distance(k.str(), a);
        if (d < best_distance) best_distance = d, best = a;
      }
      if (!best.empty()) problem += "; did you mean '" + std::string(best) + "'?";
      else {
        problem += " (expected one of:";
        for (std::string_view a : allowed) problem += " " + std::string(a);
        problem += ")";
      }
      fail(join(where, k.str()), problem, &v);
    }
  }

  // table returns [key] of the document, nullptr if absent and optional.
  const toml::table* table(const toml::table& doc, std::string_view key, bool required) const {
    const toml::node* n = doc.get(key);
    if (n == nullptr) {
      if (required) fail(std::string(key), "missing table [" + std::string(key) + "]");
      return nullptr;
    }
    if (!n->is_table()) fail(std::string(key), "must be a table", n);
    return n->as_table();
  }

  std::optional<std::string> string(const toml::table& t, std::string_view where, std::string_view key, bool required) const {
    const toml::node* n = t.get(key);
    const std::string field = join(where, key);
    if (n == nullptr) {
      if (required) fail(field, "missing (required)");
      return std::nullopt;
    }
    if (!n->is_string()) fail(field, "must be a string", n);
    std::string v = n->as_string()->get();
    if (std::any_of(v.begin(), v.end(), is_control)) fail(field, "contains a control character", n);
    return v;
  }

  std::optional<bool> boolean(const toml::table& t, std::string_view where, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_boolean()) fail(join(where, key), "must be true or false", n);
    return n->as_boolean()->get();
  }

  std::optional<std::int64_t> integer(const toml::table& t, std::string_view where, std::string_view key,
                                      std::int64_t min, std::int64_t max) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    const std::string field = join(where, key);
    if (!n->is_integer()) fail(field, "must be an integer", n);
    std::int64_t v = n->as_integer()->get();
    if (v < min || v > max)
      fail(field, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " + std::to_string(v) + ")", n);
    return v;
  }

  // path reads a required path and resolves it against the config file's directory.
  fs::path path(const toml::table& t, std::string_view where, std::string_view key, const fs::path& base) const {
    std::string v = *string(t, where, key, true);
    if (v.empty()) fail(join(where, key), "must not be empty", t.get(key));
    fs::path p(v);
    return (p.is_absolute() ? p : base / p).lexically_normal();
  }

  std::string endpoint(const toml::node& n, const std::string& field) const {
    if (!n.is_string()) fail(field, "must be a string", &n);
    std::string v = n.as_string()->get();
    if (auto problem = endpoint_problem(v)) fail(field, quote_value(v) + ": " + *problem, &n);
    return v;
  }

 private:
  std::string file_;
};

fs::path anchor_directory(const fs::path& file) {
  if (file.empty()) return fs::current_path();
  return fs::absolute(file).lexically_normal().parent_path();
}

void read_broker(const config_reader& r, const toml::table& t, const fs::path& base, broker_config& c) {
  r.only_keys(t, "broker", {"name", "endpoints", "policy", "state_dir", "admin_endpoint"});
  if (auto name = r.string(t, "broker", "name", false)) {
    const toml::node* at = t.get("name");
    if (name->empty()) r.fail("broker.name", "must not be empty", at);
    if (name->size() > kMaxNameLength) r.fail("broker.name", "longer than " + std::to_string(kMaxNameLength) + " characters", at);
    if (!is_alnum(name->front())) r.fail("broker.name", quote_value(*name) + " must start with a letter or digit", at);
    for (char ch : *name)
      if (!is_alnum(ch) && ch != '.' && ch != '_' && ch != '-')
        r.fail("broker.name", quote_value(*name) + " may contain only A-Z a-z 0-9 . _ -", at);
    c.name = std::move(*name);
  }

  const toml::node* eps = t.get("endpoints");
  if (eps == nullptr) r.fail("broker.endpoints", "missing (required): list at least one endpoint");
  if (!eps->is_array()) r.fail("broker.endpoints", "must be an array of strings", eps);
  const toml::array& list = *eps->as_array();
  if (list.empty()) r.fail("broker.endpoints", "must list at least one endpoint", eps);
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string field = "broker.endpoints[" + std::to_string(i) + "]";
    std::string ep = r.endpoint(*list.get(i), field);
    auto dup = std::find(c.endpoints.begin(), c.endpoints.end(), ep);
    if (dup != c.endpoints.end())
      r.fail(field, quote_value(ep) + " duplicates broker.endpoints[" + std::to_string(dup - c.endpoints.begin()) + "]", list.get(i));
    c.endpoints.push_back(std::move(ep));
  }

  c.policy_file = r.path(t, "broker", "policy", base);
  c.state_dir = r.path(t, "broker", "state_dir", base);

  if (const toml::node* admin = t.get("admin_endpoint")) {
    c.admin_endpoint = r.endpoint(*admin, "broker.admin_endpoint");
    if (std::find(c.endpoints.begin(), c.endpoints.end(), c.admin_endpoint) != c.endpoints.end())
      r.fail("broker.admin_endpoint", quote_value(c.admin_endpoint) + " is also in broker.endpoints (the admin socket needs its own)", admin);
    // Its read requests are unauthenticated and it has neither CurveZMQ nor the
    // connection guard: never on an address other hosts reach.
    if (c.admin_endpoint.starts_with("tcp://")) {
      const std::string host = c.admin_endpoint.substr(6, c.admin_endpoint.rfind(':') - 6);
      if (!host.starts_with("127.") && host != "[::1]" && host != "localhost")
        r.fail("broker.admin_endpoint",
               quote_value(c.admin_endpoint) + " is not loopback: use ipc:// (file permissions) or tcp://127.0.0.1:PORT",
               admin);
    }
  }
}

void read_identity(const config_reader& r, const toml::table& t, const fs::path& base, broker_config& c) {
  r.only_keys(t, "identity", {"key_dir", "tcti", "allow_software", "suite"});
  c.key_dir = r.path(t, "identity", "key_dir", base);
  if (auto tcti = r.string(t, "identity", "tcti", false)) c.tcti = std::move(*tcti);
  if (auto sw = r.boolean(t, "identity", "allow_software")) c.allow_software = *sw;
  if (auto suite = r.string(t, "identity", "suite", false)) {
    const toml::node* at = t.get("suite");
    if (suite->empty()) r.fail("identity.suite", "must not be empty", at);
    for (char ch : *suite)
      if (!is_alnum(ch) && ch != '.' && ch != '_' && ch != '-') r.fail("identity.suite", quote_value(*suite) + " is not a suite name", at);
    c.suite = std::move(*suite);
  }
}

void read_transport(const config_reader& r, const toml::table& t, const fs::path& base, broker_config& c) {
  r.only_keys(t, "transport",
              {"curve", "curve_key_file", "admit_unknown_keys", "handshake_timeout_ms", "max_unauthenticated_bytes"});
  if (auto v = r.boolean(t, "transport", "curve")) c.curve = *v;
  if (t.get("curve_key_file") != nullptr) c.curve_key_file = r.path(t, "transport", "curve_key_file", base);
  if (auto v = r.boolean(t, "transport", "admit_unknown_keys")) c.admit_unknown_keys = *v;
  if (auto v = r.integer(t, "transport", "handshake_timeout_ms", 100, 60'000)) c.handshake_timeout_ms = static_cast<int>(*v);
  if (auto v = r.integer(t, "transport", "max_unauthenticated_bytes", 1 << 20, std::int64_t{64} << 30))
    c.max_unauthenticated_bytes = static_cast<std::uint64_t>(*v);
}

void read_limits(const config_reader& r, const toml::table& t, broker_config& c) {
  r.only_keys(t, "limits", {"max_frame_bytes", "send_hwm", "recv_hwm", "max_clock_skew_ms", "max_agents",
                            "max_subscriptions_per_agent", "heartbeat_interval_ms", "max_queued_bytes_per_agent",
                            "drop_stuck_consumer_seconds"});
  if (auto v = r.integer(t, "limits", "max_frame_bytes", 1024, 64 << 20)) c.max_frame_bytes = static_cast<std::size_t>(*v);
  if (auto v = r.integer(t, "limits", "send_hwm", 1, 10'000'000)) c.send_hwm = static_cast<int>(*v);
  if (auto v = r.integer(t, "limits", "recv_hwm", 1, 10'000'000)) c.recv_hwm = static_cast<int>(*v);
  if (auto v = r.integer(t, "limits", "max_clock_skew_ms", 100, 86'400'000)) c.max_clock_skew_ms = static_cast<std::uint64_t>(*v);
  if (auto v = r.integer(t, "limits", "max_agents", 1, 1'000'000)) c.max_agents = static_cast<std::size_t>(*v);
  if (auto v = r.integer(t, "limits", "max_subscriptions_per_agent", 1, 100'000))
    c.max_subscriptions_per_agent = static_cast<std::size_t>(*v);
  if (auto v = r.integer(t, "limits", "heartbeat_interval_ms", 0, 3'600'000)) c.heartbeat_interval_ms = static_cast<int>(*v);
  if (auto v = r.integer(t, "limits", "max_queued_bytes_per_agent", 1 << 20, std::int64_t{64} << 30))
    c.max_queued_bytes_per_agent = static_cast<std::uint64_t>(*v);
  if (auto v = r.integer(t, "limits", "drop_stuck_consumer_seconds", 0, 86'400))
    c.drop_stuck_consumer_seconds = static_cast<int>(*v);
}

void read_sessions(const config_reader& r, const toml::table& t, broker_config& c) {
  constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
  r.only_keys(t, "sessions", {"rekey_after_messages", "rekey_after_seconds", "rekey_grace_seconds"});
  if (auto v = r.integer(t, "sessions", "rekey_after_messages", 1, kInt64Max)) c.rekey_after_messages = static_cast<std::uint64_t>(*v);
  if (auto v = r.integer(t, "sessions", "rekey_after_seconds", 1, 31'536'000)) c.rekey_after_seconds = static_cast<std::uint64_t>(*v);
  if (auto v = r.integer(t, "sessions", "rekey_grace_seconds", 0, 31'536'000)) c.rekey_grace_seconds = static_cast<std::uint64_t>(*v);
}

void read_forwarding(const config_reader& r, const toml::table& t, broker_config& c) {
  r.only_keys(t, "forwarding", {"wire_batches"});
  if (auto v = r.boolean(t, "forwarding", "wire_batches")) c.wire_batches = *v;
}

// ipv4_problem says why `s` is not a dotted-quad IPv4 address.
std::optional<std::string> ipv4_problem(std::string_view s) {
  int parts = 0;
  std::size_t i = 0;
  while (i <= s.size()) {
    const std::size_t dot = std::min(s.find('.', i), s.size());
    const std::string_view part = s.substr(i, dot - i);
    if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(part)) > 255)
      return "is not an IPv4 address";
    ++parts;
    i = dot + 1;
  }
  if (parts != 4) return "is not an IPv4 address";
  return std::nullopt;
}

void read_metrics(const config_reader& r, const toml::table& t, broker_config& c) {
  r.only_keys(t, "metrics", {"listen", "allow"});
  if (auto v = r.string(t, "metrics", "listen", false)) {
    const toml::node* at = t.get("listen");
    if (!v->empty()) {
      const auto colon = v->rfind(':');
      const std::string port = colon == std::string::npos ? "" : v->substr(colon + 1);
      if (colon == std::string::npos || ipv4_problem(v->substr(0, colon)) || port.empty() || port.size() > 5 ||
          !std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) || std::stoi(port) > 65535)
        r.fail("metrics.listen", quote_value(*v) + " is not IPv4:port (e.g. \"127.0.0.1:9464\"; port 0 picks a free one)", at);
    }
    c.metrics_listen = std::move(*v);
  }
  if (const toml::node* n = t.get("allow")) {
    const toml::array* a = n->as_array();
    if (a == nullptr) r.fail("metrics.allow", "must be an array of IPv4 CIDR blocks", n);
    c.metrics_allow.clear();
    for (std::size_t i = 0; i < a->size(); ++i) {
      const std::string field = "metrics.allow[" + std::to_string(i) + "]";
      const toml::node& e = *a->get(i);
      if (!e.is_string()) r.fail(field, "must be a string", &e);
      const std::string block = e.as_string()->get();
      const auto slash = block.find('/');
      const std::string bits = slash == std::string::npos ? "" : block.substr(slash + 1);
      if (slash == std::string::npos || ipv4_problem(block.substr(0, slash)) || bits.empty() || bits.size() > 2 ||
          !std::all_of(bits.begin(), bits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) || std::stoi(bits) > 32)
        r.fail(field, quote_value(block) + " is not an IPv4 CIDR block (e.g. \"127.0.0.1/32\")", &e);
      c.metrics_allow.push_back(block);
    }
  }
}

bool is_subject_token(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         std::all_of(s.begin(), s.end(), [](char ch) { return is_alnum(ch) || ch == '_' || ch == '-'; });
}

void read_federation(const config_reader& r, const toml::table& t, const fs::path& base, broker_config& c) {
  r.only_keys(t, "federation", {"servers", "subject_prefix", "bucket", "replicas", "nkey_seed_file", "tls_ca", "tls_cert",
                                "tls_key", "insecure_no_auth", "brokers", "stale_after_ms"});
  const toml::node* servers = t.get("servers");
  if (servers == nullptr || !servers->is_array() || servers->as_array()->empty())
    r.fail("federation.servers", "must list at least one NATS server URL (nats://host:port or tls://host:port)", servers);
  const toml::array& list = *servers->as_array();
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string field = "federation.servers[" + std::to_string(i) + "]";
    const toml::node& n = *list.get(i);
    if (!n.is_string()) r.fail(field, "must be a string", &n);
    const std::string url = n.as_string()->get();
    const bool nats = url.starts_with("nats://"), tls = url.starts_with("tls://");
    const std::string_view rest = std::string_view(url).substr(nats ? 7 : tls ? 6 : 0);
    if ((!nats && !tls) || tcp_problem(rest)) r.fail(field, quote_value(url) + " is not nats://host:port or tls://host:port", &n);
    c.federation_servers.push_back(url);
  }
  if (auto v = r.string(t, "federation", "subject_prefix", false)) {
    if (!is_subject_token(*v)) r.fail("federation.subject_prefix", quote_value(*v) + " is not a token of A-Z a-z 0-9 _ - (at most 64)", t.get("subject_prefix"));
    c.federation_prefix = std::move(*v);
  }
  if (auto v = r.string(t, "federation", "bucket", false)) {
    if (!is_subject_token(*v)) r.fail("federation.bucket", quote_value(*v) + " is not a token of A-Z a-z 0-9 _ - (at most 64)", t.get("bucket"));
    c.federation_bucket = std::move(*v);
  }
  if (auto v = r.integer(t, "federation", "replicas", 1, 5)) c.federation_replicas = static_cast<int>(*v);
  if (auto v = r.integer(t, "federation", "stale_after_ms", 2000, 600000)) c.federation_stale_after_ms = static_cast<int>(*v);
  if (t.get("nkey_seed_file")) c.federation_nkey_seed_file = r.path(t, "federation", "nkey_seed_file", base);
  if (t.get("tls_ca")) c.federation_tls_ca = r.path(t, "federation", "tls_ca", base);
  if (t.get("tls_cert")) c.federation_tls_cert = r.path(t, "federation", "tls_cert", base);
  if (t.get("tls_key")) c.federation_tls_key = r.path(t, "federation", "tls_key", base);
  if (auto v = r.boolean(t, "federation", "insecure_no_auth")) c.federation_insecure_no_auth = *v;
  if (c.federation_tls_cert.empty() != c.federation_tls_key.empty())
    r.fail(c.federation_tls_cert.empty() ? "federation.tls_cert" : "federation.tls_key", "tls_cert and tls_key go together");
  if (c.federation_nkey_seed_file.empty() && c.federation_tls_cert.empty() && !c.federation_insecure_no_auth)
    r.fail("federation.nkey_seed_file",
           "the broker must authenticate to NATS: set nkey_seed_file, or tls_cert and tls_key (insecure_no_auth = true: "
           "loopback tests only)");
  const toml::node* brokers = t.get("brokers");
  if (brokers == nullptr || !brokers->is_table() || brokers->as_table()->empty())
    r.fail("federation.brokers", "must name every broker of the federation: name = \"identity fingerprint (hex)\"", brokers);
  for (auto&& [k, v] : *brokers->as_table()) {
    const std::string field = "federation.brokers." + std::string(k.str());
    if (!is_subject_token(k.str())) r.fail(field, "a broker name here is a token of A-Z a-z 0-9 _ -", &v);
    const std::string fp = v.is_string() ? v.as_string()->get() : std::string();
    if (fp.size() != 64 || !std::all_of(fp.begin(), fp.end(), [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); }))
      r.fail(field, "must be the broker's identity fingerprint: 64 lower-case hex digits (agentbus-trust broker)", &v);
    c.federation_brokers.emplace(std::string(k.str()), fp);
  }
  if (!c.federation_brokers.count(c.name))
    r.fail("federation.brokers", "does not name this broker ('" + c.name + "'): list every broker, this one too", brokers);
}

void read_logging(const config_reader& r, const toml::table& t, broker_config& c) {
  r.only_keys(t, "logging", {"format", "level"});
  if (auto v = r.string(t, "logging", "format", false)) {
    if (*v != "text" && *v != "json") r.fail("logging.format", quote_value(*v) + " is not \"text\" or \"json\"", t.get("format"));
    c.log_format = std::move(*v);
  }
  if (auto v = r.string(t, "logging", "level", false)) {
    static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error"};
    if (std::find(std::begin(kLevels), std::end(kLevels), *v) == std::end(kLevels))
      r.fail("logging.level", quote_value(*v) + " is not one of trace, debug, info, warn, error", t.get("level"));
    c.log_level = std::move(*v);
  }
}

}  // namespace

std::optional<std::string> endpoint_problem(std::string_view endpoint) {
  constexpr std::string_view kTcp = "tcp://", kIpc = "ipc://";
  if (endpoint.starts_with(kTcp)) return tcp_problem(endpoint.substr(kTcp.size()));
  if (endpoint.starts_with(kIpc)) return ipc_problem(endpoint.substr(kIpc.size()));
  return "unsupported transport (use tcp://host:port or ipc:///absolute/path)";
}

broker_config parse_broker_config(std::string_view toml_text, const std::filesystem::path& file) {
  const std::string source = file.string();
  config_reader r(source);
  toml::table doc;
  try {
    doc = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << "line " << e.source().begin.line << " column " << e.source().begin.column;
    throw config_error(source, where.str(), std::string(e.description()));
  }

  const fs::path base = anchor_directory(file);
  broker_config c;
  r.only_keys(doc, "", {"broker", "identity", "transport", "limits", "sessions", "forwarding", "metrics", "federation", "logging"});
  read_broker(r, *r.table(doc, "broker", true), base, c);
  read_identity(r, *r.table(doc, "identity", true), base, c);
  if (const toml::table* t = r.table(doc, "transport", false)) read_transport(r, *t, base, c);
  if (c.curve_key_file.empty()) c.curve_key_file = c.state_dir / "transport.key";
  if (const toml::table* t = r.table(doc, "limits", false)) read_limits(r, *t, c);
  if (const toml::table* t = r.table(doc, "sessions", false)) read_sessions(r, *t, c);
  if (const toml::table* t = r.table(doc, "forwarding", false)) read_forwarding(r, *t, c);
  if (const toml::table* t = r.table(doc, "metrics", false)) read_metrics(r, *t, c);
  if (const toml::table* t = r.table(doc, "logging", false)) read_logging(r, *t, c);
  // After [broker]: the federation must name this broker.
  if (const toml::table* t = r.table(doc, "federation", false)) read_federation(r, *t, base, c);

  // With a grace window as long as the rekey interval, a key would still be in its
  // grace period when its successor is replaced: a setting that cannot do what it says.
  if (c.rekey_grace_seconds >= c.rekey_after_seconds) {
    const toml::node* at = nullptr;
    if (const toml::table* t = r.table(doc, "sessions", false)) at = t->get("rekey_grace_seconds");
    r.fail("sessions.rekey_grace_seconds",
           "must be shorter than sessions.rekey_after_seconds (" + std::to_string(c.rekey_after_seconds) + ")", at);
  }
  return c;
}

broker_config load_broker_config(const std::filesystem::path& file) {
  std::error_code type_ec;
  if (fs::is_directory(file, type_ec)) throw config_error(file.string(), "(file)", "cannot open: is a directory");
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec(errno, std::generic_category());
    throw config_error(file.string(), "(file)", "cannot open: " + ec.message());
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw config_error(file.string(), "(file)", "cannot read");
  return parse_broker_config(text.str(), file);
}

void check_tpm_selection(const broker_config& config, const std::filesystem::path& file) {
  if (!config.tcti.empty() || config.allow_software) return;
  throw config_error(file.string(), "identity.tcti",
                     "no TPM selected: set identity.tcti (e.g. \"device:/dev/tpmrm0\" or \"swtpm:host=127.0.0.1,port=2321\") "
                     "or pass --tcti; or set identity.allow_software = true to use a software key (protection=software)");
}

}  // namespace agentbus::broker
