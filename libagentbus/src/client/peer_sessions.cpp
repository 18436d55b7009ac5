#include "client/peer_sessions.hpp"

#include <spdlog/spdlog.h>

#include <array>

#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/key_agreement.hpp"

namespace agentbus::client {

namespace {

// refill adds what a token bucket (burst, one per `every`) earned since it was counted.
void refill(double& tokens, std::chrono::steady_clock::time_point& counted, double burst,
            std::chrono::milliseconds every) {
  const auto now = std::chrono::steady_clock::now();
  if (counted != std::chrono::steady_clock::time_point{})
    tokens = std::min(burst, tokens + std::chrono::duration<double>(now - counted) / std::chrono::duration<double>(every));
  counted = now;
}

// take_token refills a token bucket and takes one if it can.
bool take_token(double& tokens, std::chrono::steady_clock::time_point& counted, double burst,
                std::chrono::milliseconds every) {
  refill(tokens, counted, burst, every);
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

}  // namespace

// job_marker lives in a queued offer/accept job: created when the job is queued,
// destroyed when it has run (or was dropped); then the envelopes that waited for it
// are checked again.
class peer_sessions::job_marker {
 public:
  job_marker(peer_sessions& owner, std::string peer) : owner_(owner), peer_(std::move(peer)) {
    std::lock_guard lock(owner_.mu_);
    peer_session& s = owner_.entry_locked(peer_);
    ++s.jobs;
    generation_ = s.generation;
  }
  ~job_marker() {
    {
      // Not a re-created entry's (the peer was forgotten meanwhile): its count is its own.
      std::lock_guard lock(owner_.mu_);
      if (auto it = owner_.sessions_by_peer_.find(peer_);
          it != owner_.sessions_by_peer_.end() && it->second.generation == generation_)
        --it->second.jobs;
    }
    owner_.wake_io_();
  }
  job_marker(const job_marker&) = delete;
  job_marker& operator=(const job_marker&) = delete;

 private:
  peer_sessions& owner_;
  std::string peer_;
  std::uint64_t generation_ = 0;
};

peer_sessions::peer_session& peer_sessions::entry_locked(std::string_view name) {
  auto it = sessions_by_peer_.find(name);
  if (it == sessions_by_peer_.end()) {
    it = sessions_by_peer_.emplace(std::string(name), peer_session{}).first;
    it->second.generation = ++generations_;
  }
  return it->second;
}

peer_sessions::peer_sessions(const agent_options& opts, identity_key& key, const suite& my_suite, peer_directory& peers,
                             sealer& seal, dispatcher& jobs, reporter& rep, std::function<void()> wake_io)
    : opts_(opts), key_(key), suite_(my_suite), peers_(peers), sealer_(seal), jobs_(jobs), reporter_(rep),
      wake_io_(std::move(wake_io)) {}

bool peer_sessions::backing_off_locked(const peer_session& s) const {
  return s.unanswered_at && steady::now() - *s.unanswered_at < kOfferRetryAfter;
}

bool peer_sessions::backing_off(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = sessions_by_peer_.find(name);
  return it != sessions_by_peer_.end() && !it->second.established && backing_off_locked(it->second);
}

std::optional<crypto::public_key> peer_sessions::my_static(ec_curve curve) {
  auto k = key_.static_ecdh_public(curve);
  if (!k) {
    // The identity logged why; the session goes on with ephemeral ECDH only, counted.
    ++static_ecdh_failures_;
    return std::nullopt;
  }
  return std::move(k).value();
}

status peer_sessions::ensure(const std::string& name) {
  auto p = peers_.resolve(name);
  if (!p) return p.error();
  std::unique_lock lock(mu_);
  {
    peer_session& s = entry_locked(name);
    const auto now = steady::now();
    if (s.offer && now - s.offer->sent_at > opts_.session_timeout) s.offer.reset();  // unanswered: replaced
    if (s.established && s.key_id != (**p).key_id) {
      // Agreed with another key of the peer (it rotated): never MAC for that one again.
      s.established = false;
      s.offer.reset();
    }
    if (s.established) {
      const bool rekey = !s.offer && s.state.due_for_rekey(opts_.rekey_after_messages, opts_.rekey_after);
      lock.unlock();
      // The old keys keep working until the peer accepts; a rekey offer that cannot be
      // sent now is tried again at the next send.
      if (rekey)
        if (status st = send_offer(**p, /*rekey=*/true); !st)
          spdlog::warn("[{}] rekey offer to {} not sent: {}", opts_.name, name, st.to_string());
      return {};
    }
    if (backing_off_locked(s))
      return {status_code::no_session, "no session with " + name + ": the last offer went unanswered; offering again " +
                                           std::to_string(kOfferRetryAfter.count()) + " s after it"};
    if (!s.offer) {
      lock.unlock();
      if (status st = send_offer(**p, false); !st) return st;
      lock.lock();
    }
  }
  // The entry is looked up again each time: a revocation may erase it while we wait.
  auto established = [&] {
    auto it = sessions_by_peer_.find(name);
    return it != sessions_by_peer_.end() && it->second.established;
  };
  cv_.wait_for(lock, opts_.session_timeout, [&] { return stopping_ || established(); });
  if (!established()) {
    if (auto it = sessions_by_peer_.find(name); it != sessions_by_peer_.end()) it->second.unanswered_at = steady::now();
    return {status_code::no_session,
            "no session with " + name + " within " + std::to_string(opts_.session_timeout.count()) + " ms"};
  }
  return {};
}

status peer_sessions::send_offer(const peer_info& p, bool rekey) {
  outstanding_offer o;
  o.curve = session::curve_for_pair(suite_.ecdh_curve, p.peer_suite.ecdh_curve);
  o.ephemeral = std::make_shared<const crypto::ec_keypair>(crypto::ec_keypair::generate(o.curve));
  o.nonce = crypto::random_bytes(session::kNonceSize);
  session::offer_msg m;
  m.ephemeral_der = o.ephemeral->public_part().der();
  m.nonce = o.nonce;
  m.curve = std::string(curve_name(o.curve));
  // With a TPM, the session also depends on a secret that never leaves it (the Noise
  // es/se pattern): our static TPM ECDH key on the session's curve.
  if (auto st = my_static(o.curve)) {
    m.static_ecdh_der = st->der();
    o.with_static = true;
  }
  auto challenge = our_challenge(p);
  if (!challenge) return challenge.error();
  if (*challenge) {
    m.credential = std::move((*challenge)->credential);
    o.credential_secret = std::make_shared<const secret_bytes>(std::move((*challenge)->secret));
  }
  o.peer_identity = p.attestation_id;
  {
    std::lock_guard lock(mu_);
    auto& s = entry_locked(p.name);
    if (s.offer) return {};  // one outstanding offer per peer
    if (rekey && s.state.send_key()) m.rekey_of = s.state.send_key()->session_id;
  }
  const bytes body = session::encode(m);
  const envelope_request r{envelope_type::control, recipient_kind::agent, p.name, session::kOfferContentType, body,
                           {}, {}, {}};
  auto frames = sealer_.seal(r, nullptr, &o.message_id);
  if (!frames) return frames.error();
  o.signed_part = (*frames)[1];
  o.sent_at = steady::now();
  const bytes id = o.message_id;
  {
    std::lock_guard lock(mu_);
    auto& s = entry_locked(p.name);
    if (s.offer) return {};
    s.offer = std::move(o);
  }
  status st = sealer_.queue_sealed(std::move(frames).value());
  if (!st) {
    // Never left: not outstanding (the next attempt sends a new one at once).
    std::lock_guard lock(mu_);
    auto it = sessions_by_peer_.find(p.name);
    if (it != sessions_by_peer_.end() && it->second.offer && it->second.offer->message_id == id) it->second.offer.reset();
  }
  return st;
}

void peer_sessions::add_macs(envelope_auth& auth, byte_view digest, const std::vector<std::string>& recipients) {
  std::lock_guard lock(mu_);
  for (const auto& r : recipients) {
    auto it = sessions_by_peer_.find(r);
    if (it == sessions_by_peer_.end() || !it->second.established) continue;
    const session::mac_key* k = it->second.state.send_key();
    auth.e2e_macs.push_back(session_mac{r, k->session_id, session::e2e_tag(*k, digest, auth, r)});
    it->second.state.count_sent();
  }
}

session::verdict peer_sessions::verify(const peer_info& p, byte_view digest, const envelope_auth& auth,
                                       status& why) {
  bool offer_again = false;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_by_peer_.find(p.name);  // heterogeneous lookup: no string built per envelope
    status st;
    if (it == sessions_by_peer_.end())
      st = status(status_code::no_session, "no session with " + p.name);
    else if (it->second.key_id != p.key_id)  // agreed with a key the peer no longer has
      st = status(status_code::no_session, "no session with " + p.name + "'s current key");
    else
      st = session::verify_e2e_mac(it->second.state, digest, auth, opts_.name);
    if (st) {
      peer_session& s = it->second;
      // A peer whose AK is not proven: only keys that depend on our credential count,
      // and the first envelope under them is the proof.
      if (p.endorsement && s.attestation_proven_for != p.attestation_id) {
        if (!proof_pending_for(s, auth) || s.proof_for != p.attestation_id) {
          why = status(status_code::not_attested, p.name + "'s envelope is under session keys that depend on no "
                                                           "credential of ours for its AK: its AK is not proven");
          offer_again = true;
        } else {
          s.attestation_proven_for = s.proof_for;
          s.proof_sessions.clear();
          spdlog::info("[{}] {}'s TPM recovered our credential: its AK sits next to its EK", opts_.name, p.name);
        }
      }
      if (!offer_again) {
        s.state.count_received();
        return session::verdict::accept;
      }
    } else {
      // Its key is probably being installed right now: check it again afterwards.
      if (it != sessions_by_peer_.end() && it->second.jobs > 0) return session::verdict::wait;
      // Keys derived from a secret its TPM did not recover differ from ours (the session
      // id too): a MAC failure of a peer that has not proven its AK is that.
      if (st.code() == status_code::bad_mac && p.endorsement && it != sessions_by_peer_.end() &&
          it->second.attestation_proven_for != p.attestation_id)
        st = status(status_code::not_attested,
                    p.name + "'s envelope does not verify under our session keys, which depend on a credential for "
                             "its AK: its TPM has not shown that the AK sits next to its EK");
      why = std::move(st);
    }
  }
  if (offer_again || why.code() == status_code::no_session) reoffer(p.name);
  return session::verdict::refuse;
}

// reoffer: the sender MACs for a session we do not have (we restarted, or lost it):
// offer a fresh one, at most every kReofferEvery per peer, from the dispatch thread
// (the offer is signed).
void peer_sessions::reoffer(const std::string& peer) {
  {
    std::lock_guard lock(mu_);
    auto& s = entry_locked(peer);
    const auto now = steady::now();
    if (now - s.last_reoffer < kReofferEvery) return;
    s.last_reoffer = now;
  }
  jobs_.push([this, peer] {
    auto p = peers_.find(peer);
    if (!p) return;
    {
      std::lock_guard lock(mu_);
      peer_session& s = entry_locked(peer);
      s.established = false;  // stop MACing with keys the peer lacks
      // An offer the peer left unanswered (it could not open our credential, or its
      // budget refused it) is replaced, or a peer we only receive from stays sessionless.
      if (s.offer && steady::now() - s.offer->sent_at > opts_.session_timeout) s.offer.reset();
    }
    if (status st = send_offer(*p, false); !st)
      spdlog::warn("[{}] session offer to {} not sent: {}", opts_.name, peer, st.to_string());
  });
}

void peer_sessions::answer(std::shared_ptr<const peer_info> p, envelope_header offer, bytes offer_signed) {
  {
    std::lock_guard lock(mu_);
    peer_session& s = entry_locked(p->name);  // peers are known (verified), so bounded
    if (!take_token(s.offer_tokens, s.offers_counted, kOfferBurst, kOfferRefill)) {
      ++offers_refused_;
      reporter_.report({"receiver",
                        {status_code::overloaded, "session offers from " + p->name + " beyond " +
                                                      std::to_string(static_cast<int>(kOfferBurst)) + " at once and one a second: not answered"},
                        p->name, opts_.name, offer.message_id});
      return;
    }
  }
  queue_job(std::move(p), std::move(offer), std::move(offer_signed), &peer_sessions::answer_offer,
            "cannot answer a session offer: ");
}

void peer_sessions::complete(std::shared_ptr<const peer_info> p, envelope_header accept, bytes accept_signed) {
  queue_job(std::move(p), std::move(accept), std::move(accept_signed), &peer_sessions::complete_offer,
            "cannot complete a session: ");
}

void peer_sessions::queue_job(std::shared_ptr<const peer_info> p, envelope_header h, bytes signed_part,
                              void (peer_sessions::*step)(const peer_info&, const envelope_header&, const bytes&),
                              const char* what) {
  auto marker = std::make_shared<job_marker>(*this, p->name);
  jobs_.push([this, p = std::move(p), h = std::move(h), sp = std::move(signed_part), step, what, marker] {
    try {
      (this->*step)(*p, h, sp);
    } catch (const std::exception& e) {  // a TPM past its deadline: the message goes unanswered, said so
      reporter_.report({"sender", {status_code::tpm_unavailable, what + std::string(e.what())}, opts_.name, p->name,
                        h.message_id});
    }
  });
}

bool peer_sessions::still_current(const peer_info& p) const {
  const auto now_known = peers_.find(p.name);
  return now_known && now_known->attestation_id == p.attestation_id;
}

void peer_sessions::install_locked(peer_session& s, session::agreed_keys&& keys, bool tpm_share, const peer_info& p,
                                   bool proof) {
  if (s.established && s.key_id == p.key_id) ++rekeys_;
  else ++sessions_;
  if (tpm_share) ++tpm_ecdh_sessions_;
  if (s.key_id != p.key_id) {
    // Another key of the peer: nothing agreed with the old one verifies anything now.
    s.state = session::session_state{};
    s.established = false;
    s.proof_sessions.clear();
    s.attestation_proven_for.clear();
  }
  s.key_id = p.key_id;
  const bytes new_session = keys.session_id;
  s.state.install(std::move(keys.send), std::move(keys.receive), opts_.rekey_grace);
  if (proof) {
    if (s.proof_for != p.attestation_id) s.proof_sessions.clear();
    s.proof_for = p.attestation_id;
    s.proof_sessions.push_back(new_session);
  }
  // A proof session counts as long as its receive key does (the grace window).
  std::erase_if(s.proof_sessions, [&](const bytes& id) { return s.state.find_receive(id) == nullptr; });
  s.established = true;
  s.unanswered_at.reset();
}

result<std::optional<attestation::credential_challenge>> peer_sessions::our_challenge(const peer_info& p) {
  if (!p.endorsement) return std::optional<attestation::credential_challenge>{};
  {
    std::lock_guard lock(mu_);
    auto it = sessions_by_peer_.find(p.name);
    if (it != sessions_by_peer_.end() && it->second.attestation_proven_for == p.attestation_id)
      return std::optional<attestation::credential_challenge>{};
  }
  auto c = attestation::make_challenge(p.endorsement->ek, p.endorsement->ak_name);  // RSA-OAEP, in software
  if (!c) return status{c.error().code(), "cannot make a credential for " + p.name + "'s AK: " + c.error().detail()};
  return std::optional<attestation::credential_challenge>(std::move(c).value());
}

bool peer_sessions::spend_activation(const std::string& peer) {
  std::lock_guard lock(mu_);
  peer_session& s = entry_locked(peer);
  // Both budgets must have one (a peer's own, so one peer cannot use up everyone's),
  // and only then is one taken from each.
  refill(s.activation_tokens, s.activations_counted, kActivationBurst, kActivationRefill);
  refill(activation_tokens_, activations_counted_, kActivationsBurstAll, kActivationsRefillAll);
  if (s.activation_tokens < 1 || activation_tokens_ < 1) return false;
  s.activation_tokens -= 1;
  activation_tokens_ -= 1;
  return true;
}

bool peer_sessions::activate(std::optional<secret_bytes>& into, byte_view credential, const std::string& peer,
                             const bytes& about, bool budgeted) {
  if (budgeted && !spend_activation(peer)) {
    reporter_.report({"receiver",
                      {status_code::overloaded, "credentials from " + peer + " beyond the activation budget: not opened"},
                      peer, opts_.name, about});
    return false;
  }
  auto secret = key_.activate_credential(credential);  // TPM2_ActivateCredential
  if (!secret) {
    reporter_.report({"sender",
                      {status_code::not_attested, "cannot recover the credential " + peer +
                                                      " made for our AK: " + secret.error().detail()},
                      opts_.name, peer, about});
    return false;
  }
  into = std::move(secret).value();
  return true;
}

bool peer_sessions::proof_pending_for(const peer_session& s, const envelope_auth& auth) const {
  // The first entry for us: the one session::verify_e2e_mac checked.
  for (const auto& m : auth.e2e_macs) {
    if (m.recipient != opts_.name) continue;
    for (const bytes& id : s.proof_sessions)
      if (id == m.session_id) return true;
    return false;
  }
  return false;
}

bool peer_sessions::job_pending(const std::string& peer) {
  std::lock_guard lock(mu_);
  auto it = sessions_by_peer_.find(peer);
  return it != sessions_by_peer_.end() && it->second.jobs > 0;
}

bool peer_sessions::add_my_static_share(session::ecdh_shares& shares, ec_curve curve, const crypto::public_key& peer_eph,
                                        const std::string& peer, const bytes& about) {
  auto z = key_.static_ecdh(curve, peer_eph);  // TPM2_ECDH_ZGen
  if (!z) {
    // Our key is named in what we signed: the session cannot go on without its share.
    ++static_ecdh_failures_;
    reporter_.report({"sender", {z.error().code(), "TPM ECDH for a session with " + peer + " failed: " + z.error().detail()},
                      opts_.name, peer, about});
    return false;
  }
  shares.my_static = std::move(z).value();
  return true;
}

// On the session thread: answer a verified offer.
void peer_sessions::answer_offer(const peer_info& p, const envelope_header& h, const bytes& offer_signed) {
  auto refuse = [&](status why) { reporter_.report({"receiver", std::move(why), p.name, opts_.name, h.message_id}); };
  auto offer = session::decode_offer(h.payload);
  if (!offer) return refuse(offer.error());
  const ec_curve curve = session::curve_for_pair(suite_.ecdh_curve, p.peer_suite.ecdh_curve);
  if (offer->curve != curve_name(curve)) return refuse({status_code::invalid_field, "session offer on the wrong curve"});
  auto peer = session::read_peer_ecdh_keys(offer->ephemeral_der, offer->static_ecdh_der, curve, "session offer's");
  if (!peer) return refuse(peer.error());
  {
    // Crossing offers: the agent whose name sorts first stays initiator.
    std::lock_guard lock(mu_);
    auto& s = entry_locked(p.name);
    if (s.offer && opts_.name < p.name) return;  // ours wins; the peer will accept ours
    s.offer.reset();
  }
  // Z_ee, Z_se (the initiator's static share); Z_es (ours) below.
  const crypto::ec_keypair eph = crypto::ec_keypair::generate(curve);
  auto shares = session::software_shares(eph, peer->ephemeral, peer->static_key);
  if (!shares) return refuse(shares.error());
  // A_R: the peer's credential for our AK (before we sign anything for it).
  if (!offer->credential.empty() &&
      !activate(shares->offer_credential, offer->credential, p.name, h.message_id, /*budgeted=*/true))
    return;
  session::accept_msg a;
  a.ephemeral_der = eph.public_part().der();
  a.nonce = crypto::random_bytes(session::kNonceSize);
  a.offer_id = h.message_id;
  const std::optional<crypto::public_key> mine = my_static(curve);
  if (mine) a.static_ecdh_der = mine->der();
  // A_I: ours for the peer's AK, while its attestation is not proven.
  auto challenge = our_challenge(p);
  if (!challenge) return refuse(challenge.error());
  const bool proof = challenge->has_value();
  if (proof) {
    a.credential = std::move((*challenge)->credential);
    shares->accept_credential = std::move((*challenge)->secret);
  }
  const bytes body = session::encode(a);
  envelope_request r{envelope_type::control, recipient_kind::agent, p.name, session::kAcceptContentType, body,
                     h.message_id, {}, {}};
  auto frames = sealer_.seal(r, nullptr);
  if (!frames) {
    reporter_.report({"sender", frames.error(), opts_.name, p.name, h.message_id});
    return;
  }
  if (mine && !add_my_static_share(*shares, curve, peer->ephemeral, p.name, h.message_id)) return;
  const std::array<byte_view, 2> transcript{offer_signed, (*frames)[1]};
  session::agreed_keys keys =
      session::agree(session::handshake_role::responder, *shares,
                     {"e2e", p.name, opts_.name, offer->nonce, a.nonce, p.peer_suite.mac_hash, suite_.mac_hash, transcript});
  status queued;
  {
    // Queue the acceptance before the new keys can be used: nothing sealed with them
    // may overtake it to the initiator (who cannot verify it before the acceptance).
    std::lock_guard lock(mu_);
    auto& s = entry_locked(p.name);
    // The crossing rule again: we may have offered a session ourselves while this
    // acceptance was signed (the TPM is slow). Installing keys the peer drops (it
    // answers our offer, which wins) would have us MAC with them: bad_mac there.
    if (s.offer && opts_.name < p.name) return;
    // The peer changed key (or AK) while we worked: this offer is the old key's.
    if (!still_current(p)) return;
    s.offer.reset();
    queued = sealer_.queue_sealed(std::move(frames).value());
    if (queued) {
      // Installed only once the acceptance is on its way: keys the peer never gets
      // would have us MAC with them (its refusals: no_session, bad_mac).
      install_locked(s, std::move(keys), peer->static_key || mine, p, proof);
    }
  }
  if (!queued) {
    reporter_.report({"sender", {queued.code(), "session acceptance for " + p.name + " not sent: " + queued.detail()},
                      opts_.name, p.name, h.message_id});
    return;
  }
  cv_.notify_all();
}

// On the session thread: complete our own offer. The key agreement (which may use the
// TPM) runs outside the lock; the keys are installed only if the offer is still the
// outstanding one.
void peer_sessions::complete_offer(const peer_info& p, const envelope_header& h, const bytes& accept_signed) {
  auto refuse = [&](status why) { reporter_.report({"receiver", std::move(why), p.name, opts_.name, h.message_id}); };
  auto a = session::decode_accept(h.payload);
  if (!a) return refuse(a.error());
  outstanding_offer o;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_by_peer_.find(p.name);
    if (it == sessions_by_peer_.end() || !it->second.offer || it->second.offer->message_id != a->offer_id)
      return;  // stale or unsolicited
    o = *it->second.offer;
  }
  // Made for another key (or AK) of the peer than the one whose signature the accept
  // carries: its credential proves nothing about this one.
  if (o.peer_identity != p.attestation_id) return;
  auto peer = session::read_peer_ecdh_keys(a->ephemeral_der, a->static_ecdh_der, o.curve, "session acceptance's");
  if (!peer) return refuse(peer.error());
  // Z_ee, Z_se (ours: TPM2_ECDH_ZGen), Z_es (the responder's static share).
  auto shares = session::software_shares(*o.ephemeral, peer->ephemeral, peer->static_key);
  if (!shares) return refuse(shares.error());
  if (o.with_static && !add_my_static_share(*shares, o.curve, peer->ephemeral, p.name, h.message_id)) return;
  // A_R: the secret of our credential in the offer; A_I: the peer's credential for our AK.
  if (o.credential_secret) shares->offer_credential = o.credential_secret->clone();
  // Not budgeted: an accept answers our own offer (one outstanding per peer).
  if (!a->credential.empty() &&
      !activate(shares->accept_credential, a->credential, p.name, h.message_id, /*budgeted=*/false))
    return;
  const std::array<byte_view, 2> transcript{o.signed_part, accept_signed};
  session::agreed_keys keys =
      session::agree(session::handshake_role::initiator, *shares,
                     {"e2e", opts_.name, p.name, o.nonce, a->nonce, suite_.mac_hash, p.peer_suite.mac_hash, transcript});
  {
    std::lock_guard lock(mu_);
    auto it = sessions_by_peer_.find(p.name);
    if (it == sessions_by_peer_.end() || !it->second.offer || it->second.offer->message_id != a->offer_id)
      return;  // superseded meanwhile
    it->second.offer.reset();
    if (!still_current(p)) return;  // the peer changed key meanwhile
    install_locked(it->second, std::move(keys), peer->static_key || o.with_static, p, o.credential_secret != nullptr);
  }
  cv_.notify_all();
}

void peer_sessions::on_nack(const bytes& id) {
  {
    std::lock_guard lock(mu_);
    for (auto& [peer, s] : sessions_by_peer_)
      if (s.offer && s.offer->message_id == id) s.offer.reset();
  }
  cv_.notify_all();
}

void peer_sessions::forget(const std::string& peer) {
  {
    std::lock_guard lock(mu_);
    sessions_by_peer_.erase(peer);
  }
  cv_.notify_all();
}

void peer_sessions::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

}  // namespace agentbus::client
