// broker_config.hpp — the broker's TOML configuration (config/broker.toml).
//
// The file has the tables [broker], [identity], [transport], [limits], [sessions],
// [forwarding], [metrics] and [logging].
// Every key is checked: unknown keys and tables are errors (a typo such as
// `max_frame_byte` must not silently leave the default in place), wrong types are
// errors, numbers are range-checked, and every error names the file and the dotted
// field. schemas/ is not involved: this is operator configuration, not wire format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace agentbus::broker {

// config_error is thrown when a broker config cannot be read or is invalid. what()
// is "file: field: problem", e.g. "config/broker.toml: limits.send_hwm: must be
// between 1 and 10000000 (got 0) (line 14)". field() is a dotted path with 0-based
// array indices ("broker.endpoints[1]"), "(file)" when the file cannot be read, or
// "line N column M" for a TOML syntax error.
class config_error : public std::runtime_error {
 public:
  config_error(std::string file, std::string field, const std::string& problem);
  const std::string& file() const noexcept { return file_; }
  const std::string& field() const noexcept { return field_; }

 private:
  std::string file_;
  std::string field_;
};

// broker_config is the validated content of a broker config file. Relative paths in
// the file are already resolved against the directory of the config file and
// normalised (absolute, no "." or ".." components). A plain value type: copy it freely.
struct broker_config {
  // [broker]
  std::string name = "broker";                 // token [A-Za-z0-9._-], first alnum, at most 64 chars
  std::vector<std::string> endpoints;          // at least one, distinct: "tcp://host:port" or "ipc:///abs/path"
  std::filesystem::path policy_file;           // required ("policy")
  std::filesystem::path state_dir;             // required
  std::string admin_endpoint;                  // optional; empty = no admin socket; not one of `endpoints`

  // [identity]
  std::filesystem::path key_dir;               // required
  std::string tcti;                            // empty allowed here; see check_tpm_selection
  bool allow_software = false;
  std::string suite = "ecdsa-p256-sha256";     // checked against the policy by the broker, not here

  // [transport] (tcp:// endpoints; ipc:// stays plain behind file permissions)
  // curve: CurveZMQ on every tcp:// endpoint, with a ZAP handler that admits only the
  // client keys of usable tokens and enrolled agents. false: TCP in clear (logged at
  // critical level), for loopback tests and benchmarks.
  bool curve = true;
  // The broker's CurveZMQ secret (made on first start, mode 0600); default
  // <state_dir>/transport.key.
  std::filesystem::path curve_key_file;
  // admit_unknown_keys: admit any client key (needed for roles with enrolment =
  // "open" over TCP). Unknown peers may then send before anything authenticates
  // them, which gives up the bound on what they can make the broker hold.
  bool admit_unknown_keys = false;
  // A TCP connection that has not finished its ZMTP/CurveZMQ handshake this long
  // after it opened is closed, with whatever it made the broker hold.
  int handshake_timeout_ms = 5000;                  // 100 .. 60,000
  // What TCP connections no agent has enrolled over may make the broker hold
  // together (bytes received + 32 KiB each, connection_guard.hpp); past it the
  // largest are closed.
  std::uint64_t max_unauthenticated_bytes = 64ull << 20;  // 1 MiB .. 64 GiB

  // [limits]
  // 1 MiB of payload plus 64 KiB of headroom for the signed header and the auth part.
  std::size_t max_frame_bytes = 1u << 20 | 65536;   // 1024 .. 64 MiB
  int send_hwm = 10000, recv_hwm = 10000;           // 1 .. 10,000,000
  // What the broker may hold for one recipient that does not read, in bytes (counted
  // until ZeroMQ has written them out), besides the send_hwm messages; past it
  // senders are told `overloaded`.
  std::uint64_t max_queued_bytes_per_agent = 256ull << 20;  // 1 MiB .. 64 GiB
  // A recipient for which bytes have waited this long without any being written out
  // loses its connection (it re-enrols when it reads again); 0 never drops one.
  int drop_stuck_consumer_seconds = 0;              // 0 .. 86,400
  std::uint64_t max_clock_skew_ms = 30000;          // 100 .. 86,400,000
  std::size_t max_agents = 10000;                   // 1 .. 1,000,000
  std::size_t max_subscriptions_per_agent = 256;    // 1 .. 100,000
  // ZMTP heartbeats on every agent connection: ping interval, timeout 3x (0 = off).
  int heartbeat_interval_ms = 5000;                 // 0 .. 3,600,000

  // [forwarding]
  // The envelopes of one received wire batch leave as one wire batch per recipient
  // (one hop MAC, one ZeroMQ message). Agents older than this broker do not know
  // BATCH from the broker: false forwards envelope by envelope.
  bool wire_batches = true;

  // [sessions]
  std::uint64_t rekey_after_messages = 1000000;     // >= 1
  std::uint64_t rekey_after_seconds = 3600;         // 1 .. 31,536,000 (a year; keeps chrono::nanoseconds safe)
  std::uint64_t rekey_grace_seconds = 30;           // 0 .. rekey_after_seconds - 1

  // [metrics]
  // listen: where the HTTP endpoint for Prometheus (/metrics, /healthz, /readyz)
  // listens, "IPv4:port" (port 0: a free one, logged and named by the admin
  // `broker` request); empty: no endpoint. allow: the client address blocks it
  // answers (IPv4 CIDR); everyone else is refused before a request is read.
  std::string metrics_listen;
  std::vector<std::string> metrics_allow = {"127.0.0.1/32"};

  // [federation] (docs/federation.md, schemas/federation.md): brokers that share one
  // NATS cluster. Without `servers` the broker is alone and nothing below is used.
  std::vector<std::string> federation_servers;       // nats://host:port or tls://host:port
  std::string federation_prefix = "agentbus";        // subject prefix: a token [A-Za-z0-9_-]
  std::string federation_bucket = "agentbus_directory";  // JetStream KV bucket [A-Za-z0-9_-]
  int federation_replicas = 3;                       // 1 .. 5: the bucket's replicas when this broker creates it
  // How the broker authenticates to NATS: an NKEY seed file (user seed, "SU..."), or
  // a TLS client certificate and key; tls_ca verifies the servers. Neither is a
  // config error unless insecure_no_auth (loopback tests only; logged as critical).
  std::filesystem::path federation_nkey_seed_file;
  std::filesystem::path federation_tls_ca, federation_tls_cert, federation_tls_key;
  bool federation_insecure_no_auth = false;
  // The brokers of the federation, this one included: name → identity key fingerprint
  // (lower-case hex). Directory entries signed by anyone else are ignored.
  std::map<std::string, std::string, std::less<>> federation_brokers;
  int federation_stale_after_ms = 5000;              // 2,000 .. 600,000: a broker silent this long is presumed down

  // [logging]
  std::string log_format = "text";                  // "text" or "json"
  std::string log_level = "info";                   // trace, debug, info, warn, error
};

// load_broker_config reads and validates `file`. Throws config_error: field "(file)"
// when the file cannot be read, "line N column M" for TOML syntax, else the field.
broker_config load_broker_config(const std::filesystem::path& file);

// parse_broker_config validates TOML text. `file_for_errors_and_relative_paths` names
// the text in errors, and its directory (made absolute against the current
// directory; the current directory itself if the path is empty) anchors relative
// paths. Throws config_error.
broker_config parse_broker_config(std::string_view toml, const std::filesystem::path& file_for_errors_and_relative_paths);

// check_tpm_selection throws config_error(file, "identity.tcti", ...) when the config
// selects no TPM (empty tcti) and does not allow a software key. The loaders do not
// apply this rule, because the broker accepts `--tcti` on the command line: call it
// after command-line overrides, before opening the identity.
void check_tpm_selection(const broker_config& config, const std::filesystem::path& file);

// endpoint_problem returns why `endpoint` is not a bindable endpoint, or nullopt if
// it is one: "tcp://host:port" (host a name, an IPv4 address, "*" or a bracketed
// IPv6 address; port 1..65535) or "ipc:///absolute/path" (at most 107 bytes, the
// sun_path limit). For command-line overrides of endpoints.
std::optional<std::string> endpoint_problem(std::string_view endpoint);

}  // namespace agentbus::broker
