// broker.cpp — enrolment, enforcement at publish, routing.
#include "broker.hpp"

#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "admin_protocol.hpp"
#include "agentbus/crypto.hpp"
#include "registry.hpp"
#include "net/zmq_util.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/replay_window.hpp"
#include "session/session_keys.hpp"

namespace agentbus::broker {
namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using net::frames;

constexpr std::size_t kMaxPendingEnrolments = 1024;
constexpr auto kEnrolmentTimeout = std::chrono::seconds(30);

struct agent_entry {
  std::string name, role;
  suite agent_suite;
  std::optional<crypto::public_key> key;
  bytes key_id;
  protection key_protection = protection::tpm;
  bool simulator = false;
  std::string manufacturer;
  bytes route;
  bool online = false;
  session::session_state hop;  // send: broker→agent, receive: agent→broker
  session::replay_window window;
  session::control_sequence ctrl_in;
  std::uint64_t ctrl_out = 1;  // never reset while the broker runs
  std::set<std::string> subscriptions;
  std::set<std::string> watching;  // topics whose membership it follows
  // Registry deltas kept on the entry, so counting an envelope allocates nothing
  // (a map keyed by (sender, recipient) strings built two strings per envelope).
  std::map<std::string, std::uint64_t, std::less<>> traffic_to;  // recipient → envelopes since the last flush
  std::int64_t seen_ms = 0;
  bool seen_dirty = false;
};

struct pending_enrolment {
  session::hello_msg hello;
  bytes hello_bytes;
  session::challenge_msg challenge;
  bytes challenge_bytes;  // empty until signed and sent
  std::optional<crypto::ec_keypair> ephemeral;
  std::optional<crypto::public_key> agent_key;
  std::optional<crypto::public_key> agent_ephemeral, agent_static;  // from HELLO, checked on the role's curve
  std::optional<secret_bytes> z_es;  // broker static (TPM) × agent ephemeral
  suite agent_suite;
  steady::time_point deadline;
  std::uint64_t generation = 0;  // matches the signer's answer to this handshake
};

// signer_job runs on the signer thread: TPM work never blocks the socket thread.
struct signer_job {
  bytes route;
  std::uint64_t generation = 0;
  bytes transcript;
  std::optional<crypto::public_key> agent_ephemeral;  // for the broker's static ECDH
  ec_curve curve = ec_curve::p256;
};
struct signer_result {
  bytes route;
  std::uint64_t generation = 0;
  result<bytes> signature = status{status_code::internal, "not run"};
  std::optional<secret_bytes> z_es;
};

// log_limiter keeps hostile traffic from flooding the journal: a burst per second
// per reason, then a count of what was suppressed.
class log_limiter {
 public:
  bool allow(std::string_view reason) {
    auto now = steady::now();
    auto& b = buckets_[std::string(reason)];
    if (now - b.window_start > std::chrono::seconds(1)) {
      if (b.suppressed > 0) spdlog::warn("{} further '{}' refusals not logged in the last second", b.suppressed, reason);
      b = {now, 0, 0};
    }
    if (++b.count <= 10) return true;
    ++b.suppressed;
    return false;
  }

 private:
  struct bucket {
    steady::time_point window_start{};
    std::uint64_t count = 0, suppressed = 0;
  };
  std::map<std::string, bucket> buckets_;
};



}  // namespace

struct broker::impl {
  broker_config cfg;
  std::shared_ptr<const policy> pol;
  std::shared_ptr<identity_key> identity;
  std::shared_ptr<metrics> stats;
  broker_runtime_options runtime;

  zmq::context_t ctx{1};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  std::optional<zmq::socket_t> admin;

  std::map<std::string, agent_entry, std::less<>> agents;
  std::map<bytes, std::string> by_route;
  std::map<bytes, pending_enrolment> pending;
  std::map<std::string, std::set<std::string>, std::less<>> subscribers;  // topic → agents
  std::map<std::string, std::set<std::string>, std::less<>> watchers;     // topic → agents following membership
  std::optional<registry> reg;  // agents (pinned keys, revocations), trust edges, refusal counters
  std::unique_ptr<admin_state> admin_state_;
  std::unique_ptr<admin_handler> admin_json;
  log_limiter limiter;
  session::root_cache roots{16384};  // verified batch roots: a batch costs one signature check
  std::uint64_t generation_counter = 0;

  // signer thread
  std::thread signer;
  std::mutex signer_mu;
  std::condition_variable signer_cv;
  std::deque<signer_job> signer_jobs;
  std::deque<signer_result> signer_done;
  int signer_fd = -1;
  bool signer_stop = false;

  // ------------------------------------------------------------ registry
  // Counters are accumulated here and written in one transaction per second: a
  // database write per envelope would cap the bus at the disk's commit rate.
  std::map<std::pair<std::string, std::string>, registry::refusal_delta> refusals_pending;
  std::set<std::string, std::less<>> traffic_dirty;  // agents with traffic_to or seen_ms to flush
  // The hottest series, looked up once.
  counter* accepted_total = nullptr;
  histogram* accepted_check_seconds = nullptr;
  counter* wire_batches_total = nullptr;
  counter* wire_batches_out_total = nullptr;

  struct offer_seen {
    std::string initiator, responder, curve;
    bool rekey = false;
  };
  std::map<bytes, offer_seen> offers_in_flight;  // by offer message id, bounded

  void count_refusal(const std::string& agent, const status& why) {
    auto& d = refusals_pending[{agent, std::string(status_code_name(why.code()))}];
    d.agent = agent;
    d.reason = status_code_name(why.code());
    d.detail = why.detail().substr(0, 256);
    d.count += 1;
    d.at = static_cast<std::int64_t>(session::now_ms());
  }

  void flush_registry() {
    if (traffic_dirty.empty() && refusals_pending.empty()) return;
    std::vector<registry::traffic_delta> traffic;
    std::vector<registry::refusal_delta> refusals;
    std::vector<registry::seen_delta> seen;
    for (const auto& name : traffic_dirty) {
      auto it = agents.find(name);
      if (it == agents.end()) continue;
      for (const auto& [to, n] : it->second.traffic_to) traffic.push_back({name, to, n});
      if (it->second.seen_dirty) seen.push_back({name, it->second.seen_ms});
    }
    for (const auto& [k, d] : refusals_pending) refusals.push_back(d);
    try {
      reg->flush(traffic, refusals, seen);
      for (const auto& name : traffic_dirty) {
        auto it = agents.find(name);
        if (it == agents.end()) continue;
        it->second.traffic_to.clear();
        it->second.seen_dirty = false;
      }
      traffic_dirty.clear();
      refusals_pending.clear();
    } catch (const std::exception& e) {
      // Kept for the next attempt; the bus goes on.
      stats->increment("registry_errors_total");
      spdlog::error("registry flush failed (will retry): {}", e.what());
    }
  }

  // note_session_control records trust edges: an offer is remembered, the matching
  // acceptance establishes (or rekeys) the edge.
  void note_session_control(const envelope_header& h) {
    if (h.content_type == session::kOfferContentType) {
      auto offer = session::decode_offer(h.payload);
      if (!offer) return;
      if (offers_in_flight.size() >= 10'000) offers_in_flight.erase(offers_in_flight.begin());
      offers_in_flight[h.message_id] = {h.sender, h.to, offer->curve, !offer->rekey_of.empty()};
    } else if (h.content_type == session::kAcceptContentType) {
      auto it = offers_in_flight.find(h.correlation_id);
      if (it == offers_in_flight.end() || it->second.initiator != h.to || it->second.responder != h.sender) return;
      const agent_entry& i = agents[it->second.initiator];
      const agent_entry& r = agents[it->second.responder];
      std::string mac = "hmac-" + std::string(hash_name(i.agent_suite.mac_hash));
      if (r.agent_suite.mac_hash != i.agent_suite.mac_hash) mac += "/hmac-" + std::string(hash_name(r.agent_suite.mac_hash));
      try {
        reg->record_session(it->second.initiator, it->second.responder, it->second.curve, mac,
                            static_cast<std::int64_t>(session::now_ms()), it->second.rekey);
      } catch (const std::exception& e) {
        spdlog::error("registry: cannot record the session {} <-> {}: {}", it->second.initiator, it->second.responder, e.what());
      }
      offers_in_flight.erase(it);
    }
  }

  // revoke_now: the agent's connection and hop keys are dropped (its next envelope
  // is refused, and its re-enrolment too), and every online agent is told, so
  // they drop their sessions with it.
  void revoke_now(const std::string& name) {
    auto it = agents.find(name);
    if (it == agents.end()) return;
    agent_entry& a = it->second;
    mark_offline_if_gone(a);
    a.hop = session::session_state{};
    for (auto& [other_name, other] : agents)
      if (other.online) send_ctrl(other, "revoked", {name});
    spdlog::warn("{} revoked: connection and sessions torn down", name);
  }

  // ------------------------------------------------------------ sending
  bool send_to_route(const bytes& route, frames f) {
    f.insert(f.begin(), route);
    return net::send_multipart(router, f);
  }

  void send_ctrl(agent_entry& a, std::string op, std::vector<std::string> strings, bytes blob = {}, std::uint64_t number = 0) {
    if (!a.online) return;
    session::ctrl_msg m;
    m.seq = a.ctrl_out++;
    m.op = std::move(op);
    m.strings = std::move(strings);
    m.blob = std::move(blob);
    m.number = number;
    bytes body = session::encode(m);
    bytes tag = session::ctrl_tag(*a.hop.send_key(), body);
    if (!send_to_route(a.route, {net::to_bytes(session::frame::kControl), a.hop.send_key()->session_id, std::move(body),
                                 std::move(tag)})) {
      stats->increment("control_send_failures_total", a.name);
    }
  }

  void refuse_enrolment(const bytes& route, const std::string& name, status why) {
    stats->increment("enrolments_total", status_code_name(why.code()));
    count_refusal(name, why);
    if (limiter.allow("enrolment")) spdlog::warn("enrolment of '{}' refused: {}", name, why.to_string());
    session::refused_msg r{why.code(), why.detail()};
    send_to_route(route, {net::to_bytes(session::frame::kRefused), session::encode(r)});
    pending.erase(route);
  }

  // nack tells the sender its envelope was refused (or could not be delivered):
  // a typed error, a counter and a (rate-limited) log line.
  void nack(agent_entry& sender, const bytes& message_id, const status& why, const std::string& recipient) {
    stats->increment("envelopes_total", status_code_name(why.code()));
    if (check_started != steady::time_point{})
      stats->observe("publish_check_seconds", status_code_name(why.code()), steady::now() - check_started);
    count_refusal(sender.name, why);
    if (limiter.allow(status_code_name(why.code())))
      spdlog::warn("refused envelope from {} to {}: {}", sender.name, recipient, why.to_string());
    send_ctrl(sender, "nack", {std::string(status_code_name(why.code())), why.detail(), recipient}, message_id,
              static_cast<std::uint64_t>(why.code()));
  }

  void error_to_unknown(const bytes& route, status why) {
    stats->increment("frames_refused_total", status_code_name(why.code()));
    if (limiter.allow("unauthenticated")) spdlog::warn("frame from an unenrolled connection refused: {}", why.to_string());
    send_to_route(route, {net::to_bytes(session::frame::kError), net::to_bytes(why.to_string())});
  }

  // ------------------------------------------------------------ enrolment
  void on_hello(const bytes& route, const frames& f) {
    if (f.size() != 3) return error_to_unknown(route, {status_code::malformed, "HELLO must be 2 frames"});
    auto hello = session::decode_hello(f[2]);
    if (!hello) return refuse_enrolment(route, "?", hello.error());
    const std::string& name = hello->name;
    // One handshake per connection at a time: a flood of HELLOs on one connection
    // must not queue TPM work.
    if (pending.count(route)) return error_to_unknown(route, {status_code::overloaded, "an enrolment is already in progress"});
    if (pending.size() >= kMaxPendingEnrolments)
      return refuse_enrolment(route, name, {status_code::overloaded, "too many enrolments in progress"});
    if (agents.size() >= cfg.max_agents && !agents.count(name))
      return refuse_enrolment(route, name, {status_code::overloaded, "broker is at its agent limit"});

    // Policy before any expensive work, cheapest first.
    const role_policy* role = pol->find_role(hello->role);
    if (role == nullptr) return refuse_enrolment(route, name, {status_code::unknown_role, "role '" + hello->role + "' is not in the policy"});
    if (pol->is_revoked(name)) return refuse_enrolment(route, name, {status_code::revoked_agent, name + " is revoked"});
    if (status st = pol->check_declared_suite(hello->role, hello->suite); !st) return refuse_enrolment(route, name, st);
    if (hello->key_protection == protection::software && !role->allow_software)
      return refuse_enrolment(route, name, {status_code::software_key_refused, "role " + role->name + " requires a TPM key"});
    if (hello->key_protection == protection::tpm && hello->tpm_simulator && !role->allow_simulator)
      return refuse_enrolment(route, name, {status_code::simulator_refused, "role " + role->name + " refuses simulated TPMs"});
    auto key = crypto::public_key::from_der(hello->identity_der);
    suite s = *pol->suite_for(hello->role);
    if (!key) return refuse_enrolment(route, name, key.error());
    if (key->type() != s.key)
      return refuse_enrolment(route, name, {status_code::wrong_key, "identity key is " + key->type().describe() + ", role needs " + s.key.describe()});
    std::string fingerprint = key->fingerprint_hex();
    if (status st = check_pins(name, hello->role, fingerprint); !st) {
      // A changed key is remembered so that an operator can approve exactly this one.
      if (st.code() == status_code::key_changed) (void)reg->set_pending_key(name, fingerprint, key->pem());
      return refuse_enrolment(route, name, st);
    }
    auto agent_eph = session::ec_key_on_curve(hello->ephemeral_der, s.ecdh_curve);
    if (!agent_eph)
      return refuse_enrolment(route, name, {status_code::invalid_field, "ephemeral key is not on " + std::string(curve_name(s.ecdh_curve))});
    std::optional<crypto::public_key> agent_static;
    if (!hello->static_ecdh_der.empty()) {
      agent_static = session::ec_key_on_curve(hello->static_ecdh_der, s.ecdh_curve);
      if (!agent_static)
        return refuse_enrolment(route, name, {status_code::invalid_field, "static ECDH key is not on the role's curve"});
    }

    pending_enrolment p;
    p.hello = std::move(hello).value();
    p.hello_bytes = f[2];
    p.agent_suite = s;
    p.agent_key = std::move(key).value();
    p.ephemeral = crypto::ec_keypair::generate(s.ecdh_curve);
    p.agent_ephemeral = agent_eph;  // parsed once, used again at PROOF
    p.agent_static = std::move(agent_static);
    p.deadline = steady::now() + kEnrolmentTimeout;
    p.generation = ++generation_counter;
    p.challenge.nonce = crypto::random_bytes(session::kNonceSize);
    p.challenge.ephemeral_der = p.ephemeral->public_part().der();
    if (auto st = identity->static_ecdh_public(s.ecdh_curve)) p.challenge.static_ecdh_der = st->der();
    p.challenge.broker_name = cfg.name;
    p.challenge.broker_identity_der = identity->public_key().der();
    p.challenge.broker_hash = identity->key_suite().envelope_hash;
    signer_job job;
    job.route = route;
    job.generation = p.generation;
    job.transcript = session::challenge_transcript(p.hello_bytes, session::encode(p.challenge, false));
    if (!p.challenge.static_ecdh_der.empty()) job.agent_ephemeral = std::move(agent_eph);
    job.curve = s.ecdh_curve;
    pending[route] = std::move(p);
    {
      std::lock_guard lock(signer_mu);
      signer_jobs.push_back(std::move(job));
    }
    signer_cv.notify_one();
  }

  // check_pins: the policy pin, then the pin recorded on first use. Run at HELLO and
  // again at PROOF, because another enrolment of the same name may have completed
  // (and pinned a key) in between.
  status check_pins(const std::string& name, const std::string& role, const std::string& fingerprint) {
    if (const agent_pin* pin = pol->find_pin(name)) {
      if (pin->role != role) return {status_code::refused, name + " is pinned to role " + pin->role};
      if (!pin->fingerprint.empty() && pin->fingerprint != fingerprint)
        return {status_code::key_changed, "key " + fingerprint.substr(0, 16) + " is not the key pinned in the policy"};
    }
    if (auto rec = reg->find_agent(name)) {
      if (rec->revoked) return {status_code::revoked_agent, name + " is revoked: " + rec->revoked_reason};
      if (rec->fingerprint != fingerprint)
        return {status_code::key_changed, "key " + fingerprint.substr(0, 16) +
                                              " differs from the key pinned on first use; an operator must approve it"};
      if (rec->role != role) return {status_code::refused, name + " was enrolled as " + rec->role};
    }
    return {};
  }

  void on_signed(signer_result r) {
    auto it = pending.find(r.route);
    if (it == pending.end() || it->second.generation != r.generation) return;  // gone, or an older handshake
    pending_enrolment& p = it->second;
    if (!r.signature) {
      spdlog::error("broker identity could not sign a challenge: {}", r.signature.error().to_string());
      return refuse_enrolment(r.route, p.hello.name, {status_code::tpm_unavailable, "broker TPM unavailable"});
    }
    p.challenge.signature = std::move(r.signature).value();
    p.z_es = std::move(r.z_es);
    if (!p.challenge.static_ecdh_der.empty() && !p.z_es) {
      // Our TPM could not compute its ECDH share: drop the static key from this handshake? No: the
      // challenge already names it and is signed. Fail closed.
      return refuse_enrolment(r.route, p.hello.name, {status_code::tpm_unavailable, "broker TPM ECDH failed"});
    }
    p.challenge_bytes = session::encode(p.challenge);
    send_to_route(r.route, {net::to_bytes(session::frame::kChallenge), p.challenge_bytes});
  }

  void on_proof(const bytes& route, const frames& f) {
    auto it = pending.find(route);
    if (it == pending.end() || it->second.challenge_bytes.empty())
      return error_to_unknown(route, {status_code::malformed, "PROOF without a CHALLENGE"});
    pending_enrolment& p = it->second;
    const std::string name = p.hello.name;
    if (f.size() != 3) return refuse_enrolment(route, name, {status_code::malformed, "PROOF must be 2 frames"});
    auto proof = session::decode_proof(f[2]);
    if (!proof) return refuse_enrolment(route, name, proof.error());
    const suite& s = p.agent_suite;
    bytes transcript = session::proof_transcript(p.hello_bytes, p.challenge_bytes);
    if (status st = crypto::verify_digest(*p.agent_key, s.key, s.envelope_hash, crypto::digest(s.envelope_hash, transcript),
                                          proof->signature);
        !st)
      return refuse_enrolment(route, name, {status_code::bad_signature, "proof of possession does not verify"});

    // Pins again: another enrolment of this name may have completed meanwhile.
    if (status st = check_pins(name, p.hello.role, p.agent_key->fingerprint_hex()); !st) return refuse_enrolment(route, name, st);
    if (agents.size() >= cfg.max_agents && !agents.count(name))
      return refuse_enrolment(route, name, {status_code::overloaded, "broker is at its agent limit"});
    const bool first_use = !reg->find_agent(name).has_value();

    // Key schedule (same order as the agent): Z_ee, Z_se (agent static), Z_es (ours).
    std::vector<secret_bytes> secrets;
    auto z_ee = p.ephemeral->derive(*p.agent_ephemeral);
    if (!z_ee) return refuse_enrolment(route, name, z_ee.error());
    secrets.push_back(std::move(z_ee).value());
    if (p.agent_static) {
      auto z_se = p.ephemeral->derive(*p.agent_static);
      if (!z_se) return refuse_enrolment(route, name, z_se.error());
      secrets.push_back(std::move(z_se).value());
    }
    if (p.z_es) secrets.push_back(std::move(*p.z_es));
    bytes all = p.hello_bytes;
    all.insert(all.end(), p.challenge_bytes.begin(), p.challenge_bytes.end());
    all.insert(all.end(), f[2].begin(), f[2].end());
    bytes th = crypto::digest(s.mac_hash, all);
    auto keys = session::derive_keys(secrets, p.hello.nonce, p.challenge.nonce, "hop", name, cfg.name, th, s.mac_hash, s.mac_hash);

    session::welcome_msg w;
    w.session_id = keys.session_id;
    w.confirm_tag = crypto::hmac(s.mac_hash, keys.responder_to_initiator.view(), session::welcome_confirm_input(th));
    w.rekey_after_messages = cfg.rekey_after_messages;
    w.rekey_after_seconds = cfg.rekey_after_seconds;

    // Record the agent (a re-enrolment replaces its connection and hop keys; the
    // replay window stays, so envelopes from before a restart cannot be replayed).
    if (auto old = by_route.find(route); old != by_route.end() && old->second != name) {
      // This connection was another agent before: that agent is offline now.
      if (auto prev = agents.find(old->second); prev != agents.end()) mark_offline_if_gone(prev->second);
    }
    agent_entry& a = agents[name];
    if (a.online && a.route != route) mark_offline_if_gone(a);
    a.name = name;
    a.role = p.hello.role;
    a.agent_suite = s;
    a.key = p.agent_key;
    a.key_id = p.agent_key->fingerprint();
    a.key_protection = p.hello.key_protection;
    a.simulator = p.hello.tpm_simulator;
    a.manufacturer = p.hello.tpm_manufacturer;
    a.route = route;
    a.online = true;
    // A re-enrolment of a connected agent is its hop rekey: the previous agent→broker
    // key stays valid for the grace window (envelopes already in flight).
    a.hop.install(session::mac_key{keys.session_id, std::move(keys.responder_to_initiator), s.mac_hash},
                  session::mac_key{keys.session_id, std::move(keys.initiator_to_responder), s.mac_hash},
                  std::chrono::seconds(cfg.rekey_grace_seconds));
    by_route[route] = name;
    agent_record rec;
    rec.name = name;
    rec.role = a.role;
    rec.suite = s.name;
    rec.fingerprint = a.key->fingerprint_hex();
    rec.public_key_pem = a.key->pem();
    rec.protection = std::string(protection_name(a.key_protection));
    rec.tpm_manufacturer = a.manufacturer;
    rec.tpm_simulator = a.simulator;
    rec.enrolled_at = rec.last_seen = static_cast<std::int64_t>(session::now_ms());
    reg->upsert_agent(rec);  // committed before WELCOME: a pinned key survives kill -9
    if (first_use) spdlog::info("pinned {} ({}) to key {} on first use", name, a.role, rec.fingerprint);
    pending.erase(it);
    send_to_route(route, {net::to_bytes(session::frame::kWelcome), session::encode(w)});
    stats->increment("enrolments_total", "accepted");
    stats->set_gauge("agents_online", "", static_cast<double>(by_route.size()));
    spdlog::info("enrolled {} as {} ({}, {}{}{})", name, a.role, a.agent_suite.name, protection_name(a.key_protection),
                 a.key_protection == protection::tpm ? ", " + a.manufacturer : "", a.simulator ? " simulator" : "");
  }

  // ------------------------------------------------------------ enforcement at publish
  steady::time_point check_started{};  // the envelope being checked (for the latency histogram)

  void on_envelope(const bytes& route, const frames& f) {
    auto started = steady::now();
    check_started = started;
    struct reset_guard {
      steady::time_point& t;
      ~reset_guard() { t = {}; }
    } guard{check_started};
    // 1. The connection must be enrolled; size limits before decoding.
    auto who = by_route.find(route);
    if (who == by_route.end()) return error_to_unknown(route, {status_code::unknown_agent, "not enrolled"});
    agent_entry& a = agents[who->second];
    if (f.size() != 4) return nack(a, {}, {status_code::malformed, "an envelope is 2 frames"}, "");
    if (f[2].size() + f[3].size() > cfg.max_frame_bytes) return nack(a, {}, {status_code::too_large, "envelope exceeds max_frame_bytes"}, "");
    auto h = decode_signed_part(f[2]);
    if (!h) return nack(a, {}, h.error(), "");
    auto auth = decode_auth_part(f[3]);
    if (!auth) return nack(a, h->message_id, auth.error(), h->to);
    // 2. No spoofing: the sender is the authenticated connection.
    if (status st = check_sender(a, *h); !st) return nack(a, h->message_id, st, h->to);
    // 3. Hop MAC.
    bytes digest = envelope_digest(a.agent_suite.envelope_hash, f[2]);
    if (status st = session::verify_hop_mac(a.hop, digest, *auth); !st) return nack(a, h->message_id, st, h->to);
    enforce_and_route(a, *h, *auth, f[2], digest);
    accepted_check_seconds->observe(steady::now() - started);
  }

  // on_wire_batch: several envelopes under one hop MAC (schemas/envelope.md §7.3),
  // frames [route, BATCH, session id, MAC, signed part, auth part, ...]. The batch is
  // authenticated as a unit: a bad MAC, a malformed or oversized member refuses every
  // envelope in it (the sender's library never builds one; whoever did, nothing of
  // it is forwarded). After that each envelope is checked and routed on its own, and
  // only the ones that fail a check are refused.
  void on_wire_batch(const bytes& route, const frames& f) {
    auto started = steady::now();
    auto who = by_route.find(route);
    if (who == by_route.end()) return error_to_unknown(route, {status_code::unknown_agent, "not enrolled"});
    agent_entry& a = agents[who->second];
    wire_batches_total->increment();
    const std::span<const bytes> envelope_frames = f.size() > 4 ? std::span(f).subspan(4) : std::span<const bytes>();
    const status shape = session::check_wire_batch_shape(envelope_frames, cfg.max_frame_bytes);
    // A batch that is not pairs is refused once; one too large, envelope by envelope (below).
    if (!shape && shape.code() == status_code::malformed) return nack(a, {}, shape, "");
    const std::size_t count = envelope_frames.size() / 2;
    struct member {
      envelope_header header;
      envelope_auth auth;
      bytes digest;
    };
    std::vector<member> members;
    members.reserve(count);
    auto refuse_all = [&](const status& why) {
      // Every envelope whose header decodes is refused by its id: the sender hears of
      // each. (Only on this failure path are headers decoded a second time.)
      bool anonymous = false;
      for (std::size_t i = 4; i < f.size(); i += 2) {
        if (auto h = decode_signed_part(f[i]); h) nack(a, h->message_id, why, h->to);
        else anonymous = true;
      }
      if (anonymous) nack(a, {}, why, "");
    };
    if (!shape) return refuse_all(shape);
    for (std::size_t i = 4; i < f.size(); i += 2) {
      auto h = decode_signed_part(f[i]);
      if (!h) return refuse_all(h.error());
      auto auth = decode_auth_part(f[i + 1]);
      if (!auth) return refuse_all(auth.error());
      if (auth->hop_mac) return refuse_all({status_code::malformed, "an envelope in a wire batch carries a hop MAC of its own"});
      bytes digest = envelope_digest(a.agent_suite.envelope_hash, f[i]);
      members.push_back({std::move(*h), std::move(*auth), std::move(digest)});
    }
    std::vector<wire_batch_item> items;
    items.reserve(count);
    for (const auto& m : members) items.push_back({m.digest, &m.auth});
    if (status st = session::verify_wire_batch_mac(a.hop, f[2], items, f[3]); !st) return refuse_all(st);
    std::vector<staged_delivery> staged;
    if (cfg.wire_batches) {
      staged.reserve(count);
      fanout = &staged;
    }
    for (std::size_t k = 0; k < members.size(); ++k) {
      member& m = members[k];
      check_started = steady::now();
      if (status st = check_sender(a, m.header); !st) {
        nack(a, m.header.message_id, st, m.header.to);
        continue;
      }
      enforce_and_route(a, m.header, m.auth, f[4 + 2 * k], m.digest);
    }
    fanout = nullptr;
    send_staged(a, staged);
    check_started = {};
    accepted_check_seconds->observe((steady::now() - started) / static_cast<long>(count));
  }

  static status check_sender(const agent_entry& a, const envelope_header& h) {
    if (h.sender == a.name) return {};
    return {status_code::spoofed_sender, "sender '" + h.sender + "' is not this connection's agent"};
  }

  // enforce_and_route: steps 4-7 of enforcement at publish, for an envelope whose
  // sender and hop MAC are already established, then routing.
  void enforce_and_route(agent_entry& a, envelope_header& h, const envelope_auth& auth, const bytes& signed_part,
                         byte_view digest) {
    if (!runtime.permissive_testing) {
      // 4. Declared suite equals the role's suite; the pinned key; the assurance level.
      if (status st = pol->check_declared_suite(a.role, h.suite); !st) return nack(a, h.message_id, st, h.to);
      if (status st = session::check_key_and_assurance(*pol, a.role, a.key_protection, a.key_id, auth); !st)
        return nack(a, h.message_id, st, h.to);
      // 5. ACL.
      if (status st = check_acl(a, h); !st) {
        // Naming the recipient lets the trust graph draw the refused attempt to it.
        if (h.to_kind == recipient_kind::agent && st.code() == status_code::acl_denied)
          st = status(st.code(), st.detail() + " (recipient '" + h.to + "')");
        return nack(a, h.message_id, st, h.to);
      }
      // 6. Replay: sequence window and clock skew (committed only after the signature).
      if (status st = a.window.check(h.sequence); !st) return nack(a, h.message_id, st, h.to);
      if (status st = session::check_timestamp(h.timestamp_ms, session::now_ms(), cfg.max_clock_skew_ms); !st)
        return nack(a, h.message_id, st, h.to);
      // 7. Signature (the most expensive check, last).
      if (status st = session::verify_envelope_signature(*a.key, a.agent_suite, digest, auth, &roots); !st)
        return nack(a, h.message_id, st, h.to);
      a.window.commit(h.sequence);
    }
    a.hop.count_received();
    a.seen_ms = static_cast<std::int64_t>(session::now_ms());
    if (!a.seen_dirty) {
      a.seen_dirty = true;
      traffic_dirty.insert(a.name);
    }
    if (h.type == envelope_type::control) note_session_control(h);
    route_envelope(a, h, auth, signed_part, digest);
  }

  status check_acl(const agent_entry& a, const envelope_header& h) {
    if (h.to_kind == recipient_kind::topic) return pol->check_publish(a.role, h.to);
    auto r = agents.find(h.to);
    if (r == agents.end()) return {status_code::not_deliverable, "no agent named '" + h.to + "' is known"};
    status direct = pol->check_send(a.role, r->second.role);
    if (direct) return direct;
    // Session set-up is allowed wherever traffic could flow either way: direct, or
    // over a topic one publishes and the other subscribes to.
    const bool session_control = h.type == envelope_type::control &&
        (h.content_type == session::kOfferContentType || h.content_type == session::kAcceptContentType);
    if (session_control && session_allowed(a, r->second)) return {};
    return direct;
  }

  bool session_allowed(const agent_entry& a, const agent_entry& b) {
    if (pol->check_send(b.role, a.role).ok()) return true;
    for (const auto& t : b.subscriptions)
      if (pol->check_publish(a.role, t).ok()) return true;
    for (const auto& t : a.subscriptions)
      if (pol->check_publish(b.role, t).ok()) return true;
    return false;
  }

  // forward re-MACs the hop for the recipient's session; the signed part is
  // forwarded byte for byte.
  status forward(agent_entry& to, const envelope_auth& auth, const bytes& signed_part, byte_view digest) {
    if (!to.online) return {status_code::not_deliverable, to.name + " is offline"};
    const session::mac_key* k = to.hop.send_key();
    const session_mac hop{"", k->session_id, session::hop_tag(*k, digest, auth)};
    const bytes auth_part = encode_auth_part(auth, &hop);
    return sent_to(to, net::send_frames(router, {to.route, as_bytes(session::frame::kEnvelope), signed_part, auth_part}));
  }

  // Fan-out as wire batches (schemas/envelope.md §7.3): while the envelopes of one
  // incoming wire batch are routed, what goes to each recipient is staged, then sent
  // as one wire batch per recipient — one hop MAC and one ZeroMQ message instead of
  // one per envelope. The staged pointers refer to on_wire_batch's decoded members
  // and received frames, which outlive send_staged.
  struct staged_delivery {
    agent_entry* to;
    const envelope_header* header;
    const envelope_auth* auth;
    const bytes* signed_part;
    byte_view digest;
  };
  std::vector<staged_delivery>* fanout = nullptr;  // non-null while a wire batch is routed

  // deliver_one forwards now, or stages the envelope for its recipient's wire batch.
  void deliver_one(agent_entry& from, agent_entry& to, const envelope_header& h, const envelope_auth& auth,
                   const bytes& signed_part, byte_view digest) {
    if (fanout != nullptr) {
      fanout->push_back({&to, &h, &auth, &signed_part, digest});
      return;
    }
    delivered(from, to, h, forward(to, auth, signed_part, digest));
  }

  // delivered accounts for one envelope's outcome for one recipient.
  void delivered(agent_entry& from, const agent_entry& to, const envelope_header& h, const status& st) {
    const bool to_agent = h.to_kind == recipient_kind::agent;
    if (!st) return nack(from, h.message_id, st, to_agent ? h.to : to.name);
    if (!to_agent) return count_traffic(from, to.name);
    if (h.type != envelope_type::control) count_traffic(from, h.to);
    accepted_total->increment();
  }

  void send_staged(agent_entry& from, std::vector<staged_delivery>& staged) {
    // Grouped by recipient, at most kWireBatchEnvelopes and kWireBatchBytes of signed
    // parts a message (whatever size the sender chose); each recipient's envelopes
    // keep their order.
    std::stable_sort(staged.begin(), staged.end(),
                     [](const staged_delivery& x, const staged_delivery& y) { return std::less<>{}(x.to, y.to); });
    for (std::size_t i = 0; i < staged.size();) {
      std::size_t j = i, group_bytes = 0;
      while (j < staged.size() && staged[j].to == staged[i].to && j - i < session::kWireBatchEnvelopes &&
             (j == i || group_bytes + staged[j].signed_part->size() <= session::kWireBatchBytes))
        group_bytes += staged[j++].signed_part->size();
      const std::span<const staged_delivery> group(staged.data() + i, j - i);
      agent_entry& to = *group[0].to;
      const status st = group.size() == 1 ? forward(to, *group[0].auth, *group[0].signed_part, group[0].digest)
                                          : forward_batch(to, group);
      for (const auto& d : group) delivered(from, to, *d.header, st);
      i = j;
    }
  }

  status forward_batch(agent_entry& to, std::span<const staged_delivery> group) {
    if (!to.online) return {status_code::not_deliverable, to.name + " is offline"};
    const session::mac_key* k = to.hop.send_key();
    std::vector<wire_batch_item> items;
    std::vector<bytes> auth_parts;  // without hop MACs: the batch MAC covers them
    items.reserve(group.size());
    auth_parts.reserve(group.size());
    for (const auto& d : group) {
      items.push_back({d.digest, d.auth});
      auth_parts.push_back(encode_auth_part(*d.auth, nullptr));
    }
    const bytes tag = session::wire_batch_tag(*k, items);
    std::vector<byte_view> parts;
    parts.reserve(4 + 2 * group.size());
    parts.insert(parts.end(), {to.route, as_bytes(session::frame::kWireBatch), k->session_id, tag});
    for (std::size_t n = 0; n < group.size(); ++n) {
      parts.push_back(*group[n].signed_part);
      parts.push_back(auth_parts[n]);
    }
    wire_batches_out_total->increment();
    return sent_to(to, net::send_frames(router, parts));
  }

  // sent_to: what a send to `to` means for the envelopes in it.
  status sent_to(agent_entry& to, net::send_outcome outcome) {
    switch (outcome) {
      case net::send_outcome::sent: return {};
      case net::send_outcome::would_block:  // its queue is full: the sender is told, nothing vanishes
        return {status_code::overloaded, to.name + " is not keeping up (high-water mark)"};
      case net::send_outcome::unreachable:  // the connection is gone (crashed without saying bye)
        mark_offline_if_gone(to);
        return {status_code::not_deliverable, to.name + " is offline"};
    }
    return {status_code::internal, "unreachable"};
  }

  void route_envelope(agent_entry& from, const envelope_header& h, const envelope_auth& auth, const bytes& signed_part,
                      byte_view digest) {
    if (h.to_kind == recipient_kind::agent) {
      auto r = agents.find(h.to);
      if (r == agents.end()) return nack(from, h.message_id, {status_code::not_deliverable, "no agent named '" + h.to + "'"}, h.to);
      return deliver_one(from, r->second, h, auth, signed_part, digest);
    }
    auto subs = subscribers.find(h.to);
    if (subs != subscribers.end()) {
      for (const auto& name : subs->second) {
        if (name == from.name) continue;
        auto r = agents.find(name);
        if (r == agents.end()) continue;
        deliver_one(from, r->second, h, auth, signed_part, digest);
      }
    }
    accepted_total->increment();
  }

  void count_traffic(agent_entry& from, std::string_view to) {
    auto it = from.traffic_to.find(to);
    if (it == from.traffic_to.end()) it = from.traffic_to.emplace(std::string(to), 0).first;
    ++it->second;  // `from` is already in traffic_dirty: enforce_and_route marked it seen
  }

  // leave_topic removes `name` from a topic's set and drops the set once empty, so
  // topics that come and go leave nothing behind.
  static void leave_topic(std::map<std::string, std::set<std::string>, std::less<>>& sets, const std::string& topic,
                          const std::string& name) {
    auto it = sets.find(topic);
    if (it == sets.end()) return;
    it->second.erase(name);
    if (it->second.empty()) sets.erase(it);
  }

  void mark_offline_if_gone(agent_entry& a) {
    if (!a.online) return;
    a.online = false;
    by_route.erase(a.route);
    for (const auto& t : a.subscriptions) {
      leave_topic(subscribers, t, a.name);
      notify_members(t);
    }
    a.subscriptions.clear();
    for (const auto& t : a.watching) leave_topic(watchers, t, a.name);
    a.watching.clear();
    stats->set_gauge("agents_online", "", static_cast<double>(by_route.size()));
  }

  // ------------------------------------------------------------ control
  void on_control(const bytes& route, const frames& f) {
    auto who = by_route.find(route);
    if (who == by_route.end()) return error_to_unknown(route, {status_code::unknown_agent, "not enrolled"});
    agent_entry& a = agents[who->second];
    if (f.size() != 5) return nack(a, {}, {status_code::malformed, "a control message is 3 frames"}, "");
    if (status st = session::verify_ctrl_tag(a.hop, f[2], f[3], f[4]); !st) return nack(a, {}, st, "");
    auto m = session::decode_ctrl(f[3]);
    if (!m) return nack(a, {}, m.error(), "");
    if (!a.ctrl_in.accept(f[2], m->seq)) return nack(a, {}, {status_code::replayed, "control sequence replayed"}, "");
    stats->increment("control_total", m->op);
    if (m->op == "subscribe" && m->strings.size() == 1) return subscribe(a, m->strings[0]);
    if (m->op == "unsubscribe" && m->strings.size() == 1) return unsubscribe(a, m->strings[0]);
    if (m->op == "peer" && m->strings.size() == 1) return peer_info(a, m->strings[0]);
    if (m->op == "members" && m->strings.size() == 1) return watch_members(a, m->strings[0]);
    if (m->op == "stats") return send_ctrl(a, "stats", {stats->to_json()});
    if (m->op == "bye") return disconnect(a);
    if (m->op == "ping") return;
    nack(a, {}, {status_code::invalid_field, "unknown control operation '" + m->op.substr(0, 32) + "'"}, "");
  }

  void subscribe(agent_entry& a, const std::string& topic) {
    status st = topic.size() <= 128 ? pol->check_subscribe(a.role, topic)
                                    : status(status_code::too_large, "topic longer than 128 bytes");
    if (st && a.subscriptions.size() >= cfg.max_subscriptions_per_agent && !a.subscriptions.count(topic))
      st = status(status_code::too_large, "subscription limit reached");
    if (st) {
      a.subscriptions.insert(topic);
      subscribers[topic].insert(a.name);
      notify_members(topic);
    } else if (limiter.allow("subscribe")) {
      spdlog::warn("subscription of {} to {} refused: {}", a.name, topic, st.to_string());
    }
    stats->increment("subscriptions_total", st ? "accepted" : status_code_name(st.code()));
    send_ctrl(a, "subscribed", {topic, st.detail()}, {}, static_cast<std::uint64_t>(st.code()));
  }

  void unsubscribe(agent_entry& a, const std::string& topic) {
    if (!a.subscriptions.erase(topic)) return;
    leave_topic(subscribers, topic, a.name);
    notify_members(topic);
  }

  // watch_members answers (and follows) a topic's membership, only for topics the
  // agent may publish to: who subscribes is not everyone's business, and every
  // watch costs memory, so they are capped like subscriptions.
  void watch_members(agent_entry& a, const std::string& topic) {
    if (status st = pol->check_publish(a.role, topic); !st) return nack(a, {}, st, topic);
    if (!a.watching.count(topic)) {
      if (a.watching.size() >= cfg.max_subscriptions_per_agent)
        return nack(a, {}, {status_code::too_large, "membership watch limit reached"}, topic);
      a.watching.insert(topic);
      watchers[topic].insert(a.name);
    }
    send_members(a, topic);
  }

  void send_members(agent_entry& a, const std::string& topic) {
    std::vector<std::string> list{topic};
    if (auto it = subscribers.find(topic); it != subscribers.end())
      for (const auto& n : it->second)
        if (agents[n].online) list.push_back(n);
    send_ctrl(a, "members", std::move(list));
  }

  void notify_members(const std::string& topic) {
    auto it = watchers.find(topic);
    if (it == watchers.end()) return;
    for (const auto& w : it->second)
      if (auto a = agents.find(w); a != agents.end() && a->second.online) send_members(a->second, topic);
  }

  void peer_info(agent_entry& a, const std::string& name) {
    auto it = agents.find(name);
    if (it == agents.end() || !it->second.key) return send_ctrl(a, "peer", {name}, {}, 1);
    if (auto rec = reg->find_agent(name); rec && rec->revoked) return send_ctrl(a, "peer", {name, "revoked"}, {}, 2);
    const agent_entry& p = it->second;
    send_ctrl(a, "peer", {p.name, p.role, p.agent_suite.name, std::string(protection_name(p.key_protection)),
                          p.manufacturer, p.simulator ? "1" : "0"},
              p.key->der(), 0);
  }

  void disconnect(agent_entry& a) {
    mark_offline_if_gone(a);
    spdlog::info("{} disconnected", a.name);
  }

  // ------------------------------------------------------------ loop
  void handle(frames& f) {
    if (f.size() < 2) {
      stats->increment("frames_malformed_total");
      // A message with too many frames arrives as its routing id alone.
      if (f.size() == 1) {
        const status why{status_code::malformed, "too many frames in one message"};
        if (auto who = by_route.find(f[0]); who != by_route.end()) return nack(agents[who->second], {}, why, "");
        return error_to_unknown(f[0], why);
      }
      return;
    }
    const bytes& route = f[0];
    std::string_view kind = net::as_string(f[1]);
    if (kind == session::frame::kEnvelope) return on_envelope(route, f);
    if (kind == session::frame::kWireBatch) return on_wire_batch(route, f);
    if (kind == session::frame::kControl) return on_control(route, f);
    if (kind == session::frame::kHello) return on_hello(route, f);
    if (kind == session::frame::kProof) return on_proof(route, f);
    stats->increment("frames_malformed_total");
    error_to_unknown(route, {status_code::malformed, "unknown frame kind"});
  }

  void refresh_tpm_metrics() {
    if (!runtime.tpm) return;
    for (const auto& op : runtime.tpm->stats()) {
      stats->set_gauge("tpm_operations_total", op.operation, static_cast<double>(op.count));
      stats->set_gauge("tpm_operation_failures_total", op.operation, static_cast<double>(op.failures));
      stats->set_gauge("tpm_operation_mean_ms", op.operation, op.mean_ms);
    }
  }

  void serve_admin() {
    zmq::message_t req;
    if (!admin->recv(req, zmq::recv_flags::dontwait)) return;
    std::string cmd = req.to_string();
    refresh_tpm_metrics();
    std::string reply;
    flush_registry();  // answers reflect everything counted so far
    if (cmd == "metrics") reply = stats->to_prometheus_text();
    else if (cmd == "stats") reply = stats->to_json();
    else reply = admin_json->handle(cmd, now_unix_ms());
    admin->send(zmq::buffer(reply), zmq::send_flags::none);
  }

  void expire_pending() {
    flush_registry();
    auto now = steady::now();
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline < now) {
        stats->increment("enrolments_total", "timeout");
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
  }

  void signer_loop() {
    for (;;) {
      signer_job job;
      {
        std::unique_lock lock(signer_mu);
        signer_cv.wait(lock, [&] { return signer_stop || !signer_jobs.empty(); });
        if (signer_stop) return;
        job = std::move(signer_jobs.front());
        signer_jobs.pop_front();
      }
      signer_result r;
      r.route = job.route;
      r.generation = job.generation;
      try {
        r.signature = identity->sign_message(job.transcript);
        if (job.agent_ephemeral) {
          auto z = identity->static_ecdh(job.curve, *job.agent_ephemeral);
          if (z) r.z_es = std::move(z).value();
        }
      } catch (const std::exception& e) {
        r.signature = status{status_code::tpm_unavailable, e.what()};
      }
      {
        std::lock_guard lock(signer_mu);
        signer_done.push_back(std::move(r));
      }
      std::uint64_t one = 1;
      (void)!::write(signer_fd, &one, sizeof one);
    }
  }
};

// broker_admin_state: the registry plus the live connection table. A revocation
// takes effect at once.
class broker_admin_state final : public registry_admin_state {
 public:
  explicit broker_admin_state(broker::impl& b) : registry_admin_state(*b.reg), b_(b) {}
  bool online(std::string_view agent) override {
    auto it = b_.agents.find(agent);
    return it != b_.agents.end() && it->second.online;
  }
  nlohmann::json stats() override { return nlohmann::json::parse(b_.stats->to_json()); }
  status revoke(const std::string& agent, const std::string& reason, const std::string& operator_name) override {
    status st = registry_admin_state::revoke(agent, reason, operator_name);
    if (st) b_.revoke_now(agent);
    spdlog::warn("operator {} revoked {}: {}", operator_name, agent, reason);
    return st;
  }
  status approve(const std::string& agent, const std::string& fingerprint, const std::string& operator_name) override {
    status st = registry_admin_state::approve(agent, fingerprint, operator_name);
    spdlog::warn("operator {} approved key {} for {}: {}", operator_name, fingerprint.substr(0, 16), agent, st.to_string());
    return st;
  }
  status reset_counters(const std::string& agent, const std::string& operator_name) override {
    b_.flush_registry();
    spdlog::info("operator {} reset refusal counters{}", operator_name, agent.empty() ? "" : " of " + agent);
    return registry_admin_state::reset_counters(agent, operator_name);
  }

 private:
  broker::impl& b_;
};

broker::broker(broker_config cfg, std::shared_ptr<const policy> pol, std::shared_ptr<identity_key> identity,
               std::shared_ptr<metrics> m, broker_runtime_options runtime)
    : impl_(std::make_unique<impl>()) {
  impl& d = *impl_;
  d.cfg = std::move(cfg);
  d.pol = std::move(pol);
  d.identity = std::move(identity);
  d.stats = std::move(m);
  d.runtime = runtime;
  d.accepted_total = &d.stats->get_counter("envelopes_total", "accepted");
  d.accepted_check_seconds = &d.stats->get_histogram("publish_check_seconds", "accepted");
  d.wire_batches_total = &d.stats->get_counter("wire_batches_total");
  d.wire_batches_out_total = &d.stats->get_counter("wire_batches_sent_total");
  fs::create_directories(d.cfg.state_dir);
  d.reg.emplace(d.cfg.state_dir / "registry.db");
  spdlog::info("registry {} (schema {}, {} agents known)", (d.cfg.state_dir / "registry.db").string(),
               d.reg->schema_version(), d.reg->agents().size());
  d.admin_state_ = std::make_unique<broker_admin_state>(d);
  d.admin_json = std::make_unique<admin_handler>(d.pol, *d.admin_state_);
  // Create the static TPM ECDH keys now (one per curve the policy uses), so no key
  // creation ever happens while agents wait.
  for (const suite& s : d.pol->suites()) (void)d.identity->static_ecdh_public(s.ecdh_curve);

  d.router.set(zmq::sockopt::router_mandatory, 1);  // unroutable sends fail loudly, never vanish
  d.router.set(zmq::sockopt::sndhwm, d.cfg.send_hwm);
  d.router.set(zmq::sockopt::rcvhwm, d.cfg.recv_hwm);
  d.router.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(d.cfg.max_frame_bytes));
  d.router.set(zmq::sockopt::linger, 0);
  if (const int ivl = d.cfg.heartbeat_interval_ms; ivl > 0) {
    // A silent agent connection is dropped with its buffers; agents are asked to drop
    // a silent broker too (and heartbeat themselves by default: see set_heartbeats).
    net::set_heartbeats(d.router, ivl);
    spdlog::info("ZMTP heartbeats every {} ms (a connection silent for {} ms is dropped)", ivl, 3 * ivl);
  }
  for (const auto& ep : d.cfg.endpoints) {
    if (ep.rfind("ipc://", 0) == 0) fs::create_directories(fs::path(ep.substr(6)).parent_path());
    d.router.bind(ep);
    spdlog::info("listening on {}", ep);
  }
  if (!d.cfg.admin_endpoint.empty()) {
    d.admin.emplace(d.ctx, zmq::socket_type::rep);
    d.admin->set(zmq::sockopt::linger, 0);
    if (d.cfg.admin_endpoint.rfind("ipc://", 0) == 0) fs::create_directories(fs::path(d.cfg.admin_endpoint.substr(6)).parent_path());
    d.admin->bind(d.cfg.admin_endpoint);
    spdlog::info("admin endpoint on {}", d.cfg.admin_endpoint);
  }
  if (d.runtime.permissive_testing)
    spdlog::critical("PERMISSIVE TESTING MODE: envelopes are forwarded WITHOUT suite, ACL, replay or signature "
                     "checks. This broker must never carry real traffic.");
  d.signer_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  d.signer = std::thread([&d] { d.signer_loop(); });
}

broker::~broker() {
  impl& d = *impl_;
  {
    std::lock_guard lock(d.signer_mu);
    d.signer_stop = true;
  }
  d.signer_cv.notify_all();
  if (d.signer.joinable()) d.signer.join();
  if (d.signer_fd >= 0) ::close(d.signer_fd);
}

void broker::run(const std::atomic<bool>& stop) {
  impl& d = *impl_;
  auto last_sweep = steady::now();
  net::frames received;  // reused for every message: its buffers stay allocated
  while (!stop.load()) {
    zmq::pollitem_t items[3] = {{d.router.handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, d.signer_fd, ZMQ_POLLIN, 0},
                                {d.admin ? d.admin->handle() : nullptr, d.admin ? 0 : -1, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, d.admin ? 3 : 2, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal (SIGTERM): the loop condition decides
      throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t n;
      (void)!::read(d.signer_fd, &n, sizeof n);
      std::deque<signer_result> done;
      {
        std::lock_guard lock(d.signer_mu);
        done.swap(d.signer_done);
      }
      for (auto& r : done) d.on_signed(std::move(r));
    }
    // Bounded batch per wake-up so the signer results and the admin socket are not starved.
    for (int budget = 0; budget < 4096; ++budget) {
      if (!net::recv_multipart_into(d.router, received, 4 + 2 * session::kMaxWireBatchEnvelopes)) break;
      try {
        d.handle(received);
      } catch (const std::exception& e) {
        // A bug must not take the broker down with every other flow: count, log, go on.
        d.stats->increment("internal_errors_total");
        spdlog::error("internal error while handling a message: {}", e.what());
      }
    }
    if (d.admin && (items[2].revents & ZMQ_POLLIN)) d.serve_admin();
    if (steady::now() - last_sweep > std::chrono::seconds(1)) {
      d.expire_pending();
      last_sweep = steady::now();
    }
  }
  d.flush_registry();
  spdlog::info("stopping: {} agents known, {} online", d.agents.size(), d.by_route.size());
}

}  // namespace agentbus::broker
