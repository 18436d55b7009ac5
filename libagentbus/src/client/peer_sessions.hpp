// peer_sessions.hpp — the agent's end-to-end sessions with its peers (internal;
// schemas/protocol.md §4): offers, acceptances, the crossing rule, rekeys, the
// end-to-end MAC keys, and the back-off after an offer nobody answered.
//
// Threads: callers set sessions up (ensure) and the sealer MACs with them; the io
// thread verifies end-to-end MACs; the session thread (its own dispatcher) answers
// offers and completes acceptances (they sign and may use the TPM), never holding
// this part's lock while it does. Handlers run on another thread, so one that sends
// to a new peer waits for this part's jobs without blocking them.
//
// A peer whose role our policy requires attested (peer_info::endorsement) gets a
// credential of ours for its AK in every offer and accept until an envelope of its
// verifies under keys that depend on the credential's secret: only then has its TPM
// shown that the AK sits next to its EK (protocol.md §4.3), and the broker's
// activation is never taken on its word. Until then an envelope of that peer is
// accepted only under such keys; anything else carrying a MAC for us is not_attested.
// Every session remembers the peer key (and AK) it was agreed with, and a job whose
// peer changed key meanwhile installs nothing: keys agreed with one key never verify
// another's envelopes, and a proof is credited only to the AK it was made for.
//
// While such a job for a peer is queued or running, envelopes from that peer whose
// MAC does not verify yet wait for it (verify says `wait`): the peer may already send
// under the keys the job is about to install.
//
// Thread-safe. Its mutex is the agent's outermost lock: the acceptance is queued
// (outbound queue lock) under it, so nothing MACed with the new keys can overtake it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "attestation/evidence.hpp"
#include "client/dispatcher.hpp"
#include "client/peer_directory.hpp"
#include "client/reporter.hpp"
#include "client/sealer.hpp"
#include "session/key_agreement.hpp"
#include "session/session_keys.hpp"
#include "session/verifier.hpp"

namespace agentbus::client {

class peer_sessions {
 public:
  // After an offer went unanswered, sends to that peer fail at once with no_session
  // for this long instead of each waiting session_timeout for a new offer.
  static constexpr std::chrono::seconds kOfferRetryAfter{5};
  // A receiver without a session offers one at most this often per peer.
  static constexpr std::chrono::seconds kReofferEvery{2};
  // Offers a peer may make us answer: each costs a signature and (with a static key)
  // a TPM ECDH on the session thread, which handlers share. A token bucket per peer:
  // kOfferBurst at once, then one per kOfferRefill. Legitimate peers offer once per
  // session and per rekey (a million messages or an hour by default); an offer past
  // the budget is refused unanswered (overloaded, reported; the peer's send times
  // out with no_session). Issue 12, case 5.
  static constexpr double kOfferBurst = 16;
  static constexpr std::chrono::milliseconds kOfferRefill{1000};
  // Credentials a peer's offers may make our TPM open (TPM2_ActivateCredential: a
  // policy session, an RSA-2048 decryption, our keys evicted): a legitimate peer sends
  // one per session set-up until we have proven our AK to it. Per peer
  // kActivationBurst at once then one per kActivationRefill, and kActivationsBurstAll /
  // one per kActivationsRefillAll for all peers together; beyond, the offer goes
  // unanswered (overloaded, reported). Accepts of our own offers are not counted: one
  // offer per peer is outstanding.
  static constexpr double kActivationBurst = 4;
  static constexpr std::chrono::milliseconds kActivationRefill{5000};
  static constexpr double kActivationsBurstAll = 64;
  static constexpr std::chrono::milliseconds kActivationsRefillAll{62};

  // `jobs` runs the session jobs (the agent's session thread); wake_io wakes the io
  // thread (envelopes waiting for a job are checked again).
  peer_sessions(const agent_options& opts, identity_key& key, const suite& my_suite, peer_directory& peers,
                sealer& seal, dispatcher& jobs, reporter& rep, std::function<void()> wake_io);

  // ensure returns once a session with `name` exists, setting it up (or starting a
  // due rekey, which runs in the background: the old keys work until the accept).
  status ensure(const std::string& name);
  // backing_off: an offer to `name` went unanswered less than kOfferRetryAfter ago.
  bool backing_off(const std::string& name);
  // add_macs adds an end-to-end MAC for each recipient with an established session.
  void add_macs(envelope_auth& auth, byte_view digest, const std::vector<std::string>& recipients);

  // io thread: the end-to-end MAC of an envelope from `sender`, the peer whose key
  // verified its signature (`wait`: a job for that sender is pending; `refuse` with
  // no_session also offers a fresh session).
  session::verdict verify(const peer_info& sender, byte_view digest, const envelope_auth& auth, status& why);
  // answer / complete queue the dispatch-thread job for a verified offer / accept.
  void answer(std::shared_ptr<const peer_info> p, envelope_header offer, bytes offer_signed);
  void complete(std::shared_ptr<const peer_info> p, envelope_header accept, bytes accept_signed);
  bool job_pending(const std::string& peer);
  // on_nack: the broker refused (or could not deliver) message `id`: if it was an
  // offer, it is forgotten, so the next attempt sends a new one.
  void on_nack(const bytes& id);
  // forget: the peer was revoked.
  void forget(const std::string& peer);
  void stop();

  // with_session runs f on the session state with `peer` (nullptr when there is none)
  // under the lock. For tests that prove the keys in use reach no log line.
  template <typename F>
  decltype(auto) with_session(std::string_view peer, F&& f) {
    std::lock_guard lock(mu_);
    auto it = sessions_by_peer_.find(peer);
    return f(it == sessions_by_peer_.end() ? nullptr : &std::as_const(it->second.state));
  }

  std::uint64_t sessions() const noexcept { return sessions_.load(); }
  std::uint64_t rekeys() const noexcept { return rekeys_.load(); }
  std::uint64_t tpm_ecdh_sessions() const noexcept { return tpm_ecdh_sessions_.load(); }
  std::uint64_t static_ecdh_failures() const noexcept { return static_ecdh_failures_.load(); }
  std::uint64_t offers_refused() const noexcept { return offers_refused_.load(); }

 private:
  using steady = std::chrono::steady_clock;
  struct outstanding_offer {
    std::shared_ptr<const crypto::ec_keypair> ephemeral;
    bytes nonce;
    bytes signed_part;  // the offer envelope's signed part: transcript input
    bytes message_id;
    ec_curve curve = ec_curve::p256;
    bool with_static = false;  // our static (TPM) key was in it
    std::shared_ptr<const secret_bytes> credential_secret;  // of the credential it carried
    bytes peer_identity;  // the attestation_id of the peer it was made for
    steady::time_point sent_at{};
  };
  struct peer_session {
    std::uint64_t generation = 0;  // a forgotten and re-created entry has another
    bytes key_id;                  // the peer key the installed keys were agreed with
    session::session_state state;
    std::optional<outstanding_offer> offer;
    bool established = false;
    std::optional<steady::time_point> unanswered_at;  // an offer went unanswered then
    steady::time_point last_reoffer{};
    int jobs = 0;  // offer/accept jobs queued or running for this peer
    double offer_tokens = kOfferBurst;  // offers of this peer we may still answer now
    steady::time_point offers_counted{};  // when offer_tokens was last refilled
    double activation_tokens = kActivationBurst;  // its credentials our TPM may still open now
    steady::time_point activations_counted{};
    // The peer's AK (endorsed peers only): the attestation_id whose TPM
    // recovered a credential of ours, and the sessions (current, previous) whose keys
    // depend on one, not yet used by the peer, with the identity they were made for.
    bytes attestation_proven_for;
    std::vector<bytes> proof_sessions;
    bytes proof_for;
  };
  class job_marker;

  status send_offer(const peer_info& p, bool rekey);
  void answer_offer(const peer_info& p, const envelope_header& h, const bytes& offer_signed);
  void complete_offer(const peer_info& p, const envelope_header& h, const bytes& accept_signed);
  void reoffer(const std::string& peer);
  // queue_job runs `step` (answer_offer / complete_offer) for a verified message on
  // the session thread; a TPM past its deadline there is reported as `what` failing.
  void queue_job(std::shared_ptr<const peer_info> p, envelope_header h, bytes signed_part,
                 void (peer_sessions::*step)(const peer_info&, const envelope_header&, const bytes&), const char* what);
  // entry_locked: the session state with `name`, created (with a new generation)
  // when there is none.
  peer_session& entry_locked(std::string_view name);
  // still_current (mu_ held): p is still the directory's entry for its name, same key
  // and AK. A job that began with p installs nothing otherwise: its keys belong to a
  // key the peer no longer has. (The directory's lock is a leaf: taking it under mu_
  // keeps the lock order.)
  bool still_current(const peer_info& p) const;
  // install_locked puts agreed keys into use for p (mu_ held; the caller checked
  // still_current). `proof`: the keys depend on a credential of ours for p's AK (the
  // session proves p's attestation once p uses it).
  void install_locked(peer_session& s, session::agreed_keys&& keys, bool tpm_share, const peer_info& p, bool proof);
  // our_challenge: a credential of ours for p's AK while our policy requires p's role
  // attested and p's TPM has not yet recovered one (else nullopt).
  result<std::optional<attestation::credential_challenge>> our_challenge(const peer_info& p);
  // activate: our TPM recovers the secret of a credential `peer` made for our AK;
  // false (reported) when it cannot (not_attested) or, `budgeted`, the activation
  // budgets are spent (overloaded).
  bool activate(std::optional<secret_bytes>& into, byte_view credential, const std::string& peer, const bytes& about,
                bool budgeted);
  // spend_activation: take one credential activation for `peer` from the budgets.
  bool spend_activation(const std::string& peer);
  // proof_pending_for (mu_ held): the envelope's MAC for us names a session awaiting
  // proof.
  bool proof_pending_for(const peer_session& s, const envelope_auth& auth) const;
  // add_my_static_share puts our static key's share into `shares`; false (counted and
  // reported, about message `about`) when the TPM cannot compute it.
  bool add_my_static_share(session::ecdh_shares& shares, ec_curve curve, const crypto::public_key& peer_eph,
                           const std::string& peer, const bytes& about);
  // my_static: our static (TPM) ECDH key on `curve`, counting a failure to have one.
  std::optional<crypto::public_key> my_static(ec_curve curve);
  bool backing_off_locked(const peer_session& s) const;

  const agent_options& opts_;
  identity_key& key_;
  const suite suite_;
  peer_directory& peers_;
  sealer& sealer_;
  dispatcher& jobs_;
  reporter& reporter_;
  std::function<void()> wake_io_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, peer_session, std::less<>> sessions_by_peer_;
  std::uint64_t generations_ = 0;
  double activation_tokens_ = kActivationsBurstAll;  // all peers' credentials our TPM may still open
  steady::time_point activations_counted_{};
  std::atomic<std::uint64_t> sessions_{0}, rekeys_{0}, tpm_ecdh_sessions_{0}, static_ecdh_failures_{0}, offers_refused_{0};
};

}  // namespace agentbus::client
