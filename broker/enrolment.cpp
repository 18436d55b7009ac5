#include "enrolment.hpp"

#include <spdlog/spdlog.h>

#include <array>

#include "admin_protocol.hpp"
#include "logging.hpp"
#include "attestation/evidence.hpp"
#include "session/checks.hpp"
#include "session/key_agreement.hpp"
#include "session/replay_window.hpp"

namespace agentbus::broker {
namespace {
using steady = std::chrono::steady_clock;
}

struct enrolment::handshake {
  session::hello_msg hello;
  bytes hello_bytes;
  session::challenge_msg challenge;
  bytes challenge_bytes;  // empty until signed and sent
  std::optional<crypto::ec_keypair> ephemeral;
  std::optional<crypto::public_key> agent_key, agent_ephemeral, agent_static;  // from HELLO, checked
  std::string agent_fingerprint;  // of agent_key
  std::string peer_address;       // as libzmq reports it ("" if unknown)
  std::string transport_key;      // the connection's CurveZMQ client key, hex ("" on a plain endpoint)
  int transport_fd = -1;          // the connection's socket (libzmq's; -1 if it did not say)
  std::optional<attestation::attested_key> attested;  // the evidence held; PROOF must return its secret
  std::optional<secret_bytes> static_share;  // broker static (TPM) × agent ephemeral
  suite agent_suite;
  admission pool = admission::open;
  steady::time_point deadline;
  std::uint64_t generation = 0;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  ~handshake() { cancelled->store(true); }  // the worker skips its job if it has not run it yet
};

enrolment::enrolment(const broker_config& cfg, const policy& pol, identity_key& identity, registry& reg,
                     connections& agents, outbox& out, accounting& acct, submit_fn submit)
    : cfg_(cfg), pol_(pol), identity_(identity), reg_(reg), authority_(pol, reg), agents_(agents), out_(out), acct_(acct),
      submit_(std::move(submit)) {
  for (const suite& s : pol_.suites()) {
    if (static_keys_.count(s.ecdh_curve)) continue;
    auto k = identity_.static_ecdh_public(s.ecdh_curve);
    if (!k) {
      acct_.stats().increment("static_ecdh_failures_total", curve_name(s.ecdh_curve));
      spdlog::error("broker identity has no static ECDH key on {}: {}; hop sessions on that curve use ephemeral "
                    "ECDH only",
                    curve_name(s.ecdh_curve), k.error().to_string());
    } else if (k->has_value()) {
      static_key_der_.emplace(s.ecdh_curve, (**k).der());
      static_keys_.emplace(s.ecdh_curve, std::move(**k));
    }
  }
  identity_der_ = identity_.public_key().der();
}

enrolment::~enrolment() = default;

void enrolment::refuse(const bytes& route, const std::string& name, const status& why) {
  acct_.stats().increment("enrolments_total", status_code_name(why.code()));
  // The name is the peer's claim (any key can be made to prove possession): counted
  // under one row per reason, the claimed name in the detail, so that a stream of
  // invented names cannot grow the registry (issue 12, case 3).
  acct_.refusal(std::string(kEnrolmentRefusals), {why.code(), "'" + name.substr(0, 64) + "': " + why.detail()});
  if (acct_.log_allowed("enrolment")) {
    const log_scope fields{{"agent", name.substr(0, 64)}, {"code", std::string(status_code_name(why.code()))}, {"reason", why.detail()}};
    spdlog::warn("enrolment of '{}' refused: {}", name, why.to_string());
  }
  out_.refused(route, why);
  pending_.erase(route);
}

candidate enrolment::candidate_of(const session::hello_msg& hello, const crypto::public_key& key,
                                  const std::string& fingerprint, const std::string& address,
                                  const attestation::attested_key* attested, bool with_pem) const {
  candidate c;
  c.name = hello.name;
  c.role = hello.role;
  c.fingerprint = fingerprint;
  // PEM (OpenSSL's encoder: tens of microseconds) only where it is recorded: at PROOF.
  if (with_pem) c.public_key_pem = key.pem();
  c.address = address;
  if (attested != nullptr) {
    c.evidence = "attested: " + attested->summary();
    c.ek_fingerprint = attested->ek_fingerprint;
    return c;
  }
  c.evidence = "declared " + std::string(protection_name(hello.key_protection));
  if (hello.key_protection == protection::tpm)
    c.evidence += ", manufacturer " + hello.tpm_manufacturer + (hello.tpm_simulator ? ", simulator" : "");
  return c;
}

void enrolment::on_hello(const bytes& route, std::span<const bytes> frames, const net::connection_facts& from) {
  const std::string& peer_address = from.address;
  const log_scope peer{{"peer", peer_address}};
  if (frames.size() != 1) return out_.error(route, {status_code::malformed, "HELLO must be 2 frames"});
  auto hello = session::decode_hello(frames[0]);
  if (!hello) return refuse(route, "?", hello.error());
  const std::string name = hello->name;
  // A HELLO without a valid cookie costs a MAC and an answer, nothing kept (§3.1):
  // state, registry reads, evidence checks and TPM work are for peers that answered.
  const std::int64_t now = now_unix_ms();
  const auto cookie = hello->cookie.empty() ? hello_cookies::verdict::invalid : cookies_.spend(hello->cookie, route, *hello);
  if (cookie == hello_cookies::verdict::busy)
    return out_.error(route, {status_code::overloaded, "too many HELLOs: try again in a few seconds"});
  if (cookie != hello_cookies::verdict::fresh) {
    // None, expired, another connection's, or one already spent: a new one, nothing else.
    acct_.stats().increment("hello_cookies_total", hello->cookie.empty()                       ? "issued"
                                                   : cookie == hello_cookies::verdict::spent ? "spent"
                                                                                             : "renewed");
    out_.handshake(route, session::frame::kCookie, session::encode(session::cookie_msg{cookies_.issue(route, *hello)}));
    return;
  }
  // One handshake per connection at a time: a flood of HELLOs on one connection must
  // not queue TPM work (the pending one goes on undisturbed), unless the pending one is
  // old enough that its agent has given up on it (its job is skipped if not yet run).
  if (auto it = pending_.find(route); it != pending_.end()) {
    if (steady::now() - (it->second->deadline - kEnrolmentTimeout) < kReHello)
      return out_.error(route, {status_code::overloaded, "an enrolment is already in progress"});
    acct_.stats().increment("enrolments_total", "replaced");
    pending_.erase(it);
  }
  if (at_agent_limit(name)) return refuse(route, name, {status_code::overloaded, "broker is at its agent limit"});

  // Policy before any expensive work, cheapest first.
  const role_policy* role = pol_.find_role(hello->role);
  if (role == nullptr) return refuse(route, name, {status_code::unknown_role, "role '" + hello->role + "' is not in the policy"});
  if (status st = pol_.check_declared_suite(hello->role, hello->suite); !st) return refuse(route, name, st);
  if (hello->key_protection == protection::software && !role->allow_software)
    return refuse(route, name, {status_code::software_key_refused, "role " + role->name + " requires a TPM key"});
  auto key = crypto::public_key::from_der(hello->identity_der);
  const suite s = *pol_.suite_for(hello->role);
  if (!key) return refuse(route, name, key.error());
  if (key->type() != s.key)
    return refuse(route, name, {status_code::wrong_key, "identity key is " + key->type().describe() + ", role needs " + s.key.describe()});
  // Possession of the key (software verification) before anything is looked up for
  // this peer: whatever follows is done for a key holder only.
  const bytes unsigned_hello = session::encode(*hello, false);
  if (status st = crypto::verify_digest(*key, s.key, s.envelope_hash,
                                        crypto::digest(s.envelope_hash, session::hello_transcript(unsigned_hello)),
                                        hello->possession);
      !st)
    return refuse(route, name, {status_code::bad_signature, "the HELLO's possession signature does not verify"});
  const std::string fingerprint = key->fingerprint_hex();
  // What no PROOF could change is refused before the broker signs anything, and so is
  // a key that nothing could authorise (no pin, not the registry's, no token proven,
  // not an open role). A key that differs from the registry's is recorded for an
  // operator only at PROOF, in an open role.
  const candidate who = candidate_of(*hello, *key, fingerprint, peer_address, nullptr);
  const auto row = reg_.find_agent(name);  // one read for every check of this HELLO
  if (status st = authority_.screen(who, row); !st) return refuse(route, name, st);
  if (status st = name_free_(name); !st) return refuse(route, name, st);
  const bool token_proven = authority_.proven_token(who, hello->token_proof, unsigned_hello, now);
  auto admitted = authority_.admit(who, row, token_proven, !hello->token_proof.empty());
  if (!admitted) return refuse(route, name, admitted.error());
  // Separate pools: a flood of first-use handshakes fills only the open one, and one
  // name or key holds at most kMaxPendingPerAgent places however many connections it
  // opens.
  if (pending_.size() >= kMaxPendingOpen + kMaxPendingCredentialed ||
      (*admitted == admission::open && pending_in(admission::open) >= kMaxPendingOpen))
    return refuse(route, name, {status_code::overloaded, "too many enrolments in progress"});
  if (pending_for(name, fingerprint) >= kMaxPendingPerAgent)
    return refuse(route, name, {status_code::overloaded, "enrolments of " + name + " or its key are already in progress"});
  auto agent_ecdh = session::read_peer_ecdh_keys(hello->ephemeral_der, hello->static_ecdh_der, s.ecdh_curve, "agent");
  if (!agent_ecdh) return refuse(route, name, agent_ecdh.error());

  // TPM evidence (schemas/protocol.md §3.9), before the broker signs anything: the
  // EK certificate chains to a CA of the policy, the AK certified these very keys.
  // A role that requires it refuses a HELLO without it; "simulator" then comes from
  // the CA, not from the agent's word.
  std::optional<attestation::attested_key> attested;
  if (!hello->evidence.empty()) {
    if (hello->key_protection != protection::tpm)
      return refuse(route, name, {status_code::not_attested, "TPM evidence for a key declared software"});
    auto a = attestation::check_evidence(pol_, hello->evidence, *key, agent_ecdh->static_key);
    if (!a) return refuse(route, name, {status_code::not_attested, a.error().detail()});
    attested = std::move(a).value();
  } else if (role->require_attestation) {
    return refuse(route, name, {status_code::not_attested, "role " + role->name +
                                                               " requires attested TPM keys and HELLO carries no evidence"});
  }
  if (status st = authority_.screen_attestation(
          candidate_of(*hello, *key, fingerprint, peer_address, attested ? &*attested : nullptr), row);
      !st)
    return refuse(route, name, st);
  const bool simulator = attested ? attested->simulator : hello->tpm_simulator;
  if (hello->key_protection == protection::tpm && simulator && !role->allow_simulator)
    return refuse(route, name, {status_code::simulator_refused, "role " + role->name + " refuses simulated TPMs" +
                                                                    (attested ? " (EK CA " + attested->ek_ca + ")" : "")});

  auto p = std::make_unique<handshake>();
  p->hello = std::move(hello).value();
  p->hello_bytes = frames[0];
  p->agent_suite = s;
  p->agent_key = std::move(key).value();
  p->agent_fingerprint = fingerprint;
  p->peer_address = peer_address;
  p->transport_key = from.user_id;
  p->transport_fd = from.fd;
  if (attested && !vouch_without_activation_) p->challenge.credential = attested->credential;
  p->attested = std::move(attested);
  p->ephemeral = crypto::ec_keypair::generate(s.ecdh_curve);
  p->agent_ephemeral = agent_ecdh->ephemeral;
  p->agent_static = std::move(agent_ecdh->static_key);
  p->deadline = steady::now() + kEnrolmentTimeout;
  p->generation = ++generations_;
  p->pool = *admitted;
  p->challenge.nonce = crypto::random_bytes(session::kNonceSize);
  p->challenge.ephemeral_der = p->ephemeral->public_part().der();
  auto my_static = static_keys_.find(s.ecdh_curve);
  if (my_static != static_keys_.end()) p->challenge.static_ecdh_der = static_key_der_.at(s.ecdh_curve);
  p->challenge.broker_name = cfg_.name;
  p->challenge.broker_identity_der = identity_der_;
  p->challenge.broker_hash = identity_.key_suite().envelope_hash;

  identity_job job;
  job.route = route;
  job.generation = p->generation;
  job.transcript = session::challenge_transcript(p->hello_bytes, session::encode(p->challenge, false));
  if (my_static != static_keys_.end()) job.agent_ephemeral = std::move(agent_ecdh->ephemeral);
  job.curve = s.ecdh_curve;
  job.cancelled = p->cancelled;
  job.priority = p->pool == admission::credentialed;
  pending_[route] = std::move(p);
  submit_(std::move(job));
}

void enrolment::on_signed(identity_result r) {
  if (r.skipped) return;
  auto it = pending_.find(r.route);
  if (it == pending_.end() || it->second->generation != r.generation) return;  // gone, or an older handshake
  handshake& p = *it->second;
  if (!r.signature) {
    spdlog::error("broker identity could not sign a challenge: {}", r.signature.error().to_string());
    return refuse(r.route, p.hello.name, {status_code::tpm_unavailable, "broker TPM unavailable"});
  }
  if (r.static_share) {
    if (!*r.static_share) {
      // The CHALLENGE names the static key and is signed: it cannot be dropped now.
      acct_.stats().increment("static_ecdh_failures_total", curve_name(p.agent_suite.ecdh_curve));
      spdlog::error("broker TPM ECDH failed: {}", r.static_share->error().to_string());
      return refuse(r.route, p.hello.name, {status_code::tpm_unavailable, "broker TPM ECDH failed"});
    }
    p.static_share = std::move(*r.static_share).value();
  }
  p.challenge.signature = std::move(r.signature).value();
  p.challenge_bytes = session::encode(p.challenge);
  if (out_.handshake(r.route, session::frame::kChallenge, p.challenge_bytes) != net::send_outcome::sent) {
    acct_.stats().increment("enrolments_total", "challenge_unsent");
    pending_.erase(it);
  }
}

void enrolment::on_proof(const bytes& route, std::span<const bytes> frames, const net::connection_facts& from) {
  const log_scope peer{{"peer", from.address}};
  auto it = pending_.find(route);
  if (it == pending_.end() || it->second->challenge_bytes.empty())
    return out_.error(route, {status_code::malformed, "PROOF without a CHALLENGE"});
  handshake& p = *it->second;
  const std::string name = p.hello.name;
  if (from.fd != p.transport_fd || from.user_id != p.transport_key)
    return refuse(route, name, {status_code::malformed, "PROOF came over another connection than its HELLO"});
  if (frames.size() != 1) return refuse(route, name, {status_code::malformed, "PROOF must be 2 frames"});
  auto proof = session::decode_proof(frames[0]);
  if (!proof) return refuse(route, name, proof.error());
  const suite& s = p.agent_suite;
  const bytes transcript = session::proof_transcript(p.hello_bytes, p.challenge_bytes);
  if (status st = crypto::verify_digest(*p.agent_key, s.key, s.envelope_hash, crypto::digest(s.envelope_hash, transcript),
                                        proof->signature);
      !st)
    return refuse(route, name, {status_code::bad_signature, "proof of possession does not verify"});
  // The AK named in the evidence sits in the TPM of the EK: that TPM alone could open
  // the credential CHALLENGE carried.
  if (p.attested && !vouch_without_activation_ &&
      !crypto::constant_time_equal(proof->activation, p.attested->secret.view()))
    return refuse(route, name, {status_code::not_attested,
                                "the credential was not activated: the AK is not in the TPM the EK certificate names"});
  auto shares = session::software_shares(*p.ephemeral, *p.agent_ephemeral, p.agent_static);
  if (!shares) return refuse(route, name, shares.error());
  if (p.static_share) shares->my_static = std::move(p.static_share);
  std::optional<secret_bytes> token;
  if (!proof->sealed_token.empty()) {
    const std::array<byte_view, 2> hello_challenge{p.hello_bytes, p.challenge_bytes};
    auto opened = session::open_enrolment_token(
        *shares, {"hop", name, cfg_.name, p.hello.nonce, p.challenge.nonce, s.mac_hash, s.mac_hash, hello_challenge},
        proof->sealed_token);
    if (!opened) return refuse(route, name, {opened.error().code(), "enrolment token: " + opened.error().detail()});
    token = std::move(opened).value();
  }
  // The policy may have been reloaded since HELLO: what it says of the role still holds.
  if (status st = role_admits(pol_, p.hello.role, p.agent_suite, p.hello.key_protection,
                              p.attested ? p.attested->simulator : p.hello.tpm_simulator, p.attested.has_value());
      !st)
    return refuse(route, name, st);
  // Now that the key is proven: may it have this name and role? (The registry may
  // also have changed since HELLO.)
  candidate who =
      candidate_of(p.hello, *p.agent_key, p.agent_fingerprint, p.peer_address, p.attested ? &*p.attested : nullptr, true);
  // Step 3a checked the activation, unless this broker vouches without it (tests).
  who.ek_activated = p.attested.has_value() && !vouch_without_activation_;
  auto auth = authority_.authorise(who, token, now_unix_ms());
  if (!auth) return refuse(route, name, auth.error());
  if (at_agent_limit(name)) return refuse(route, name, {status_code::overloaded, "broker is at its agent limit"});
  complete(route, p, frames[0], std::move(*shares), *auth);
}

void enrolment::complete(const bytes& route, handshake& p, const bytes& proof_bytes, const session::ecdh_shares& shares,
                         const authorisation& auth) {
  // Copies: `p` is erased before the last line below uses them.
  const std::string name = p.hello.name;
  const suite s = p.agent_suite;
  const std::array<byte_view, 3> transcript{p.hello_bytes, p.challenge_bytes, proof_bytes};
  session::agreed_keys keys = session::agree(
      session::handshake_role::responder, shares,
      {"hop", name, cfg_.name, p.hello.nonce, p.challenge.nonce, s.mac_hash, s.mac_hash, transcript});
  session::welcome_msg w;
  w.session_id = keys.session_id;
  // The smaller of the broker's [sessions] limits and the role's (its profile's).
  w.rekey_after_messages = cfg_.rekey_after_messages;
  w.rekey_after_seconds = cfg_.rekey_after_seconds;
  if (const role_policy* rp = pol_.find_role(p.hello.role)) {
    if (rp->rekey_after_messages > 0) w.rekey_after_messages = std::min(w.rekey_after_messages, rp->rekey_after_messages);
    if (rp->rekey_after.count() > 0)
      w.rekey_after_seconds = std::min<std::uint64_t>(w.rekey_after_seconds, static_cast<std::uint64_t>(rp->rekey_after.count()));
  }
  w.confirm_tag = session::welcome_confirm_tag(keys, w.rekey_after_messages, w.rekey_after_seconds);

  // The registry row first (and the token consumed with it), committed before
  // WELCOME: a pinned key survives kill -9. `before`: the row authorise() decided on
  // (the same event-loop turn: nothing changed it since).
  const std::optional<agent_record>& before = auth.existing;
  agent_record rec;
  rec.name = name;
  rec.role = p.hello.role;
  rec.suite = s.name;
  rec.fingerprint = p.agent_fingerprint;
  rec.public_key_pem = p.agent_key->pem();
  rec.protection = std::string(protection_name(p.hello.key_protection));
  rec.tpm_manufacturer = p.hello.tpm_manufacturer;
  rec.tpm_simulator = p.attested ? p.attested->simulator : p.hello.tpm_simulator;
  if (p.attested) {
    rec.ek_ca = p.attested->ek_ca;
    rec.ek_issuer = p.attested->ek_issuer;
    rec.ek_fingerprint = p.attested->ek_fingerprint;
    rec.ak_name = p.attested->ak_name;
  }
  rec.enrolled_at = rec.last_seen = now_unix_ms();
  if (!reg_.enrol(rec, auth.token_hash, p.transport_key))
    return refuse(route, name, {status_code::not_authorised, "the enrolment token was used by another enrolment meanwhile"});
  if (!before || before->fingerprint != rec.fingerprint)
    spdlog::warn("{} {} ({}) to key {} ({})", before ? "re-keyed" : "enrolled", name, rec.role, rec.fingerprint,
                 auth.reason);

  // Only a WELCOME that left opens the connection: an agent that never got it is not
  // online, and nothing is routed to it.
  if (out_.handshake(route, session::frame::kWelcome, session::encode(w)) != net::send_outcome::sent) {
    acct_.stats().increment("enrolments_total", "welcome_unsent");
    if (acct_.log_allowed("enrolment")) spdlog::warn("enrolment of {} abandoned: its WELCOME could not be sent", name);
    pending_.erase(route);
    return;
  }
  // The key peers may hold for this name: the registry's before this enrolment, or
  // the one its live entry used (an approval, or a WELCOME that never left, may have
  // changed the registry without anyone being told).
  std::string peers_key = before ? before->fingerprint : std::string();
  if (const known_agent* prev = agents_.find(name); prev != nullptr && prev->key) peers_key = prev->key->fingerprint_hex();
  known_agent& a = agents_.remember(name);
  a.role = p.hello.role;
  a.agent_suite = s;
  a.key = p.agent_key;
  a.key_id = p.agent_key->fingerprint();
  a.key_protection = p.hello.key_protection;
  a.tpm_simulator = rec.tpm_simulator;
  a.evidence = p.attested ? p.hello.evidence : bytes{};
  a.tpm_manufacturer = p.hello.tpm_manufacturer;
  // A re-enrolment on the same connection is its hop rekey: the connection (its
  // subscriptions) stays, and the previous agent→broker key stays valid for the
  // grace window (envelopes in flight). The replay window is the agent's: kept.
  connection& c = agents_.open(a, route);
  // The grace window stays shorter than the rekey interval the WELCOME named (a role's
  // profile may ask for a short one): a key must not outlive its successor's grace.
  const std::uint64_t grace = std::min<std::uint64_t>(cfg_.rekey_grace_seconds, w.rekey_after_seconds / 2);
  c.hop.install(std::move(keys.send), std::move(keys.receive), std::chrono::seconds(grace));
  if (p.transport_fd >= 0 && c.transport_fd != p.transport_fd) {
    c.transport_fd = p.transport_fd;
    authenticated_fd_(p.transport_fd);
  }
  pending_.erase(route);
  acct_.stats().increment("enrolments_total", "accepted");
  if (!peers_key.empty() && peers_key != rec.fingerprint) {
    // A new key for a known name (a token, the policy or an operator authorised it):
    // every online agent forgets the old key and its sessions with this agent, before
    // anything the agent sends under the new key reaches it (one ROUTER, in order).
    announce_key_change_(name);
    acct_.stats().increment("key_changes_total");
  }
  acct_.stats().set_gauge("agents_online", "", static_cast<double>(agents_.online_count()));
  const log_scope fields{{"agent", name}, {"role", a.role}};
  spdlog::info("enrolled {} as {} ({}, {}{}{}{})", name, a.role, s.name, protection_name(a.key_protection),
               a.key_protection == protection::tpm ? ", " + a.tpm_manufacturer : "", a.tpm_simulator ? " simulator" : "",
               rec.ek_ca.empty() ? ", declared" : ", attested by " + rec.ek_ca);
}

std::size_t enrolment::pending_for(const std::string& name, const std::string& fingerprint) const {
  std::size_t n = 0;
  for (const auto& [route, p] : pending_) n += p->hello.name == name || p->agent_fingerprint == fingerprint ? 1 : 0;
  return n;
}

std::size_t enrolment::pending_in(admission pool) const {
  std::size_t n = 0;
  for (const auto& [route, p] : pending_) n += p->pool == pool ? 1 : 0;
  return n;
}

bool enrolment::at_agent_limit(const std::string& name) const {
  // Online agents count, not names ever seen: agents that left free their place, and
  // their records are forgotten by the sweep (connections::forget_offline).
  if (agents_.online_count() < cfg_.max_agents) return false;
  const known_agent* a = agents_.find(name);
  return a == nullptr || !a->online();
}

void enrolment::expire(steady::time_point now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second->deadline < now) {
      acct_.stats().increment("enrolments_total", "timeout");
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace agentbus::broker
