// example_agent.cpp — shared start-up and output for the example agents.
#include "example_agent.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

namespace agentbus::examples {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_signal(int) { g_stop.store(true); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

std::mutex g_out_mutex;

}  // namespace

bool stop_requested() noexcept { return g_stop.load(); }

void say(std::string_view name, std::string_view text) {
  std::lock_guard lock(g_out_mutex);
  std::string line = fmt::format("[{}] {}\n", name, text);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

std::string payload_text(byte_view payload, std::size_t max) {
  bool printable = true;
  for (std::uint8_t c : payload)
    if (c < 0x20 || c > 0x7e) {
      printable = false;
      break;
    }
  if (printable) {
    std::string s(reinterpret_cast<const char*>(payload.data()), payload.size());
    if (s.size() > max) s = s.substr(0, max) + "...";
    return s;
  }
  std::size_t n = std::min(payload.size(), max / 2);
  return fmt::format("hex:{}{} ({} bytes)", to_hex(payload.first(n)), n < payload.size() ? "..." : "",
                     payload.size());
}

std::string origin(const message& m) {
  return fmt::format("from {} ({}, {}, {})", m.header.sender, m.sender_role, m.header.suite, assurance_name(m.level));
}

std::string channel(const message& m) {
  return m.header.to_kind == recipient_kind::topic ? "topic " + m.header.to : std::string("direct");
}

std::string short_id(const bytes& id) {
  if (id.empty()) return "-";
  return to_hex(byte_view(id.data(), std::min<std::size_t>(id.size(), 4)));
}

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

std::function<std::shared_ptr<identity_key>(std::shared_ptr<identity_key>)>& identity_wrapper() {
  static std::function<std::shared_ptr<identity_key>(std::shared_ptr<identity_key>)> wrap;
  return wrap;
}

void add_options(CLI::App& app, example_options& opts, double default_seconds) {
  opts.seconds = default_seconds;
  app.add_option("--name", opts.name, "Agent name (the broker pins it to the role and key)")->capture_default_str();
  app.add_option("--role", opts.role, "Role from the policy")->capture_default_str();
  app.add_option("--key-dir", opts.key_dir, "Identity key directory; created (key included) if it holds no identity yet "
                                            "(default: keys/<name>)");
  auto* tcti = app.add_option("--tcti", opts.tcti, "TPM holding the identity key, e.g. swtpm:path=/tmp/x/sock "
                                                   "(default: $AGENTBUS_TCTI; never a guessed address)");
  app.add_option("--broker", opts.broker, "Broker endpoint (default: the enrolment bundle's, else tcp://127.0.0.1:5555)");
  app.add_option("--broker-transport-key", opts.broker_transport_key,
                 "The broker's CurveZMQ key for a tcp:// endpoint (`agentbus-trust broker`; default: the bundle's)");
  app.add_option("--broker-fingerprint", opts.broker_fingerprint,
                 "The broker's identity key (hex SHA-256, `agentbus-trust broker` prints it); required unless the "
                 "enrolment bundle names it or --insecure-any-broker");
  app.add_option("--enrolment-bundle", opts.enrolment_bundle,
                 "The bundle an operator issued for this agent (`agentbus-trust token create --out`): its token, the "
                 "broker's fingerprint and endpoint");
  app.add_flag("--insecure-any-broker", opts.insecure_any_broker,
               "Enrol with whichever broker answers (no fingerprint): anyone on the path can pose as the broker");
  app.add_option("--policy", opts.policy_file, "Policy file (the broker's)")->capture_default_str();
  app.add_flag("--software", opts.software, "Create a software identity key (protection=software) instead of a TPM key")
      ->excludes(tcti);
  app.add_flag("--batch", opts.batch, "Sign in tpm-batch mode: one TPM signature per Merkle batch of envelopes (TPM keys "
                                      "only; session offers stay directly signed)");
  app.add_option("--seconds", opts.seconds, "Run time in seconds (0 = until SIGINT/SIGTERM)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-level", opts.log_level, "Library log level on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
}

example_agent::example_agent(const example_options& opts) : opts_(opts) {
  // 1. Policy: the role must exist, its suite decides the key type.
  try {
    policy_ = std::make_shared<const policy>(policy::load_file(opts_.policy_file));
  } catch (const policy_error& e) {
    throw setup_error(std::string("policy: ") + e.what());
  }
  auto role_suite = policy_->suite_for(opts_.role);
  if (!role_suite) throw setup_error("role " + opts_.role + ": " + role_suite.error().to_string());

  // 2. Identity key: open the directory's, or create one (TPM or software).
  fs::path dir = opts_.key_dir;
  bool created = false;
  try {
    if (!fs::exists(dir / "identity.toml")) {
      if (opts_.software) {
        key_ = identity_key::create_software(dir, opts_.role, *role_suite);
      } else {
        if (opts_.tcti.empty())
          throw setup_error("no identity in " + dir.string() +
                            " and no TPM named: pass --tcti (or $AGENTBUS_TCTI), or --software for a flagged software key");
        tpm_ = connect_tpm(opts_.tcti, /*allow_software_fallback=*/false);
        auto made = identity_key::create_tpm(dir, opts_.role, *role_suite, tpm_);
        if (!made) throw setup_error("creating the identity key in " + opts_.tcti + ": " + made.error().to_string());
        key_ = std::move(made).value();
      }
      created = true;
    } else {
      identity_metadata meta = identity_key::read_metadata(dir);
      if (meta.role != opts_.role)
        throw setup_error(fmt::format("{} holds a {} identity, not {}", dir.string(), meta.role, opts_.role));
      if (meta.key_protection == protection::tpm) {
        if (opts_.software)
          throw setup_error(dir.string() + " holds a TPM identity but --software was given");
        if (opts_.tcti.empty())
          throw setup_error(dir.string() + " holds a TPM identity: name its TPM with --tcti (or $AGENTBUS_TCTI)");
        tpm_ = connect_tpm(opts_.tcti, /*allow_software_fallback=*/false);
      }
      key_ = identity_key::open(dir, tpm_);
    }
  } catch (const identity_error& e) {
    throw setup_error(std::string("key directory: ") + e.what());
  } catch (const tpm::tpm_error& e) {
    throw setup_error(std::string("TPM: ") + e.what());
  }
  if (identity_wrapper()) key_ = identity_wrapper()(key_);
  const identity_metadata& meta = key_->metadata();
  if (created)
    say(fmt::format("KEY created in {}: {} ({}), protection={}, fingerprint={}", dir.string(), meta.key_suite.name,
                    meta.key_suite.key.describe(), protection_name(meta.key_protection), meta.fingerprint.substr(0, 16)));

  // 3. Enrol (throws enrolment_error when refused or unreachable).
  agent_options ao;
  ao.name = opts_.name;
  if (!opts_.enrolment_bundle.empty()) {
    const std::string role = load_enrolment_bundle(opts_.enrolment_bundle, ao);
    if (ao.name != opts_.name || role != opts_.role)
      throw std::runtime_error("the enrolment bundle " + opts_.enrolment_bundle + " is for " + ao.name + " (" + role +
                               "), not " + opts_.name + " (" + opts_.role + ")");
  }
  if (!opts_.broker.empty()) ao.broker_endpoint = opts_.broker;
  if (ao.broker_endpoint.empty()) ao.broker_endpoint = "tcp://127.0.0.1:5555";
  if (!opts_.broker_fingerprint.empty()) ao.broker_fingerprint = opts_.broker_fingerprint;
  if (!opts_.broker_transport_key.empty()) ao.broker_transport_key = opts_.broker_transport_key;
  ao.insecure_trust_any_broker = opts_.insecure_any_broker;
  ao.batch_signing = opts_.batch;
  agent_ = std::make_unique<agent>(ao, key_, policy_);
  agent_->on_rejected([this](const rejection& r) { print_rejection(r); });

  std::string prot(protection_name(meta.key_protection));
  if (meta.key_protection == protection::tpm)
    prot += fmt::format(" ({}{})", meta.tpm_manufacturer, meta.tpm_simulator ? " simulator" : "");
  say(fmt::format("READY role={} suite={} protection={} fingerprint={} broker={}", opts_.role, meta.key_suite.name, prot,
                  meta.fingerprint.substr(0, 16), ao.broker_endpoint));
}

example_agent::~example_agent() = default;

void example_agent::print_delivery(const message& m, std::string_view verb) const {
  say(fmt::format("{} {}: {}: {}", verb, origin(m), channel(m), payload_text(m.header.payload)));
}

void example_agent::print_rejection(const rejection& r) const {
  if (r.where == "broker")
    say(fmt::format("REFUSED by broker: {} (to {}, id {})", r.reason.to_string(), r.recipient.empty() ? "-" : r.recipient,
                    short_id(r.message_id)));
  else
    say(fmt::format("REJECTED at receive from {}: {} (id {}{})", r.sender.empty() ? "?" : r.sender, r.reason.to_string(),
                    short_id(r.message_id), r.where == "receiver" || r.where.empty() ? "" : ", where " + r.where));
}

bool example_agent::check(const status& st, std::string_view what) {
  if (st.ok()) return true;
  ++failures_;
  say(fmt::format("FAILED {}: {}", what, st.to_string()));
  return false;
}

void example_agent::on_rejected(rejection_handler extra) {
  agent_->on_rejected([this, extra = std::move(extra)](const rejection& r) {
    print_rejection(r);
    if (extra) extra(r);
  });
}

bool example_agent::run_for(std::chrono::milliseconds period, const std::function<void()>& tick) {
  using clock = std::chrono::steady_clock;
  const bool forever = opts_.seconds <= 0;
  const auto end = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(opts_.seconds));
  auto next_tick = clock::now();
  while (!stop_requested()) {
    auto now = clock::now();
    if (!forever && now >= end) return true;
    if (tick && now >= next_tick) {
      tick();
      next_tick += period;
      if (next_tick < now) next_tick = now + period;  // fell behind: do not burst
    }
    auto wake = std::min(now + std::chrono::milliseconds(50), tick ? next_tick : now + std::chrono::milliseconds(50));
    if (!forever) wake = std::min(wake, end);
    std::this_thread::sleep_until(wake);
  }
  return false;
}

bool example_agent::wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (stop_requested() || std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void example_agent::print_stats() const {
  agent_stats s = agent_->stats();
  say(fmt::format("STATS sent={} received={} rejected_at_receive={} refused_by_broker={} sessions={} rekeys={}", s.sent,
                  s.received, s.rejected_at_receive, s.refused_by_broker, s.sessions, s.rekeys));
}

void set_identity_wrapper(std::function<std::shared_ptr<identity_key>(std::shared_ptr<identity_key>)> wrap) {
  identity_wrapper() = std::move(wrap);
}

int run_example(int argc, char** argv, std::string_view description, std::string_view default_name,
                std::string_view default_role, double default_seconds,
                const std::function<void(CLI::App&)>& extra_options,
                const std::function<int(example_agent&)>& body) {
  CLI::App app{std::string(description)};
  example_options opts;
  opts.name = default_name;
  opts.role = default_role;
  add_options(app, opts, default_seconds);
  if (extra_options) extra_options(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (opts.tcti.empty() && !opts.software) {
    if (const char* env = std::getenv("AGENTBUS_TCTI")) opts.tcti = env;
  }
  if (opts.key_dir.empty()) opts.key_dir = "keys/" + opts.name;

  // Library logs go to stderr; stdout carries only the example's event lines.
  spdlog::set_default_logger(spdlog::stderr_color_mt(opts.name));
  spdlog::set_level(spdlog::level::from_str(opts.log_level));
  install_signal_handlers();

  int rc = kExitOk;
  try {
    example_agent a(opts);
    rc = body(a);
    a.print_stats();
  } catch (const enrolment_error& e) {
    // what() usually names the code already ("enrolment refused: software_key_refused: ...").
    std::string what = e.what();
    std::string code(status_code_name(e.code()));
    say(opts.name, fmt::format("REFUSED by broker at enrolment: {}", what.find(code) != std::string::npos ? what : code + ": " + what));
    rc = kExitEnrolment;
  } catch (const setup_error& e) {
    say(opts.name, fmt::format("SETUP FAILED: {}", e.what()));
    rc = kExitSetup;
  } catch (const std::exception& e) {
    say(opts.name, fmt::format("FAILED: {}", e.what()));
    rc = kExitFailed;
  }
  say(opts.name, fmt::format("EXIT {}", rc));
  return rc;
}

}  // namespace agentbus::examples
