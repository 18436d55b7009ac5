// agent.cpp — the facade: builds the agent's parts (client/agent_runtime.hpp, where
// the threads and the lock order are written), starts and stops their threads, and
// forwards the public API to them.
#include "agentbus/agent.hpp"
#include "agentbus/fingerprint.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "client/agent_internals.hpp"
#include "client/agent_runtime.hpp"
#include "net/transport_key.hpp"
#include "session/key_agreement.hpp"

namespace agentbus {
namespace client {

agent_runtime::agent_runtime(agent_options options, std::shared_ptr<identity_key> identity,
                             std::shared_ptr<const policy> policy_in, const suite& my_suite_in)
    : opts(std::move(options)),
      key(std::move(identity)),
      pol(std::move(policy_in)),
      my_suite(my_suite_in),
      role(key->metadata().role),
      jobs(opts.max_pending, opts.name, [this] { outbound.wake(); }),
      session_jobs(opts.max_pending, opts.name + " sessions", {}),
      rejections(opts.name, jobs),
      outbound(opts.max_pending),
      link(opts, *key, my_suite, outbound),
      topics(opts, [this](const session::control::request& r) { return link.send_control(r); }, rejections),
      peers(opts, *pol, [this](const session::control::request& r) { return link.send_control(r); }),
      seal(opts, key, my_suite, link, outbound, rejections),
      sessions(opts, *key, my_suite, peers, seal, session_jobs, rejections, [this] { outbound.wake(); }),
      receive(opts, *pol, role, link, peers, sessions, topics, rejections,
              [this](std::vector<message>& burst) { deliver_burst(burst); },
              [this](message&& m) { deliver_reply(std::move(m)); }) {
  seal.attach(sessions);
}

// stop ends every thread, in an order where none waits for one already gone.
agent_runtime::~agent_runtime() = default;

}  // namespace client

namespace {
void stop_threads(client::agent_runtime& d) {
  d.stopping = true;
  d.peers.stop();
  d.sessions.stop();
  d.topics.stop();
  d.link.stop();
  if (d.io_thread.joinable()) d.io_thread.join();
  d.session_jobs.stop();
  d.jobs.stop();
  d.pending_requests.fail_all(status{status_code::timeout, "agent stopped"});
}

// use_curve makes the DEALER a CurveZMQ client of the broker (schemas/protocol.md
// §1.3). The client key: the one the enrolment token stands for when there is a
// token (the broker admits it while the token is usable, and registers it when the
// agent enrols over it), else the agent's own key file, else a key for this run.
void use_curve(zmq::socket_t& dealer, const agent_options& o, const net::curve_public_key& server) {
  net::curve_keypair own;
  const char* which = "a new key for this run (admitted only if the broker knows it)";
  if (!o.enrolment_token.empty()) {
    own = net::curve_from_token(from_hex(o.enrolment_token));
    which = "the enrolment token's";
  } else if (!o.transport_key_file.empty()) {
    try {
      own = net::curve_load_or_create(o.transport_key_file);
    } catch (const std::runtime_error& e) {
      throw std::invalid_argument(std::string("agent_options::transport_key_file: ") + e.what());
    }
    which = "its key file's";
  } else {
    own = net::curve_generate();
  }
  net::make_curve_client(dealer, own, server);
  spdlog::info("[{}] CurveZMQ to {}: broker key {}…, client key {}… ({})", o.name, o.broker_endpoint,
               o.broker_transport_key.substr(0, 16), to_hex(own.public_key).substr(0, 16), which);
}
}  // namespace

agent::agent(agent_options options, std::shared_ptr<identity_key> key, std::shared_ptr<const policy> pol) {
  if (!key || !pol) throw std::invalid_argument("agent needs an identity and a policy");
  if (options.heartbeat_interval < std::chrono::milliseconds::zero() || options.heartbeat_interval > std::chrono::hours(1))
    throw std::invalid_argument("agent_options::heartbeat_interval must be 0 (off) .. 1 hour");
  if (options.broker_fingerprint.empty() && !options.insecure_trust_any_broker)
    throw std::invalid_argument("agent_options::broker_fingerprint is required (the broker's identity, as `agentbus-trust "
                                "broker` prints it); set insecure_trust_any_broker to enrol with any broker");
  if (!options.broker_fingerprint.empty()) {
    auto fp = parse_fingerprint(options.broker_fingerprint);
    if (!fp)
      throw std::invalid_argument("agent_options::broker_fingerprint must be 64 hex digits (\"sha256:\" in front or not)");
    options.broker_fingerprint = *fp;
  }
  if (!options.enrolment_token.empty()) {
    bool hex_ok = false;
    if (from_hex(options.enrolment_token, &hex_ok).size() != session::kEnrolmentTokenSize || !hex_ok)
      throw std::invalid_argument("agent_options::enrolment_token must be 64 hex digits");
  }
  net::curve_public_key broker_transport_key{};
  if (!options.broker_transport_key.empty() && !net::parse_curve_public(options.broker_transport_key, broker_transport_key))
    throw std::invalid_argument("agent_options::broker_transport_key must be 64 hex digits");
  if (net::is_tcp_endpoint(options.broker_endpoint) && options.broker_transport_key.empty() &&
      !options.insecure_plain_tcp)
    throw std::invalid_argument("agent_options::broker_transport_key is required for a tcp:// endpoint (the broker's "
                                "CurveZMQ key, as `agentbus-trust broker` prints it and enrolment bundles carry "
                                "it); set insecure_plain_tcp only for a broker with [transport] curve = false");
  auto s = pol->suite_for(key->metadata().role);
  if (!s) throw enrolment_error(s.error().code(), s.error().to_string());
  // The role's rekey limits (its profile's, or its own) bound this agent's sessions:
  // the smaller of the policy's and the options' applies.
  if (const role_policy* r = pol->find_role(key->metadata().role)) {
    if (r->rekey_after_messages > 0) options.rekey_after_messages = std::min(options.rekey_after_messages, r->rekey_after_messages);
    if (r->rekey_after.count() > 0) options.rekey_after = std::min(options.rekey_after, r->rekey_after);
    if (options.rekey_grace >= options.rekey_after) options.rekey_grace = options.rekey_after / 2;
  }
  if (key->key_suite().name != s->name)
    throw enrolment_error(status_code::suite_mismatch,
                          "identity suite " + key->key_suite().name + " differs from the policy's " + s->name);
  impl_ = std::make_unique<client::agent_runtime>(std::move(options), std::move(key), std::move(pol), *s);
  client::agent_runtime& d = *impl_;
  if (const int ivl = static_cast<int>(d.opts.heartbeat_interval.count()); ivl > 0) {
    // A connection silent for 3 intervals (a dead host, a cut link; a closed one is
    // noticed at once) is dropped, so the socket reconnects and the monitor reports it.
    net::set_heartbeats(d.dealer, ivl);
  }
  // Attached before connect, so the first connection is known not to be a reconnection.
  d.monitor.emplace(d.ctx, d.dealer);
  d.dealer.set(zmq::sockopt::linger, 0);
  d.dealer.set(zmq::sockopt::sndhwm, 10000);
  d.dealer.set(zmq::sockopt::rcvhwm, std::max(1, d.opts.receive_queue));
  d.dealer.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(client::kMaxReceivedFrameBytes));
  if (net::is_tcp_endpoint(d.opts.broker_endpoint) && !d.opts.insecure_plain_tcp) use_curve(d.dealer, d.opts, broker_transport_key);
  else if (net::is_tcp_endpoint(d.opts.broker_endpoint))
    spdlog::critical("[{}] connecting to {} WITHOUT CurveZMQ (insecure_plain_tcp): traffic in clear, broker transport "
                     "unauthenticated", d.opts.name, d.opts.broker_endpoint);
  try {
    d.dealer.connect(d.opts.broker_endpoint);
  } catch (const zmq::error_t& e) {
    // A malformed or unsupported endpoint ("foo://x", a bad address): the caller's
    // argument, reported as such rather than as ZeroMQ's own exception type.
    throw std::invalid_argument("agent_options::broker_endpoint '" + d.opts.broker_endpoint +
                                "' cannot be used: " + e.what());
  }

  d.jobs.start();
  d.session_jobs.start();
  // After a re-enrolment the restarted broker knows none of our topics.
  d.link.start([&d] { d.topics.restore(); });
  d.io_thread = std::thread([&d] { d.io_loop(); });
  try {
    d.link.enrol_first();
    if (d.opts.batch_signing && d.key->key_protection() == protection::tpm) {
      // The role's window in the policy bounds ours: verifiers refuse larger batches.
      auto limits = d.pol->batch_limits_for(d.role);
      if (!limits) throw enrolment_error(limits.error().code(), limits.error().to_string());
      d.seal.start_batching(std::min<std::size_t>(d.opts.max_batch, limits->max_leaves),
                            std::min<std::chrono::microseconds>(d.opts.batch_window, limits->max_delay));
    }
  } catch (...) {
    stop_threads(d);
    throw;
  }
}

agent::~agent() {
  client::agent_runtime& d = *impl_;
  d.seal.stop_batching();  // signs and queues what was submitted
  // Tell the broker we are leaving; give the io thread a moment to flush it.
  (void)d.link.send_control(session::control::bye{});
  (void)d.outbound.wait_drained(std::chrono::milliseconds(100));
  stop_threads(d);
}

const std::string& agent::name() const noexcept { return impl_->opts.name; }

status agent::send(const std::string& to, std::string_view content_type, byte_view payload) {
  return impl_->send_envelope(envelope_type::data, to, content_type, payload, {});
}

status agent::publish(const std::string& topic, std::string_view content_type, byte_view payload) {
  client::agent_runtime& d = *impl_;
  if (status st = d.pol->check_publish(d.role, topic); !st) return st;  // refuse locally what the broker would
  auto members = d.topics.members(topic);
  if (!members) return members.error();
  std::vector<std::string> recipients = std::move(members).value();
  std::erase(recipients, d.opts.name);
  // Sessions with every subscriber first; one that cannot be reached is left out (it
  // would refuse the envelope for lack of its MAC anyway), quietly while an offer to
  // it is backing off.
  for (const auto& r : recipients) {
    if (d.sessions.backing_off(r)) continue;
    if (status st = d.sessions.ensure(r); !st)
      spdlog::warn("[{}] publishing to {} without {}: {}", d.opts.name, topic, r, st.to_string());
  }
  return d.seal.seal_and_queue({envelope_type::data, recipient_kind::topic, topic, content_type, payload, {},
                                std::move(recipients), {}},
                               nullptr);
}

status agent::subscribe(const std::string& topic, message_handler handler) {
  if (!is_topic_pattern(topic))
    return {status_code::invalid_field, "'" + topic.substr(0, 128) +
                                            "' is not a topic or a pattern ('*' one segment, a final '>' the rest)"};
  return impl_->topics.subscribe(topic, std::move(handler));
}

status agent::queue_subscribe(const std::string& topic, const std::string& group, message_handler handler) {
  if (!is_topic_pattern(topic))
    return {status_code::invalid_field, "'" + topic.substr(0, 128) +
                                            "' is not a topic or a pattern ('*' one segment, a final '>' the rest)"};
  if (!is_queue_group_name(group))
    return {status_code::invalid_field, "'" + group.substr(0, 64) + "' is not a queue group name (A-Z a-z 0-9 . _ -, 1..64)"};
  return impl_->topics.subscribe(topic, std::move(handler), group);
}

status agent::unsubscribe(const std::string& topic) { return impl_->topics.unsubscribe(topic); }

result<message> agent::request(const std::string& to, std::string_view content_type, byte_view payload,
                               std::chrono::milliseconds timeout) {
  client::agent_runtime& d = *impl_;
  // The message id is chosen before the envelope is sealed, so the reply waiter is
  // registered before anything can answer.
  const bytes id = d.seal.next_message_id();
  auto answer = d.pending_requests.expect(id);
  if (status st = d.send_envelope(envelope_type::request, to, content_type, payload, {}, nullptr, id); !st) {
    d.pending_requests.forget(id);
    return st;
  }
  if (answer.wait_for(timeout) != std::future_status::ready) {
    d.pending_requests.forget(id);
    return status{status_code::timeout, "no reply from " + to + " within " + std::to_string(timeout.count()) + " ms"};
  }
  return answer.get();
}

void agent::on_message(message_handler handler) {
  std::lock_guard lock(impl_->handlers_mu);
  impl_->on_message = std::move(handler);
}

void agent::on_request(request_handler handler) {
  std::lock_guard lock(impl_->handlers_mu);
  impl_->on_request = std::move(handler);
}

void agent::on_rejected(rejection_handler handler) { impl_->rejections.set_handler(std::move(handler)); }

agent_stats agent::stats() const {
  const client::agent_runtime& d = *impl_;
  agent_stats s;
  s.sent = d.seal.sent();
  s.received = d.receive.received();
  s.rejected_at_receive = d.rejections.rejected_at_receive();
  s.refused_by_broker = d.rejections.refused_by_broker();
  s.failed_at_sender = d.rejections.failed_at_sender();
  s.sessions = d.sessions.sessions();
  s.rekeys = d.sessions.rekeys();
  s.reenrolments = d.link.reenrolments();
  s.hop_rekeys = d.link.hop_rekeys();
  s.tpm_ecdh_sessions = d.sessions.tpm_ecdh_sessions();
  s.static_ecdh_failures = d.sessions.static_ecdh_failures() + d.link.static_ecdh_failures();
  s.batch_roots = d.seal.batch_roots();
  s.batched_envelopes = d.seal.batched_envelopes();
  s.dispatch_dropped = d.jobs.dropped() + d.session_jobs.dropped();
  s.unaddressed_after_subscribing = d.receive.unaddressed();
  s.offers_refused = d.sessions.offers_refused();
  s.tpm_operations = d.key->tpm_stats();
  return s;
}

}  // namespace agentbus
