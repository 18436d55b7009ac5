// broker.cpp — the facade: builds the parts, owns the sockets, runs the event loop
// and hands each message to the part that owns its kind.
#include "broker.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <unordered_map>
#include <zmq.hpp>

#include "accounting.hpp"
#include "admin_server.hpp"
#include "connection_guard.hpp"
#include "connections.hpp"
#include "control_channel.hpp"
#include "enrolment.hpp"
#include "enrolment_authority.hpp"
#include "federation.hpp"
#include "federation_wire.hpp"
#include "identity_worker.hpp"
#include "logging.hpp"
#include "metrics_http.hpp"
#include "nats_link.hpp"
#include "outbox.hpp"
#include "policy_reload.hpp"
#include "publish_intake.hpp"
#include "registry.hpp"
#include "router.hpp"
#include "session/handshake.hpp"
#include "socket_directory.hpp"
#include "topics.hpp"
#include "transport.hpp"
#include "transport_gate.hpp"
#include "net/transport_key.hpp"

namespace agentbus::broker {
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

struct broker::impl {
  broker_config cfg;
  // The running policy. Every part holds a reference to this one object and reads it
  // on the event loop's thread only, never keeping a pointer into it across turns; a
  // reload assigns the new policy's value here, between turns, so all parts see it at
  // once. The admin thread has its own immutable copy (admin_server::set_policy).
  std::shared_ptr<policy> pol;
  std::shared_ptr<identity_key> identity;
  std::shared_ptr<metrics> stats;
  broker_runtime_options runtime;

  zmq::context_t ctx{1};
  zmq::socket_t socket{ctx, zmq::socket_type::router};
  router_transport transport{socket};
  std::optional<registry> reg;
  connections agents;
  topics topic_table;
  // Built in the constructor, in this order (each refers to those above it).
  std::unique_ptr<accounting> acct;
  std::unique_ptr<outbox> out;
  std::unique_ptr<router> routes;
  std::unique_ptr<control_channel> control;
  std::unique_ptr<publish_intake> intake;
  std::unique_ptr<identity_worker> worker;
  std::unique_ptr<enrolment> enrol;
  std::unique_ptr<admin_server> admin;
  std::unique_ptr<transport_gate> gate;     // the ZAP handler, when a tcp:// endpoint uses CurveZMQ
  std::unique_ptr<connection_guard> guard;  // the unauthenticated bytes' bound, when there is a tcp:// endpoint
  std::unique_ptr<metrics_http> http;       // /metrics, /healthz, /readyz, when [metrics] listen is set
  // [federation] servers set: the NATS link and the part that uses it (federation.hpp).
  // Declared last: destroyed first, before the parts the federation refers to.
  std::unique_ptr<nats_link> nats;
  std::unique_ptr<federation> fed;
  std::string transport_key;                // the broker's CurveZMQ public key, hex ("" without one)
  // What the health probes read (civetweb's threads): when the event loop last turned
  // (steady clock, ns), and whether run() is serving. A loop that has not turned for
  // kStalledAfter is not live; the broker is ready while serving and live.
  static constexpr std::chrono::seconds kStalledAfter{15};
  std::atomic<std::int64_t> last_turn_ns{0};
  std::atomic<bool> serving{false};

  void mark_turn() { last_turn_ns.store(steady::now().time_since_epoch().count(), std::memory_order_relaxed); }
  std::optional<std::string> live_problem() const {
    const auto since = steady::now() - steady::time_point(steady::duration(last_turn_ns.load(std::memory_order_relaxed)));
    if (since < kStalledAfter) return std::nullopt;
    return "event loop has not turned for " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(since).count()) + " s";
  }
  std::optional<std::string> ready_problem() const {
    if (!serving.load()) return std::string("not serving (starting or stopping)");
    return live_problem();
  }
  net::connection_facts hello_from;         // the connection of the HELLO or PROOF being handled (recv_multipart_into)
  // Connection records per socket (enrolment's connection::transport_fd): a socket is
  // shut down when the last record on it closes, never while another still has it.
  std::unordered_map<int, int> records_on_fd;

  // bind_endpoints binds ipc:// endpoints plain (file permissions guard them) and,
  // after them, tcp:// endpoints with CurveZMQ behind the transport gate: libzmq
  // copies a socket's options into each listener when it binds, so the order of
  // options and binds decides each endpoint's mechanism.
  void bind_endpoints() {
    socket.set(zmq::sockopt::handshake_ivl, cfg.handshake_timeout_ms);
    bool any_tcp = false;
    for (const auto& ep : cfg.endpoints) {
      if (net::is_tcp_endpoint(ep)) {
        any_tcp = true;
        continue;
      }
      prepare_ipc_endpoint(ep);
      socket.bind(ep);
      spdlog::info("listening on {} (plain: guarded by the socket directory's permissions)", ep);
    }
    if (!any_tcp) return;
    guard = std::make_unique<connection_guard>(ctx, socket, *stats, cfg.max_unauthenticated_bytes);
    enrol->authenticate_connections_with([this](int fd) {
      ++records_on_fd[fd];
      guard->authenticated(fd);
    });
    spdlog::info("unauthenticated TCP connections may hold {} KiB together (max_unauthenticated_bytes)",
                 cfg.max_unauthenticated_bytes >> 10);
    if (cfg.curve) {
      const net::curve_keypair key = net::curve_load_or_create(cfg.curve_key_file);
      transport_key = to_hex(key.public_key);
      gate = std::make_unique<transport_gate>(ctx, reg->file(), *stats, cfg.admit_unknown_keys);
      net::make_curve_server(socket, key, "agentbus");
      if (cfg.admit_unknown_keys)
        spdlog::warn("[transport] admit_unknown_keys: any CurveZMQ client key is admitted on tcp:// endpoints; peers "
                     "nobody vouched for may send before enrolment (docs/threat-model.md, case 1)");
    } else {
      spdlog::critical("[transport] curve = false: tcp:// endpoints carry traffic IN CLEAR and admit any peer, which "
                       "may then make the broker hold unbounded memory (docs/threat-model.md, case 1). Loopback tests only.");
    }
    for (const auto& ep : cfg.endpoints) {
      if (!net::is_tcp_endpoint(ep)) continue;
      socket.bind(ep);
      if (cfg.curve)
        spdlog::info("listening on {} (CurveZMQ, broker transport key {})", ep, transport_key);
      else
        spdlog::info("listening on {} (plain TCP)", ep);
    }
  }

  // drop_stuck_consumers (each second) closes the connections for which bytes have
  // waited drop_stuck_consumer_seconds without ZeroMQ writing any out (case 4): senders
  // stop paying for an agent that does not read; it re-enrols when it reads again.
  void drop_stuck_consumers(std::chrono::steady_clock::time_point now) {
    const auto limit = std::chrono::seconds(cfg.drop_stuck_consumer_seconds);
    agents.for_each_online([&](known_agent& a) {
      if (!a.conn) return;
      connection& c = *a.conn;
      const std::uint64_t released = c.queued->released.load(std::memory_order_relaxed);
      const bool draining = released != c.released_at_sweep;
      c.released_at_sweep = released;
      if (draining || c.queued->queued.load(std::memory_order_relaxed) <= 0) {
        c.stuck_since.reset();
        return;
      }
      if (!c.stuck_since) c.stuck_since = now;
      if (now - *c.stuck_since < limit) return;
      stats->increment("consumers_dropped_total");
      spdlog::warn("dropping {}: nothing written to it for {} s while its queue holds {} bytes (it does not read)", a.name,
                   cfg.drop_stuck_consumer_seconds, c.queued->queued.load());
      agents.close(a);
    });
  }

  // handle dispatches one message [route, kind, ...] to the part that owns its kind.
  void handle(const net::frames& f) {
    if (f.size() < 2) {
      stats->increment("frames_malformed_total");
      // A message with too many frames arrives as its routing id alone.
      if (f.size() == 1) {
        const status why{status_code::malformed, "too many frames in one message"};
        if (connection* c = agents.by_route(f[0])) return refuse_envelope(*out, *acct, *c->agent, {}, why, "");
        return out->error(f[0], why);
      }
      return;
    }
    const bytes& route = f[0];
    const std::string_view kind = net::as_string(f[1]);
    const std::span<const bytes> body = std::span(f).subspan(2);
    if (kind == session::frame::kEnvelope) return intake->on_envelope(route, body);
    if (kind == session::frame::kWireBatch) return intake->on_wire_batch(route, body);
    if (kind == session::frame::kControl) return control->on_control(route, body);
    if (kind == session::frame::kHello) {
      if (guard) guard->admitted(hello_from.fd);
      return enrol->on_hello(route, body, hello_from);
    }
    if (kind == session::frame::kProof) return enrol->on_proof(route, body, hello_from);
    stats->increment("frames_malformed_total");
    out->error(route, {status_code::malformed, "unknown frame kind"});
  }

  // revoke_now: an operator revoked `name`: its connection closes (its hop keys with
  // it: its next envelope gets ERR unknown_agent, its re-enrolment is refused), and
  // every online agent is told, so they drop their sessions with it.
  // key_approved_now: an operator approved a new key for `name`: the connection that
  // enrolled with the old one closes (it must enrol again, with the new key), and
  // every online agent forgets the old key.
  void key_approved_now(const std::string& name) {
    if (known_agent* a = agents.find(name); a != nullptr && a->online()) agents.close(*a);
    control->announce_key_change(name);
  }

  // reload_from_files is what SIGHUP does: read, validate, apply; a refusal keeps
  // everything running and says why.
  void reload_from_files(broker& self) {
    spdlog::info("reload requested (SIGHUP): reading the configuration and the policy again");
    result<std::string> outcome = status{status_code::invalid_field, "no reload source (load_for_reload unset)"};
    if (runtime.load_for_reload) {
      try {
        outcome = self.reload(runtime.load_for_reload());
      } catch (const std::exception& e) {
        outcome = status{status_code::invalid_field, e.what()};
      }
    }
    if (outcome) {
      stats->increment("reloads_total", "applied");
      spdlog::info("reload applied: {}", *outcome);
    } else {
      stats->increment("reloads_total", "refused");
      spdlog::error("reload refused, the running configuration and policy are kept: {}", outcome.error().detail());
    }
    if (runtime.on_reloaded) runtime.on_reloaded(outcome.ok(), outcome ? *outcome : outcome.error().detail());
  }

  // enforce_policy_on_online applies a reloaded policy to agents already connected:
  // what HELLO checked against the policy (enrolment_authority::screen: revocations by
  // name and key, pins; role_admits: the role's rules), checked again against the new one.
  void enforce_policy_on_online() {
    std::uint64_t closed = 0, withdrawn = 0;
    const enrolment_authority authority(*pol, *reg);
    agents.for_each_online([&](known_agent& a) {
      candidate who;
      who.name = a.name;
      who.role = a.role;
      who.fingerprint = a.key ? a.key->fingerprint_hex() : std::string();
      status st = authority.screen(who, std::nullopt);
      if (st.code() == status_code::revoked_agent || st.code() == status_code::revoked_key) {
        ++closed;
        return revoke_now(a.name);
      }
      if (st) st = role_admits(*pol, a.role, a.agent_suite, a.key_protection, a.tpm_simulator, !a.evidence.empty());
      if (!st) {
        const log_scope fields{{"agent", a.name}, {"role", a.role}, {"code", std::string(status_code_name(st.code()))},
                               {"reason", st.detail()}};
        spdlog::warn("{} ({}) closed by the reloaded policy: {}", a.name, a.role, st.to_string());
        ++closed;
        return agents.close(a);
      }
      for (const std::string& topic : control->withdraw_disallowed(a)) {
        spdlog::warn("{} ({}): subscription to {} withdrawn by the reloaded policy", a.name, a.role, topic);
        ++withdrawn;
      }
    });
    if (closed) stats->increment("reload_agents_closed_total", {}, closed);
    if (withdrawn) stats->increment("reload_subscriptions_withdrawn_total", {}, withdrawn);
  }

  void revoke_now(const std::string& name) {
    known_agent* a = agents.find(name);
    if (fed) fed->revoked_here(name, a && a->key ? a->key->fingerprint_hex() : std::string(), "revoked by an operator at broker " + cfg.name);
    if (a == nullptr) return;
    agents.close(*a);
    control->announce_revocation(name);
    spdlog::warn("{} revoked: connection and sessions torn down", name);
  }
};

broker::broker(broker_config cfg, std::shared_ptr<const policy> pol, std::shared_ptr<identity_key> identity,
               std::shared_ptr<metrics> m, broker_runtime_options runtime)
    : impl_(std::make_unique<impl>()) {
  impl& d = *impl_;
  d.cfg = std::move(cfg);
  d.pol = std::make_shared<policy>(*pol);
  d.identity = std::move(identity);
  d.stats = std::move(m);
  d.runtime = runtime;
  fs::create_directories(d.cfg.state_dir);
  d.reg.emplace(d.cfg.state_dir / "registry.db");
  spdlog::info("registry {} (schema {}, {} agents known)", (d.cfg.state_dir / "registry.db").string(),
               d.reg->schema_version(), d.reg->agents().size());

  if (d.runtime.tpm)
    d.stats->set_tpm_source([tpm = std::weak_ptr<tpm::tpm>(d.runtime.tpm)] {
      const auto t = tpm.lock();
      return t ? t->stats() : std::vector<tpm::tpm_op_stats>{};
    });
  d.acct = std::make_unique<accounting>(*d.stats, *d.reg);
  d.out = std::make_unique<outbox>(d.transport, d.agents, *d.stats, d.cfg.max_queued_bytes_per_agent);
  d.routes = std::make_unique<router>(d.agents, d.topic_table, *d.out, *d.acct);
  d.control = std::make_unique<control_channel>(d.cfg, *d.pol, d.agents, d.topic_table, *d.out, *d.acct, *d.reg);
  d.agents.on_close([&d](connection& c) {
    d.control->leave(c);
    if (d.fed) d.fed->local_changed(*c.agent);
    if (c.transport_fd >= 0 && d.guard) {
      auto it = d.records_on_fd.find(c.transport_fd);
      if (it != d.records_on_fd.end() && --it->second <= 0) {
        d.records_on_fd.erase(it);
        d.guard->closed(c.transport_fd);
      }
    }
    d.stats->set_gauge("agents_online", "", static_cast<double>(d.agents.online_count()));
  });
  d.intake = std::make_unique<publish_intake>(d.cfg, *d.pol, d.agents, *d.routes, *d.out, *d.acct,
                                              d.runtime.permissive_testing);
  d.worker = std::make_unique<identity_worker>(d.identity);
  // The broker's static TPM ECDH keys are created (or loaded) here, once per curve
  // the policy uses: no key creation ever happens while agents wait.
  d.enrol = std::make_unique<enrolment>(d.cfg, *d.pol, *d.identity, *d.reg, d.agents, *d.out, *d.acct,
                                        [&d](identity_job job) { d.worker->submit(std::move(job)); });
  d.enrol->announce_key_changes_with([&d](const std::string& name) { d.control->announce_key_change(name); });
  if (d.runtime.permissive_testing) d.enrol->vouch_without_activation();
  if (!d.cfg.federation_servers.empty()) {
    d.nats = std::make_unique<nats_link>(d.cfg, *d.pol, d.identity, *d.stats);
    d.fed = std::make_unique<federation>(d.cfg, *d.pol, d.agents, d.topic_table, *d.control, *d.intake, *d.out, *d.reg,
                                         *d.stats, *d.nats);
    federation& fed = *d.fed;
    d.routes->forward_remote_with(&fed);
    if (d.runtime.tamper_federation) {
      fed.tamper_with_forwards();
      spdlog::critical("TAMPERING TEST MODE: every envelope forwarded to another broker is CHANGED. This broker must "
                       "never carry real traffic.");
    }
    d.out->relay_nacks_with([&fed](known_agent& to, const bytes& id, const status& why, const std::string& recipient) {
      fed.relay_nack(to, id, why, recipient);
    });
    d.control->on_subscriptions_changed([&fed](const known_agent& a) { fed.local_changed(a); });
    d.enrol->check_names_with([&fed](const std::string& name) { return fed.may_enrol(name); });
    d.agents.on_open([&fed](connection& c) { fed.local_opened(*c.agent); });
    spdlog::info("federation: broker {} of {} ({} brokers), NATS {}, subjects {}.b.<broker>.>, directory bucket {}",
                 d.cfg.name, d.cfg.federation_prefix, d.cfg.federation_brokers.size(), d.cfg.federation_servers[0],
                 d.cfg.federation_prefix, d.cfg.federation_bucket);
    spdlog::info("federation: this broker's NATS user needs publish [{}] and subscribe [{}, _INBOX.>] (plus the "
                 "bucket's JetStream subjects, docs/federation.md)",
                 fmt::join(federation_wire::publish_permissions(d.cfg.federation_prefix, d.cfg.name), ", "),
                 fmt::join(federation_wire::subscribe_permissions(d.cfg.federation_prefix, d.cfg.name), ", "));
  }

  d.socket.set(zmq::sockopt::router_mandatory, 1);  // unroutable sends fail loudly, never vanish
  d.socket.set(zmq::sockopt::sndhwm, d.cfg.send_hwm);
  spdlog::info("each recipient's queue holds at most {} messages and {} MiB", d.cfg.send_hwm,
               d.cfg.max_queued_bytes_per_agent >> 20);
  d.socket.set(zmq::sockopt::rcvhwm, d.cfg.recv_hwm);
  d.socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(d.cfg.max_frame_bytes));
  d.socket.set(zmq::sockopt::linger, 0);
  if (const int ivl = d.cfg.heartbeat_interval_ms; ivl > 0) {
    // A silent agent connection is dropped with its buffers; agents are asked to drop
    // a silent broker too (and heartbeat themselves by default: see set_heartbeats).
    net::set_heartbeats(d.socket, ivl);
    spdlog::info("ZMTP heartbeats every {} ms (a connection silent for {} ms is dropped)", ivl, 3 * ivl);
  }
  d.stats->set_gauge("policy_loaded_timestamp_seconds", {}, static_cast<double>(now_unix_ms()) / 1000.0);
  d.bind_endpoints();  // after enrol: the connection guard reports to it
  d.mark_turn();
  if (!d.cfg.metrics_listen.empty())
    d.http = std::make_unique<metrics_http>(d.cfg.metrics_listen, d.cfg.metrics_allow, d.stats,
                                            health_probes{[&d] { return d.live_problem(); }, [&d] { return d.ready_problem(); }});
  if (!d.cfg.admin_endpoint.empty())
    // The admin thread gets its own immutable copy: a reload overwrites d.pol in place.
    d.admin = std::make_unique<admin_server>(d.ctx, d.cfg.admin_endpoint, std::make_shared<const policy>(*d.pol), *d.reg,
                                             d.agents, *d.acct,
                                             [&d](const std::string& name) { d.revoke_now(name); },
                                             [&d](const std::string& name) { d.key_approved_now(name); },
                                             nlohmann::json{{"name", d.cfg.name},
                                                            {"fingerprint", d.identity->public_key().fingerprint_hex()},
                                                            {"suite", d.identity->key_suite().name},
                                                            {"metrics_url", d.http ? nlohmann::json(d.http->url()) : nlohmann::json(nullptr)},
                                                            {"transport_key", d.transport_key.empty()
                                                                                  ? nlohmann::json(nullptr)
                                                                                  : nlohmann::json(d.transport_key)}});
  if (d.admin && d.fed) d.admin->federation_view_with([&d] { return d.fed->view(); });
  if (d.runtime.permissive_testing)
    spdlog::critical("PERMISSIVE TESTING MODE: envelopes are forwarded WITHOUT suite, ACL, replay or signature "
                     "checks, and TPM evidence is admitted without credential activation. This broker must never "
                     "carry real traffic.");
}

broker::~broker() {
  impl& d = *impl_;
  d.http.reset();  // no scrape reads the parts below while they go
  d.worker.reset();  // joins the identity worker before the parts it reports to go
  // The ROUTER closes before the ZAP handler goes: libzmq admits every CurveZMQ key
  // when it cannot reach a handler, and the members below would otherwise be
  // destroyed with the socket still accepting (the guard first: it monitors it).
  d.guard.reset();
  d.socket.close();
  d.gate.reset();
}

result<std::string> broker::reload(reload_input next) {
  impl& d = *impl_;
  // The identity's suite changes only at a restart: the new policy must still have the
  // running one.
  if (!next.pol || next.pol->find_suite(d.cfg.suite) == nullptr)
    return status{status_code::invalid_field, "the new policy has no suite '" + d.cfg.suite + "' (the broker's identity suite)"};
  const std::vector<std::string> policy_lines = describe_policy_change(*d.pol, *next.pol);
  std::vector<ec_curve> curves_before;
  for (const suite& s : d.pol->suites()) curves_before.push_back(s.ecdh_curve);
  const config_change config = apply_live_config(d.cfg, next.cfg);
  *d.pol = *next.pol;
  if (d.admin) d.admin->set_policy(next.pol);
  if (std::find(config.applied.begin(), config.applied.end(), "logging.level") != config.applied.end())
    spdlog::set_level(spdlog::level::from_str(d.cfg.log_level));
  // Applied from here on: a failure below is an internal error to report, not a
  // refused reload (the new policy is already in force).
  try {
    d.enforce_policy_on_online();
  } catch (const std::exception& e) {
    d.stats->increment("internal_errors_total");
    spdlog::error("reload: applying the new policy to connected agents failed part-way: {}", e.what());
  }
  d.stats->set_gauge("policy_loaded_timestamp_seconds", {}, static_cast<double>(now_unix_ms()) / 1000.0);
  for (const suite& s : d.pol->suites())
    if (std::none_of(curves_before.begin(), curves_before.end(), [&](ec_curve c) { return c == s.ecdh_curve; }))
      spdlog::warn("reload: suite {} brings ECDH curve {}: the broker's static TPM ECDH key on it is made at the next "
                   "restart; until then hop sessions on it use ephemeral ECDH alone",
                   s.name, curve_name(s.ecdh_curve));

  std::string summary = std::to_string(policy_lines.size()) + " policy change(s)";
  for (const auto& line : policy_lines) {
    spdlog::info("reload: {}", line);
    summary += "; " + line;
  }
  for (const auto& field : config.applied) spdlog::info("reload: {} applied", field);
  for (const auto& field : config.at_restart)
    spdlog::warn("reload: {} changed, takes effect at the next restart (kept as it was)", field);
  if (!config.applied.empty()) summary += "; config applied: " + std::to_string(config.applied.size());
  if (!config.at_restart.empty()) summary += "; waiting for a restart: " + std::to_string(config.at_restart.size());
  return summary;
}

void broker::run(const std::atomic<bool>& stop, std::atomic<bool>* reload_requested) {
  impl& d = *impl_;
  auto last_sweep = steady::now();
  net::frames received;  // reused for every message: its buffers stay allocated
  const net::facts_of hello_from{session::frame::kHello, session::frame::kProof, &d.hello_from};
  d.serving.store(true);
  while (!stop.load()) {
    d.mark_turn();
    // Only the descriptors that exist are polled: [socket, worker, admin?, federation?].
    zmq::pollitem_t items[4] = {{d.socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, d.worker->fd(), ZMQ_POLLIN, 0}};
    std::size_t polled = 2;
    const std::size_t admin_at = d.admin ? polled++ : 4, fed_at = d.fed ? polled++ : 4;
    if (d.admin) items[admin_at] = {nullptr, d.admin->loop_calls_fd(), ZMQ_POLLIN, 0};
    if (d.fed) items[fed_at] = {nullptr, d.fed->fd(), ZMQ_POLLIN, 0};
    try {
      zmq::poll(items, polled, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal (SIGTERM): the loop condition decides
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN)
      for (auto& r : d.worker->take()) d.enrol->on_signed(std::move(r));
    // Bounded batch per wake-up so the identity worker's results and the admin socket
    // are not starved.
    for (int budget = 0; budget < 4096; ++budget) {
      d.hello_from.clear();
      if (!net::recv_multipart_into(d.socket, received, 4 + 2 * session::kMaxWireBatchEnvelopes, &hello_from))
        break;
      try {
        d.handle(received);
      } catch (const std::exception& e) {
        // A bug must not take the broker down with every other flow: count, log, go on.
        d.stats->increment("internal_errors_total");
        spdlog::error("internal error while handling a message: {}", e.what());
      }
    }
    if (d.admin && (items[admin_at].revents & ZMQ_POLLIN)) d.admin->run_loop_calls();
    if (d.fed) {
      try {
        if (items[fed_at].revents & ZMQ_POLLIN) d.fed->drain();
        d.fed->flush();
      } catch (const std::exception& e) {
        d.stats->increment("internal_errors_total");
        spdlog::error("internal error in the federation: {}", e.what());
      }
    }
    if (d.runtime.on_loop_turn) d.runtime.on_loop_turn();
    if (reload_requested != nullptr && reload_requested->exchange(false)) d.reload_from_files(*this);
    if (steady::now() - last_sweep > std::chrono::seconds(1)) {
      d.acct->flush(d.agents);
      // Offline records beyond max_agents: the longest-offline forgotten (case 6).
      d.agents.forget_offline(d.cfg.max_agents);
      d.stats->set_gauge("agents_known", "", static_cast<double>(d.agents.known_count()));
      if (d.cfg.drop_stuck_consumer_seconds > 0) d.drop_stuck_consumers(steady::now());
      d.enrol->expire(steady::now());
      if (d.fed) d.fed->sweep(steady::now());
      last_sweep = steady::now();
    }
  }
  d.serving.store(false);
  d.acct->flush(d.agents);
  if (d.admin) d.admin->loop_stopped();
  spdlog::info("stopping: {} agents known, {} online", d.agents.known_count(), d.agents.online_count());
}

}  // namespace agentbus::broker
