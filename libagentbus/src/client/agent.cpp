// agent.cpp — the client: enrolment, sealing (the send half of the hot path),
// receive-side enforcement (the receive half), peer sessions, request/reply.
//
// Threads:
//   caller threads  seal their own envelopes (the identity signs, possibly in the
//                   TPM) and queue the frames;
//   io thread       owns the DEALER socket: sends queued frames, receives, and runs
//                   every receive-side check (software crypto only: never the TPM);
//   dispatch thread runs handlers and answers session offers and requests (which
//                   sign, so they may wait for the TPM).
#include "agentbus/agent.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "agentbus/crypto.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "client/batch_signer.hpp"
#include "net/connection_monitor.hpp"
#include "net/zmq_util.hpp"
#include "crypto/random_id_pool.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/replay_window.hpp"
#include "session/session_keys.hpp"

namespace agentbus {
namespace {

using session::ctrl_msg;
using steady = std::chrono::steady_clock;

struct peer_info {
  std::string name, role;
  suite peer_suite;
  std::optional<crypto::public_key> key;
  bytes key_id;
  protection key_protection = protection::tpm;
};

struct outstanding_offer {
  std::optional<crypto::ec_keypair> ephemeral;
  bytes nonce;
  bytes signed_part;  // the offer envelope's signed part: transcript input
  bytes message_id;
  ec_curve curve = ec_curve::p256;
  std::chrono::steady_clock::time_point sent_at{};
};

struct peer_session {
  session::session_state state;
  std::optional<outstanding_offer> offer;
  bool established = false;
  // unanswered_at: when an offer to this peer last went unanswered (the peer refused
  // it, or never saw it). For kOfferRetryAfter after that, sends to the peer fail at
  // once with no_session instead of each waiting session_timeout for a new offer: a
  // subscriber that refuses us must not hold every publish up for seconds.
  std::optional<steady::time_point> unanswered_at;
};
constexpr std::chrono::seconds kOfferRetryAfter{5};
// kMaxReceivedFrameBytes: ZeroMQ drops a larger frame from the broker (and the
// connection): the DEALER's ZMQ_MAXMSGSIZE.
constexpr std::size_t kMaxReceivedFrameBytes = 2u << 20;

std::uint64_t micros_now() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}


}  // namespace

struct agent::impl {
  agent_options opts;
  std::shared_ptr<identity_key> key;
  std::shared_ptr<const policy> pol;
  suite my_suite;
  std::string role;
  bytes my_key_id;

  zmq::context_t ctx{1};
  zmq::socket_t dealer{ctx, zmq::socket_type::dealer};
  // Declared after the socket and context it borrows: destroyed (closed) before them.
  std::optional<net::connection_monitor> monitor;  // io thread only, once running
  int wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::thread io_thread, dispatch_thread;

  // Hop session with the broker. Written at enrolment, read by sealers and the io thread.
  std::mutex hop_mu;
  session::session_state hop;
  std::atomic<std::uint64_t> ctrl_seq_out{1};   // never reset: monotonic across sessions
  session::control_sequence ctrl_seq_in;         // io thread only

  std::atomic<std::uint64_t> next_sequence{micros_now()};
  crypto::random_id_pool message_ids;  // message ids: public, random, one RAND_bytes call per 256
  static_assert(crypto::random_id_pool::kIdSize == kMessageIdSize);

  std::mutex out_mu;
  std::deque<net::frames> outbound;
  net::frames last_envelope;  // for raw_access::resend_last: the last envelope (or wire batch) the io thread sent
  // raw_access::edit_received: tests alter what arrives from the broker before any
  // check. The flag keeps the lock off the receive path when no edit is set.
  std::atomic<bool> has_received_edit{false};
  std::mutex received_edit_mu;
  std::function<void(net::frames&)> received_edit;
  bool send_blocked = false;  // io thread only: the socket refused a send (HWM); poll for POLLOUT

  // Peer directory (pinned on first use within the process, or by the policy).
  std::mutex peers_mu;
  std::condition_variable peers_cv;
  // Entries are immutable and shared: the receive path and every send take a
  // pointer, not a copy of the strings and key (several allocations per envelope).
  std::map<std::string, std::shared_ptr<const peer_info>, std::less<>> peers;
  std::map<std::string, status, std::less<>> peer_failures;
  std::map<std::string, steady::time_point, std::less<>> peer_failure_at;
  std::deque<net::frames> parked;  // io thread only: envelopes waiting for their sender's key
  std::deque<net::frames> deferred;  // io thread only: frames that arrived during a hop rekey
  std::uint64_t hop_rekey_messages = 0;  // from WELCOME
  std::chrono::seconds hop_rekey_age{0};

  std::mutex sess_mu;
  std::condition_variable sess_cv;
  std::map<std::string, peer_session, std::less<>> sessions;

  std::map<std::string, session::replay_window, std::less<>> windows;  // io thread only
  session::root_cache roots{4096};                                      // io thread only: verified batch roots

  std::mutex topics_mu;
  std::condition_variable topics_cv;
  std::map<std::string, std::vector<std::string>, std::less<>> members;
  std::map<std::string, message_handler, std::less<>> topic_handlers;
  std::map<std::string, status, std::less<>> subscribe_answers;

  std::mutex handlers_mu;
  message_handler on_msg;
  request_handler on_req;
  rejection_handler on_rej;

  std::unique_ptr<client::batch_signer> batcher;  // tpm-batch mode, TPM identities only
  // staged_envelope: one envelope of the batch being completed, MACs but the hop's
  // done (signer thread only; queued together when the batch ends).
  struct staged_envelope {
    bytes signed_part, digest;
    envelope_auth auth;
    std::optional<seal_tweaks> tweaks;
    bytes encoded_auth = {};  // the auth part without a hop MAC, as a wire batch carries it
  };
  std::vector<staged_envelope> staged;
  std::vector<std::function<void()>> deliveries;  // io thread only: handed to the dispatch thread per burst

  std::mutex req_mu;
  std::map<bytes, std::shared_ptr<std::promise<result<message>>>> requests;

  std::mutex disp_mu;
  std::condition_variable disp_cv;
  std::deque<std::function<void()>> dispatch_q;

  std::atomic<std::uint64_t> st_reenrolments{0}, st_hop_rekeys{0}, st_dispatch_dropped{0}, st_tpm_ecdh_sessions{0};
  std::map<std::string, steady::time_point, std::less<>> last_reoffer;  // io thread only
  std::set<std::string, std::less<>> asked;                            // io thread only: peers asked about
  steady::time_point next_hop_rekey_attempt{};                         // io thread only
  steady::time_point last_enrol = steady::now();  // io thread only
  std::atomic<std::uint64_t> st_sent{0}, st_received{0}, st_rejected{0}, st_refused{0}, st_sessions{0}, st_rekeys{0};

  std::optional<crypto::public_key> static_or_none(ec_curve curve) {
    auto k = key->static_ecdh_public(curve);
    if (!k) return std::nullopt;
    return *k;
  }

  // ---------------------------------------------------------------- queues
  // The io thread takes the whole queue at each wake-up, so only the push onto an
  // empty queue needs to wake it (one eventfd write per burst, not per envelope).
  status enqueue(net::frames f) {
    std::vector<net::frames> one;
    one.push_back(std::move(f));
    if (enqueue_all(one) > 0) return {status_code::overloaded, "outbound queue full"};
    return {};
  }

  // enqueue_all queues several messages under one lock; returns how many did not fit.
  std::size_t enqueue_all(std::vector<net::frames>& messages) {
    std::size_t queued = 0;
    bool was_empty;
    {
      std::lock_guard lock(out_mu);
      was_empty = outbound.empty();
      for (auto& m : messages) {
        if (outbound.size() >= opts.max_pending) break;
        outbound.push_back(std::move(m));
        ++queued;
      }
    }
    if (was_empty && queued > 0) wake_io();
    return messages.size() - queued;
  }

  void wake_io() {
    std::uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof one);
  }

  // Offers being answered and accepts being completed (key derivation, possibly TPM
  // signing and ECDH) on the dispatch thread, per peer (sess_mu). The peer may already
  // send under the new keys (a responder installs right after queueing its accept; an
  // initiator as soon as the accept arrives), and its envelopes can reach the io thread
  // before our keys are installed: they wait for the job (awaiting_session) instead of
  // being refused as no_session or bad_mac.
  std::map<std::string, int, std::less<>> completing;
  // completion_pending lives in the dispatched completion job: created when the job is
  // queued, destroyed when it has run or was dropped (queue full) — then the waiting
  // envelopes are checked again.
  struct completion_pending {
    impl* d;
    std::string peer;
    completion_pending(impl* owner, std::string name) : d(owner), peer(std::move(name)) {
      std::lock_guard lock(d->sess_mu);
      ++d->completing[peer];
    }
    ~completion_pending() {
      {
        std::lock_guard lock(d->sess_mu);
        if (auto it = d->completing.find(peer); it != d->completing.end() && --it->second <= 0) d->completing.erase(it);
      }
      if (!d->stopping) d->wake_io();
    }
    completion_pending(const completion_pending&) = delete;
    completion_pending& operator=(const completion_pending&) = delete;
  };

  // dispatch queues work for the dispatch thread. Bounded: a flood that handlers
  // cannot keep up with is counted and logged, not allowed to exhaust memory.
  bool dispatch(std::function<void()> fn) {
    std::vector<std::function<void()>> one;
    one.push_back(std::move(fn));
    return dispatch_all(one) == 0;
  }

  // dispatch_all queues jobs under one lock with one wake-up; returns how many the
  // full queue refused (counted, and logged at most once per 1000).
  std::size_t dispatch_all(std::vector<std::function<void()>>& jobs) {
    std::size_t dropped = 0;
    {
      std::lock_guard lock(disp_mu);
      for (auto& job : jobs) {
        if (dispatch_q.size() >= opts.max_pending) ++dropped;
        else dispatch_q.push_back(std::move(job));
      }
    }
    disp_cv.notify_one();
    if (dropped > 0) {
      const std::uint64_t before = st_dispatch_dropped.fetch_add(dropped);
      if (before / 1000 != (before + dropped) / 1000 || before == 0)
        spdlog::error("[{}] dispatch queue full: deliveries dropped ({} so far)", opts.name, before + dropped);
    }
    return dropped;
  }

  void report(rejection r) {
    if (r.where == "receiver") ++st_rejected;
    else ++st_refused;
    spdlog::warn("[{}] {} refused an envelope from {} to {}: {}", opts.name, r.where, r.sender, r.recipient,
                 r.reason.to_string());
    dispatch([this, r = std::move(r)] {
      rejection_handler h;
      {
        std::lock_guard lock(handlers_mu);
        h = on_rej;
      }
      if (h) h(r);
    });
  }

  // ---------------------------------------------------------------- control channel
  status send_ctrl(std::string op, std::vector<std::string> strings, bytes blob = {}, std::uint64_t number = 0) {
    ctrl_msg m;
    m.op = std::move(op);
    m.strings = std::move(strings);
    m.blob = std::move(blob);
    m.number = number;
    {
      // The sequence number is taken in queue order (under out_mu): two threads can
      // never put a lower number behind a higher one, which the broker would drop.
      std::lock_guard out_lock(out_mu);
      if (outbound.size() >= opts.max_pending) return {status_code::overloaded, "outbound queue full"};
      m.seq = ctrl_seq_out++;
      bytes body = session::encode(m);
      bytes tag, sid;
      {
        std::lock_guard lock(hop_mu);
        tag = session::ctrl_tag(*hop.send_key(), body);
        sid = hop.send_key()->session_id;
      }
      outbound.push_back({net::to_bytes(session::frame::kControl), std::move(sid), std::move(body), std::move(tag)});
    }
    wake_io();
    return {};
  }

  // ---------------------------------------------------------------- enrolment
  void enrol() {
    const ec_curve curve = my_suite.ecdh_curve;
    auto ephemeral = crypto::ec_keypair::generate(curve);
    session::hello_msg hello;
    hello.name = opts.name;
    hello.role = role;
    hello.suite = my_suite.name;
    hello.key_protection = key->key_protection();
    hello.identity_der = key->public_key().der();
    hello.tpm_manufacturer = key->metadata().tpm_manufacturer;
    hello.tpm_simulator = key->metadata().tpm_simulator;
    hello.ephemeral_der = ephemeral.public_part().der();
    std::optional<crypto::public_key> static_pub = static_or_none(curve);
    if (static_pub) hello.static_ecdh_der = static_pub->der();
    hello.nonce = crypto::random_bytes(session::kNonceSize);
    bytes hello_bytes = session::encode(hello);
    net::send_multipart(dealer, {net::to_bytes(session::frame::kHello), hello_bytes}, false);

    auto reply = wait_handshake_reply();
    if (net::as_string(reply[0]) != session::frame::kChallenge || reply.size() != 2)
      throw enrolment_error(status_code::malformed, "broker answered HELLO with an unexpected message");
    auto challenge = session::decode_challenge(reply[1]);
    if (!challenge) throw enrolment_error(challenge.error().code(), "bad CHALLENGE: " + challenge.error().to_string());

    // The broker proves its identity first (SIGMA: each side signs the transcript).
    auto broker_key = crypto::public_key::from_der(challenge->broker_identity_der);
    if (!broker_key) throw enrolment_error(broker_key.error().code(), "broker key unreadable");
    std::string pinned = opts.broker_fingerprint;  // hex, either case (agentbus-key prints lower case)
    std::transform(pinned.begin(), pinned.end(), pinned.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!pinned.empty() && broker_key->fingerprint_hex() != pinned)
      throw enrolment_error(status_code::key_changed, "broker key " + broker_key->fingerprint_hex() +
                                                          " does not match the pinned fingerprint");
    bytes challenge_unsigned = session::encode(*challenge, false);
    bytes ct = session::challenge_transcript(hello_bytes, challenge_unsigned);
    if (status st = crypto::verify_digest(*broker_key, broker_key->type(), challenge->broker_hash,
                                          crypto::digest(challenge->broker_hash, ct), challenge->signature);
        !st)
      throw enrolment_error(status_code::bad_signature, "broker signature over the challenge does not verify");

    session::proof_msg proof;
    auto sig = key->sign_message(session::proof_transcript(hello_bytes, reply[1]));
    if (!sig) throw enrolment_error(sig.error().code(), "cannot sign the enrolment proof: " + sig.error().to_string());
    proof.signature = std::move(sig).value();
    bytes proof_bytes = session::encode(proof);
    net::send_multipart(dealer, {net::to_bytes(session::frame::kProof), proof_bytes}, false);

    auto welcome_frames = wait_handshake_reply();
    if (net::as_string(welcome_frames[0]) != session::frame::kWelcome || welcome_frames.size() != 2)
      throw enrolment_error(status_code::malformed, "broker answered PROOF with an unexpected message");
    auto welcome = session::decode_welcome(welcome_frames[1]);
    if (!welcome) throw enrolment_error(welcome.error().code(), "bad WELCOME: " + welcome.error().to_string());

    // Key schedule: Z_ee, then (TPM) Z_se from our static key, then Z_es from the broker's.
    auto broker_eph = crypto::public_key::from_der(challenge->ephemeral_der);
    if (!broker_eph) throw enrolment_error(broker_eph.error().code(), "broker ephemeral key unreadable");
    std::vector<secret_bytes> secrets;
    auto z_ee = ephemeral.derive(*broker_eph);
    if (!z_ee) throw enrolment_error(z_ee.error().code(), "ECDH failed: " + z_ee.error().to_string());
    secrets.push_back(std::move(z_ee).value());
    if (static_pub) {
      auto z_se = key->static_ecdh(curve, *broker_eph);
      if (!z_se) throw enrolment_error(z_se.error().code(), "TPM ECDH failed: " + z_se.error().to_string());
      secrets.push_back(std::move(z_se).value());
    }
    if (!challenge->static_ecdh_der.empty()) {
      auto broker_static = crypto::public_key::from_der(challenge->static_ecdh_der);
      if (!broker_static) throw enrolment_error(broker_static.error().code(), "broker static key unreadable");
      auto z_es = ephemeral.derive(*broker_static);
      if (!z_es) throw enrolment_error(z_es.error().code(), "ECDH failed");
      secrets.push_back(std::move(z_es).value());
    }
    bytes transcript = hello_bytes;
    transcript.insert(transcript.end(), reply[1].begin(), reply[1].end());
    transcript.insert(transcript.end(), proof_bytes.begin(), proof_bytes.end());
    bytes th = crypto::digest(my_suite.mac_hash, transcript);
    auto keys = session::derive_keys(secrets, hello.nonce, challenge->nonce, "hop", opts.name, challenge->broker_name, th,
                                     my_suite.mac_hash, my_suite.mac_hash);
    if (!crypto::constant_time_equal(keys.session_id, welcome->session_id) ||
        !crypto::verify_hmac(my_suite.mac_hash, keys.responder_to_initiator.view(), session::welcome_confirm_input(th),
                             welcome->confirm_tag)
             .ok())
      throw enrolment_error(status_code::bad_mac, "WELCOME key confirmation failed");
    std::lock_guard lock(hop_mu);
    // A rekey keeps the previous broker→agent key for the grace window: envelopes the
    // broker MACed before it saw our new handshake still verify.
    hop.install(session::mac_key{keys.session_id, std::move(keys.initiator_to_responder), my_suite.mac_hash},
                session::mac_key{keys.session_id, std::move(keys.responder_to_initiator), my_suite.mac_hash},
                opts.rekey_grace);
    hop_rekey_messages = welcome->rekey_after_messages;
    hop_rekey_age = std::chrono::seconds(welcome->rekey_after_seconds);
  }

  net::frames wait_handshake_reply() {
    zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    auto deadline = steady::now() + opts.connect_timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
      if (left.count() <= 0) throw enrolment_error(status_code::timeout, "broker at " + opts.broker_endpoint + " did not answer");
      try {
        zmq::poll(&item, 1, left);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (!(item.revents & ZMQ_POLLIN)) continue;
      auto f = net::recv_multipart(dealer);
      if (!f || f->empty()) continue;
      std::string_view kind = net::as_string((*f)[0]);
      if (kind == session::frame::kRefused && f->size() == 2) {
        auto r = session::decode_refused((*f)[1]);
        if (!r) throw enrolment_error(status_code::refused, "enrolment refused (unreadable reason)");
        throw enrolment_error(r->code, "enrolment refused: " + std::string(status_code_name(r->code)) + ": " + r->reason);
      }
      if (kind == session::frame::kError) continue;  // for an earlier connection
      // Envelopes and control messages that arrive during a rekeying handshake are
      // kept and handled after it (the old keys stay valid for the grace window).
      if (kind == session::frame::kEnvelope || kind == session::frame::kControl) {
        if (deferred.size() < opts.max_pending) deferred.push_back(std::move(*f));
        continue;
      }
      return std::move(*f);
    }
  }

  // ---------------------------------------------------------------- sealing (send half of the hot path)
  // prepared is an envelope whose signed part is final and hashed, awaiting its signature.
  struct prepared {
    bytes signed_part;
    bytes digest;  // what the signature (or the batch leaf) covers
  };

  // 1. Header and its canonical bytes: these exact bytes are hashed, sent and verified.
  prepared prepare(envelope_type type, recipient_kind kind, const std::string& to, std::string_view content_type,
                   byte_view payload, const bytes& correlation_id, const seal_tweaks* tweaks, bytes* message_id_out) {
    envelope_header h;
    h.type = type;
    h.message_id = message_ids.next();
    h.correlation_id = correlation_id;
    h.sender = opts.name;
    h.to_kind = kind;
    h.to = to;
    h.sequence = next_sequence++;
    h.timestamp_ms = session::now_ms();
    h.suite = my_suite.name;
    h.content_type = std::string(content_type);
    h.payload.assign(payload.begin(), payload.end());
    if (tweaks && tweaks->edit_header) tweaks->edit_header(h);
    if (message_id_out) *message_id_out = h.message_id;
    prepared p;
    p.signed_part = encode_signed_part(h);
    // 2. Digest in software (TPMs lack SHA-3); the TPM signs it, or the batch root.
    p.digest = envelope_digest(my_suite.envelope_hash, p.signed_part);
    return p;
  }

  // 3.-4. authenticate: the auth part (signature, batch proof) and the end-to-end
  // MACs. Applies the tamper tweaks (tests only) exactly where a forger would.
  envelope_auth authenticate(prepared& p, bytes signature, assurance level, std::optional<batch_proof> proof,
                             const std::vector<std::string>& e2e_to, const seal_tweaks* tweaks) {
    if (tweaks && tweaks->edit_after_signing) {
      tweaks->edit_after_signing(p.signed_part);
      p.digest = envelope_digest(my_suite.envelope_hash, p.signed_part);
    }
    envelope_auth auth;
    auth.level = level;
    auth.key_id = my_key_id;
    auth.signature = std::move(signature);
    auth.batch = std::move(proof);
    if (tweaks && tweaks->edit_auth) tweaks->edit_auth(auth);
    if (!(tweaks && tweaks->omit_e2e_macs)) {
      std::lock_guard lock(sess_mu);
      for (const auto& r : e2e_to) {
        auto it = sessions.find(r);
        if (it == sessions.end() || !it->second.established) continue;
        const session::mac_key* k = it->second.state.send_key();
        auth.e2e_macs.push_back(session_mac{r, k->session_id, session::e2e_tag(*k, p.digest, auth, r)});
        it->second.state.count_sent();
      }
    }
    return auth;
  }

  // 5. hop MAC and frames of an envelope that travels on its own.
  net::frames seal_hop(bytes signed_part, byte_view digest, envelope_auth auth, const seal_tweaks* tweaks) {
    if (!(tweaks && tweaks->omit_hop_mac)) {
      std::lock_guard lock(hop_mu);
      const session::mac_key* k = hop.send_key();
      auth.hop_mac = session_mac{"", k->session_id, session::hop_tag(*k, digest, auth)};
      hop.count_sent();
    }
    return net::frames{net::to_bytes(session::frame::kEnvelope), std::move(signed_part), encode_auth_part(auth)};
  }

  net::frames finish(prepared p, bytes signature, assurance level, std::optional<batch_proof> proof,
                     const std::vector<std::string>& e2e_to, const seal_tweaks* tweaks) {
    envelope_auth auth = authenticate(p, std::move(signature), level, std::move(proof), e2e_to, tweaks);
    return seal_hop(std::move(p.signed_part), p.digest, std::move(auth), tweaks);
  }

  // seal_wire_batch: envelopes [first, last) of `staged` as one multipart message
  // under one hop MAC (schemas/envelope.md §7.3).
  net::frames seal_wire_batch(std::size_t first, std::size_t last) {
    std::vector<wire_batch_item> items;
    items.reserve(last - first);
    for (std::size_t i = first; i < last; ++i) items.push_back({staged[i].digest, &staged[i].auth});
    net::frames out;
    out.reserve(3 + 2 * (last - first));
    out.push_back(net::to_bytes(session::frame::kWireBatch));
    {
      std::lock_guard lock(hop_mu);
      const session::mac_key* k = hop.send_key();
      out.push_back(k->session_id);
      out.push_back(session::wire_batch_tag(*k, items));
      for (std::size_t i = first; i < last; ++i) hop.count_sent();
    }
    for (std::size_t i = first; i < last; ++i) {
      out.push_back(std::move(staged[i].signed_part));
      out.push_back(std::move(staged[i].encoded_auth));
    }
    for (std::size_t i = first; i < last; ++i)
      if (staged[i].tweaks && staged[i].tweaks->edit_wire_batch) staged[i].tweaks->edit_wire_batch(out);
    return out;
  }

  // flush_staged runs on the signer thread when a batch's envelopes are complete:
  // they are queued with one lock and one wake-up, as wire batches (split at the
  // count and size limits) or one by one. An envelope whose tweaks drop its hop MAC
  // travels alone (tests only).
  void flush_staged() {
    if (staged.empty()) return;
    std::vector<net::frames> out;
    auto seal_alone = [&](staged_envelope& e) {
      out.push_back(seal_hop(std::move(e.signed_part), e.digest, std::move(e.auth), e.tweaks ? &*e.tweaks : nullptr));
    };
    std::size_t group_start = 0, group_bytes = 0;
    auto close_group = [&](std::size_t end) {
      const std::size_t n = end - group_start;
      const bool forced = n == 1 && staged[group_start].tweaks && staged[group_start].tweaks->edit_wire_batch;
      if (n > 1 || forced) out.push_back(seal_wire_batch(group_start, end));
      else if (n == 1) seal_alone(staged[group_start]);
      group_start = end;
      group_bytes = 0;
    };
    for (std::size_t i = 0; i < staged.size(); ++i) {
      auto& e = staged[i];
      const bool alone = !opts.wire_batching || (e.tweaks && e.tweaks->omit_hop_mac);
      if (!alone) e.encoded_auth = encode_auth_part(e.auth);  // its exact size counts against the limit
      const std::size_t bytes_here = e.signed_part.size() + e.encoded_auth.size();
      if (alone || i - group_start >= session::kWireBatchEnvelopes ||
          (i > group_start && group_bytes + bytes_here > session::kWireBatchBytes))
        close_group(i);
      if (alone) {
        seal_alone(e);
        group_start = i + 1;
        continue;
      }
      group_bytes += bytes_here;
    }
    close_group(staged.size());
    const std::size_t envelopes = staged.size();
    staged.clear();
    const std::size_t messages = out.size();
    if (std::size_t dropped = enqueue_all(out); dropped > 0) {
      // Not silent: the application hears of every message the queue could not take.
      report({"sender", {status_code::overloaded, fmt::format("outbound queue full: {} of {} messages of a signed batch dropped", dropped, messages)},
              opts.name, "", {}});
    }
    st_sent += envelopes;
  }

  // seal: direct mode, the identity signs this envelope's digest.
  result<net::frames> seal(envelope_type type, recipient_kind kind, const std::string& to, std::string_view content_type,
                           byte_view payload, const bytes& correlation_id, const std::vector<std::string>& e2e_to,
                           const seal_tweaks* tweaks, bytes* message_id_out = nullptr) {
    prepared p = prepare(type, kind, to, content_type, payload, correlation_id, tweaks, message_id_out);
    auto sig = key->sign_digest(p.digest);
    if (!sig) return sig.error();
    assurance level = key->key_protection() == protection::tpm ? assurance::tpm : assurance::software;
    return finish(std::move(p), std::move(sig).value(), level, std::nullopt, e2e_to, tweaks);
  }

  // seal_and_queue: the path data envelopes take. In batch mode the digest joins the
  // next Merkle batch and the envelope is completed and queued by the signer thread
  // once the root is signed (in submission order); otherwise it is signed here.
  status seal_and_queue(envelope_type type, recipient_kind kind, const std::string& to, std::string_view content_type,
                        byte_view payload, const bytes& correlation_id, std::vector<std::string> e2e_to,
                        const seal_tweaks* tweaks, bytes* message_id_out = nullptr) {
    if (!batcher) {
      auto frames = seal(type, kind, to, content_type, payload, correlation_id, e2e_to, tweaks, message_id_out);
      if (!frames) return frames.error();
      return queue_envelope(std::move(frames).value());
    }
    prepared p = prepare(type, kind, to, content_type, payload, correlation_id, tweaks, message_id_out);
    bytes digest = p.digest;
    bytes id;
    if (message_id_out) id = *message_id_out;
    std::optional<seal_tweaks> t;
    if (tweaks) t = *tweaks;
    batcher->submit(std::move(digest), [this, p = std::move(p), e2e_to = std::move(e2e_to), t = std::move(t), to,
                                        id](const result<bytes>& sig, batch_proof proof) mutable {
      if (!sig) {
        // The sender is told, as for any refusal; nothing is sent unsigned.
        report({"sender", sig.error(), opts.name, to, id});
        return;
      }
      envelope_auth auth = authenticate(p, sig.value(), assurance::tpm_batch, std::move(proof), e2e_to, t ? &*t : nullptr);
      staged.push_back({std::move(p.signed_part), std::move(p.digest), std::move(auth), std::move(t)});
    });
    return {};
  }

  status queue_envelope(net::frames f) {
    status st = enqueue(std::move(f));
    if (st) ++st_sent;
    return st;
  }

  // ---------------------------------------------------------------- peers and sessions
  result<std::shared_ptr<const peer_info>> peer(const std::string& name) {
    std::unique_lock lock(peers_mu);
    if (auto it = peers.find(name); it != peers.end()) return it->second;
    peer_failures.erase(name);
    lock.unlock();
    if (status st = send_ctrl("peer", {name}); !st) return st;
    lock.lock();
    bool answered = peers_cv.wait_for(lock, opts.session_timeout, [&] {
      return peers.count(name) > 0 || peer_failures.count(name) > 0 || stopping.load();
    });
    if (auto it = peers.find(name); it != peers.end()) return it->second;
    if (auto it = peer_failures.find(name); it != peer_failures.end()) return it->second;
    return status{answered ? status_code::internal : status_code::timeout, "no answer about peer " + name};
  }

  // ensure_session returns once a session with `name` exists (establishing or
  // rekeying it as needed). A due rekey starts in the background: the old keys keep
  // working until the peer accepts.
  status ensure_session(const std::string& name) {
    auto p = peer(name);
    if (!p) return p.error();
    std::unique_lock lock(sess_mu);
    peer_session& s = sessions[name];
    if (s.established && s.offer && steady::now() - s.offer->sent_at > opts.session_timeout) s.offer.reset();
    if (s.established && !s.offer && s.state.due_for_rekey(opts.rekey_after_messages, opts.rekey_after)) {
      lock.unlock();
      if (status st = send_offer(**p, /*rekey=*/true); !st) return st;
      return {};
    }
    if (s.established) return {};
    if (offer_backing_off(s))
      return {status_code::no_session, "no session with " + name + ": the last offer went unanswered; offering again " +
                                           std::to_string(kOfferRetryAfter.count()) + " s after it"};
    // An offer that got no answer (lost, or refused by the broker) is replaced.
    if (s.offer && steady::now() - s.offer->sent_at > opts.session_timeout) s.offer.reset();
    if (!s.offer) {
      lock.unlock();
      if (status st = send_offer(**p, false); !st) return st;
      lock.lock();
    }
    bool ok = sess_cv.wait_for(lock, opts.session_timeout, [&] { return sessions[name].established || stopping.load(); });
    if (!ok || !sessions[name].established) {
      sessions[name].unanswered_at = steady::now();
      return {status_code::no_session, "no session with " + name + " within " +
                                           std::to_string(opts.session_timeout.count()) + " ms"};
    }
    return {};
  }

  // offer_backing_off: an offer to this peer went unanswered less than
  // kOfferRetryAfter ago (sess_mu held).
  static bool offer_backing_off(const peer_session& s) {
    return s.unanswered_at && steady::now() - *s.unanswered_at < kOfferRetryAfter;
  }
  bool offer_backing_off(const std::string& name) {
    std::lock_guard lock(sess_mu);
    auto it = sessions.find(name);
    return it != sessions.end() && !it->second.established && offer_backing_off(it->second);
  }

  status send_offer(const peer_info& p, bool rekey) {
    outstanding_offer o;
    o.curve = session::curve_for_pair(my_suite.ecdh_curve, p.peer_suite.ecdh_curve);
    o.ephemeral = crypto::ec_keypair::generate(o.curve);
    o.nonce = crypto::random_bytes(session::kNonceSize);
    session::offer_msg m;
    m.ephemeral_der = o.ephemeral->public_part().der();
    m.nonce = o.nonce;
    m.curve = std::string(curve_name(o.curve));
    // With a TPM, the session also depends on a secret that never leaves it (the
    // Noise es/se pattern): our static TPM ECDH key on the session's curve.
    if (auto st = static_or_none(o.curve)) m.static_ecdh_der = st->der();
    {
      std::lock_guard lock(sess_mu);
      auto& s = sessions[p.name];
      if (s.offer) return {};  // one outstanding offer per peer
      if (rekey && s.state.send_key()) m.rekey_of = s.state.send_key()->session_id;
    }
    auto frames = seal(envelope_type::control, recipient_kind::agent, p.name, session::kOfferContentType,
                       session::encode(m), {}, {}, nullptr, &o.message_id);
    if (!frames) return frames.error();
    o.signed_part = (*frames)[1];
    o.sent_at = steady::now();
    {
      std::lock_guard lock(sess_mu);
      auto& s = sessions[p.name];
      if (s.offer) return {};
      s.offer = std::move(o);
    }
    return queue_envelope(std::move(frames).value());
  }

  // derive_pair_keys: the offer's sender is the initiator.
  static session::derived_keys derive_pair_keys(const std::vector<secret_bytes>& z, byte_view nonce_i, byte_view nonce_r,
                                                const std::string& initiator, const std::string& responder,
                                                const suite& i_suite, const suite& r_suite, byte_view offer_signed,
                                                byte_view accept_signed) {
    bytes transcript(offer_signed.begin(), offer_signed.end());
    transcript.insert(transcript.end(), accept_signed.begin(), accept_signed.end());
    hash_algorithm th_hash = hash_size(i_suite.mac_hash) >= hash_size(r_suite.mac_hash) ? i_suite.mac_hash : r_suite.mac_hash;
    return session::derive_keys(z, nonce_i, nonce_r, "e2e", initiator, responder,
                                crypto::digest(th_hash, transcript), i_suite.mac_hash, r_suite.mac_hash);
  }

  // On the dispatch thread: answer a verified offer.
  void answer_offer(const peer_info& p, const envelope_header& offer_header, bytes offer_signed) {
    auto offer = session::decode_offer(offer_header.payload);
    if (!offer) {
      report({"receiver", offer.error(), p.name, opts.name, offer_header.message_id});
      return;
    }
    ec_curve expected = session::curve_for_pair(my_suite.ecdh_curve, p.peer_suite.ecdh_curve);
    auto peer_eph = session::ec_key_on_curve(offer->ephemeral_der, expected);
    if (offer->curve != curve_name(expected) || !peer_eph) {
      report({"receiver", {status_code::invalid_field, "session offer on the wrong curve"}, p.name, opts.name,
              offer_header.message_id});
      return;
    }
    {
      // Crossing offers: the agent whose name sorts first stays initiator.
      std::lock_guard lock(sess_mu);
      auto& s = sessions[p.name];
      if (s.offer && opts.name < p.name) return;  // ours wins; the peer will accept ours
      s.offer.reset();
    }
    auto eph = crypto::ec_keypair::generate(expected);
    session::accept_msg a;
    a.ephemeral_der = eph.public_part().der();
    a.nonce = crypto::random_bytes(session::kNonceSize);
    a.offer_id = offer_header.message_id;
    std::optional<crypto::public_key> my_static = static_or_none(expected);
    if (my_static) a.static_ecdh_der = my_static->der();
    std::optional<crypto::public_key> peer_static;
    if (!offer->static_ecdh_der.empty()) {
      peer_static = session::ec_key_on_curve(offer->static_ecdh_der, expected);
      if (!peer_static) {
        report({"receiver", {status_code::invalid_field, "session offer's static key is not on the session curve"}, p.name,
                opts.name, offer_header.message_id});
        return;
      }
    }
    auto frames = seal(envelope_type::control, recipient_kind::agent, p.name, session::kAcceptContentType,
                       session::encode(a), offer_header.message_id, {}, nullptr);
    if (!frames) {
      spdlog::error("[{}] cannot sign a session acceptance for {}: {}", opts.name, p.name, frames.error().to_string());
      return;
    }
    // Z_ee, then Z_se (initiator static × our ephemeral), then Z_es (our TPM static ×
    // initiator ephemeral), each present iff that static key was offered.
    std::vector<secret_bytes> secrets;
    auto z = eph.derive(*peer_eph);
    if (!z) return;
    secrets.push_back(std::move(z).value());
    if (peer_static) {
      auto z_se = eph.derive(*peer_static);
      if (!z_se) return;
      secrets.push_back(std::move(z_se).value());
    }
    if (my_static) {
      auto z_es = key->static_ecdh(expected, *peer_eph);
      if (!z_es) {
        spdlog::error("[{}] TPM ECDH failed for a session with {}: {}", opts.name, p.name, z_es.error().to_string());
        return;
      }
      secrets.push_back(std::move(z_es).value());
    }
    if (peer_static || my_static) ++st_tpm_ecdh_sessions;
    auto keys = derive_pair_keys(secrets, offer->nonce, a.nonce, p.name, opts.name, p.peer_suite, my_suite, offer_signed,
                                 (*frames)[1]);
    {
      // Queue the acceptance before the new keys can be used: nothing sealed with them
      // may overtake it to the initiator (who cannot verify it before the acceptance).
      std::lock_guard lock(sess_mu);
      auto& s = sessions[p.name];
      // The crossing rule again: we may have offered a session ourselves while this
      // acceptance was signed (the TPM is slow). Installing keys the peer drops (it
      // answers our offer, which wins) would have us MAC with them: bad_mac there.
      if (s.offer && opts.name < p.name) return;  // ours wins; the peer will accept ours
      s.offer.reset();
      (void)queue_envelope(std::move(frames).value());
      if (s.established) ++st_rekeys;
      else ++st_sessions;
      s.state.install(session::mac_key{keys.session_id, std::move(keys.responder_to_initiator), my_suite.mac_hash},
                      session::mac_key{keys.session_id, std::move(keys.initiator_to_responder), p.peer_suite.mac_hash},
                      opts.rekey_grace);
      s.established = true;
    }
    sess_cv.notify_all();
  }

  // On the dispatch thread: complete our own offer. The key agreement (which may use
  // the TPM) runs outside sess_mu; the keys are installed only if the offer is still
  // the outstanding one.
  void complete_offer(const peer_info& p, const envelope_header& h, byte_view accept_signed) {
    auto a = session::decode_accept(h.payload);
    if (!a) {
      report({"receiver", a.error(), p.name, opts.name, h.message_id});
      return;
    }
    std::shared_ptr<crypto::ec_keypair> ephemeral;
    bytes nonce, offer_signed;
    ec_curve curve;
    {
      std::lock_guard lock(sess_mu);
      auto& s = sessions[p.name];
      if (!s.offer || s.offer->message_id != a->offer_id) return;  // stale or unsolicited
      ephemeral = std::make_shared<crypto::ec_keypair>(*s.offer->ephemeral);
      nonce = s.offer->nonce;
      offer_signed = s.offer->signed_part;
      curve = s.offer->curve;
    }
    auto peer_eph = session::ec_key_on_curve(a->ephemeral_der, curve);
    std::optional<crypto::public_key> peer_static;
    if (!a->static_ecdh_der.empty()) peer_static = session::ec_key_on_curve(a->static_ecdh_der, curve);
    if (!peer_eph || (!a->static_ecdh_der.empty() && !peer_static)) {
      report({"receiver", {status_code::invalid_field, "session acceptance with a key off the session curve"}, p.name,
              opts.name, h.message_id});
      return;
    }
    // Z_ee, then Z_se (our TPM static × their ephemeral), then Z_es (our ephemeral ×
    // their static), each present iff that static key was offered.
    std::vector<secret_bytes> secrets;
    auto z = ephemeral->derive(*peer_eph);
    if (!z) return;
    secrets.push_back(std::move(z).value());
    std::optional<crypto::public_key> my_static = static_or_none(curve);
    if (my_static) {
      auto z_se = key->static_ecdh(curve, *peer_eph);
      if (!z_se) {
        spdlog::error("[{}] TPM ECDH failed for a session with {}: {}", opts.name, p.name, z_se.error().to_string());
        return;
      }
      secrets.push_back(std::move(z_se).value());
    }
    if (peer_static) {
      auto z_es = ephemeral->derive(*peer_static);
      if (!z_es) return;
      secrets.push_back(std::move(z_es).value());
    }
    auto keys = derive_pair_keys(secrets, nonce, a->nonce, opts.name, p.name, my_suite, p.peer_suite, offer_signed,
                                 accept_signed);
    {
      std::lock_guard lock(sess_mu);
      auto& s = sessions[p.name];
      if (!s.offer || s.offer->message_id != a->offer_id) return;  // superseded meanwhile
      if (s.established) ++st_rekeys;
      else ++st_sessions;
      if (peer_static || my_static) ++st_tpm_ecdh_sessions;
      s.state.install(session::mac_key{keys.session_id, std::move(keys.initiator_to_responder), my_suite.mac_hash},
                      session::mac_key{keys.session_id, std::move(keys.responder_to_initiator), p.peer_suite.mac_hash},
                      opts.rekey_grace);
      s.established = true;
      s.offer.reset();
    }
    sess_cv.notify_all();
  }

  // ---------------------------------------------------------------- receive half of the hot path
  // A received envelope, decoded, with its sender's pinned facts and its digest.
  struct received_envelope {
    std::optional<envelope_header> header;
    std::optional<envelope_auth> auth;
    std::shared_ptr<const peer_info> peer;
    bytes digest;
  };
  // io thread only: envelopes whose hop MAC verified, waiting for a session key that an
  // accept being completed will install (see `completing`), with their signed parts.
  std::deque<std::pair<received_envelope, bytes>> awaiting_session;
  // refused: the bytes do not decode; sender_refused: they decode, but the sender's
  // key lookup failed recently (unknown, revoked, changed key); unknown_sender: park.
  enum class lookup { ready, refused, sender_refused, unknown_sender };

  // open_envelope: 1. limits and decoding of untrusted bytes; 2. the sender's pinned
  // key and role (fetched once from the broker, pinned); the digest under its suite.
  // `refused` carries the rejection to report; unknown_sender means "park it".
  lookup open_envelope(const bytes& signed_part, const bytes& auth_part, received_envelope& e, rejection& refused) {
    auto h = decode_signed_part(signed_part);
    if (!h) {
      refused = {"receiver", h.error(), "?", opts.name, {}};
      return lookup::refused;
    }
    auto auth = decode_auth_part(auth_part);
    if (!auth) {
      refused = {"receiver", auth.error(), h->sender, opts.name, h->message_id};
      return lookup::refused;
    }
    e.header = std::move(*h);
    e.auth = std::move(*auth);
    {
      std::lock_guard lock(peers_mu);
      auto it = peers.find(e.header->sender);
      if (it == peers.end()) {
        if (auto failed = peer_failures.find(e.header->sender); failed != peer_failures.end()) {
          // A failed lookup is not forever (the peer may have been re-enrolling):
          // after a few seconds we ask the broker again.
          if (steady::now() - peer_failure_at[e.header->sender] < std::chrono::seconds(5)) {
            refused = {"receiver", failed->second, e.header->sender, e.header->to, e.header->message_id};
            return lookup::sender_refused;
          }
          peer_failures.erase(failed);
          asked.erase(e.header->sender);
        }
        return lookup::unknown_sender;  // park; the io loop asks the broker
      }
      e.peer = it->second;
    }
    e.digest = envelope_digest(e.peer->peer_suite.envelope_hash, signed_part);
    return lookup::ready;
  }

  // check_and_deliver runs every receive-side check in order, cheapest first.
  // Returns false if the envelope was parked (sender key unknown yet).
  bool check_and_deliver(const net::frames& f) {
    received_envelope e;
    rejection refused;
    switch (open_envelope(f[1], f[2], e, refused)) {
      case lookup::refused:
      case lookup::sender_refused: report(std::move(refused)); return true;
      case lookup::unknown_sender: return false;
      case lookup::ready: break;
    }
    // 3. Hop MAC: the frames came through our authenticated broker session.
    {
      std::lock_guard lock(hop_mu);
      if (status st = session::verify_hop_mac(hop, e.digest, *e.auth); !st) {
        report({"receiver", std::move(st), e.header->sender, e.header->to, e.header->message_id});
        return true;
      }
    }
    check_and_deliver_opened(e, f[1]);
    return true;
  }

  // check_and_deliver_batch: a wire batch from the broker (schemas/envelope.md §7.3):
  // [BATCH, session id, MAC, (signed part, auth part) × n]. Its one hop MAC stands for
  // every member's; the size limits, every member's decoding and the MAC decide for
  // the whole batch (a broker never builds a bad one); then each envelope is checked
  // on its own. Returns false if it was parked (a sender's key is unknown yet).
  bool check_and_deliver_batch(const net::frames& f) {
    auto refuse_batch = [&](status why) {
      report({"receiver", std::move(why), "broker", opts.name, {}});
      return true;
    };
    const std::span<const bytes> envelope_frames = f.size() > 3 ? std::span(f).subspan(3) : std::span<const bytes>();
    if (status st = session::check_wire_batch_shape(envelope_frames, 2 * kMaxReceivedFrameBytes); !st)
      return refuse_batch(std::move(st));
    const std::size_t count = envelope_frames.size() / 2;
    std::vector<received_envelope> members(count);
    for (std::size_t k = 0; k < count; ++k) {
      rejection refused;
      switch (open_envelope(f[3 + 2 * k], f[4 + 2 * k], members[k], refused)) {
        case lookup::refused:
          refused.reason = status(refused.reason.code(), "in a wire batch: " + refused.reason.detail());
          report(std::move(refused));
          return refuse_batch({status_code::malformed, "wire batch with a member that cannot be checked"});
        case lookup::sender_refused:
          // Not the batch's fault: each of its envelopes is refused for its sender,
          // as it would be on its own (the broker batches one sender's envelopes).
          for (std::size_t i = 3; i + 1 < f.size(); i += 2)
            if (auto h = decode_signed_part(f[i]))
              report({"receiver", refused.reason, h->sender, h->to, h->message_id});
          return true;
        case lookup::unknown_sender: return false;
        case lookup::ready: break;
      }
      if (members[k].auth->hop_mac)
        return refuse_batch({status_code::malformed, "an envelope in a wire batch carries a hop MAC of its own"});
    }
    std::vector<wire_batch_item> items;
    items.reserve(count);
    for (const auto& m : members) items.push_back({m.digest, &*m.auth});
    {
      std::lock_guard lock(hop_mu);
      if (status st = session::verify_wire_batch_mac(hop, f[1], items, f[2]); !st) return refuse_batch(std::move(st));
    }
    for (std::size_t k = 0; k < count; ++k) check_and_deliver_opened(members[k], f[3 + 2 * k]);
    return true;
  }

  // check_and_deliver_opened: steps 4-9 for an envelope whose hop MAC (its own or its
  // wire batch's) verified.
  void check_and_deliver_opened(received_envelope& e, const bytes& signed_part) {
    auto& h = e.header;
    auto& auth = e.auth;
    const peer_info& p = *e.peer;
    const suite& s = p.peer_suite;
    const bytes& digest = e.digest;
    auto reject = [&](status st) { report({"receiver", std::move(st), h->sender, h->to, h->message_id}); };
    // 4. Declared suite is the sender's role suite; key and assurance level.
    if (status st = pol->check_declared_suite(p.role, h->suite); !st) return reject(st);
    if (status st = session::check_key_and_assurance(*pol, p.role, p.key_protection, p.key_id, *auth); !st)
      return reject(st);
    // 5. ACL: the policy, not the broker, says who may reach us.
    // Session set-up travels only agent to agent: a topic-addressed offer would make
    // every subscriber sign an acceptance.
    const bool session_control = h->type == envelope_type::control && h->to_kind == recipient_kind::agent &&
                                 (h->content_type == session::kOfferContentType || h->content_type == session::kAcceptContentType);
    if (h->to_kind == recipient_kind::agent) {
      if (h->to != opts.name) return reject({status_code::invalid_field, "envelope addressed to " + h->to});
      if (!session_control)
        if (status st = pol->check_send(p.role, role); !st) return reject(st);
    } else {
      if (status st = pol->check_publish(p.role, h->to); !st) return reject(st);
      std::lock_guard lock(topics_mu);
      if (!topic_handlers.count(h->to)) return reject({status_code::acl_denied, "not subscribed to " + h->to});
    }
    // 6. Replay window and clock skew (checked now, committed after the crypto).
    auto& window = windows[h->sender];
    if (status st = window.check(h->sequence); !st) return reject(st);
    if (status st = session::check_timestamp(h->timestamp_ms, session::now_ms(),
                                             static_cast<std::uint64_t>(opts.max_clock_skew.count()));
        !st)
      return reject(st);
    // 7. Signature against the pinned key.
    if (status st = session::verify_envelope_signature(*p.key, s, digest, *auth, &roots); !st) return reject(st);
    // 8. End-to-end MAC (session set-up messages are authenticated by their signature).
    if (!session_control) {
      std::unique_lock lock(sess_mu);
      auto it = sessions.find(h->sender);
      status st = it == sessions.end() ? status(status_code::no_session, "no session with " + h->sender)
                                       : session::verify_e2e_mac(it->second.state, digest, *auth, opts.name);
      if (!st && completing.count(h->sender) > 0) {
        // Its key is probably being installed right now: check it again afterwards.
        lock.unlock();
        if (awaiting_session.size() >= opts.max_pending)
          return reject({status_code::overloaded, "too many envelopes waiting for a session being set up"});
        awaiting_session.emplace_back(std::move(e), signed_part);
        return;
      }
      if (st.code() == status_code::no_session) reoffer(h->sender);
      if (!st) return reject(st);
      it->second.state.count_received();
    }
    window.commit(h->sequence);
    ++st_received;

    // 9. Deliver.
    if (session_control) {
      // Both may use the TPM (signing, ECDH): the dispatch thread, never this one.
      if (h->content_type == session::kOfferContentType)
        dispatch([this, p, hdr = std::move(*h), sp = signed_part,
                  pending = std::make_shared<completion_pending>(this, p.name)]() mutable {
          answer_offer(p, hdr, std::move(sp));
        });
      else
        dispatch([this, p, hdr = std::move(*h), sp = signed_part,
                  pending = std::make_shared<completion_pending>(this, p.name)] { complete_offer(p, hdr, sp); });
      return;
    }
    message m{std::move(*h), p.role, auth->level, p.key_protection};
    deliver(std::move(m));
  }

  // reoffer: the sender MACs for a session we do not have (we restarted, or lost
  // it): offer a fresh one, at most every two seconds per peer. The offer is signed,
  // so it runs on the dispatch thread.
  void reoffer(const std::string& peer_name) {
    auto now = steady::now();
    auto& last = last_reoffer[peer_name];
    if (now - last < std::chrono::seconds(2)) return;
    last = now;
    dispatch([this, peer_name] {
      peer_info p;
      {
        std::lock_guard lock(peers_mu);
        auto it = peers.find(peer_name);
        if (it == peers.end()) return;
        p = *it->second;
      }
      {
        std::lock_guard lock(sess_mu);
        sessions[peer_name].established = false;  // stop MACing with keys the peer lacks
      }
      (void)send_offer(p, false);
    });
  }

  void deliver(message m) {
    if (m.header.type == envelope_type::reply) {
      std::shared_ptr<std::promise<result<message>>> waiter;
      {
        std::lock_guard lock(req_mu);
        auto it = requests.find(m.header.correlation_id);
        if (it != requests.end()) {
          waiter = it->second;
          requests.erase(it);
        }
      }
      if (waiter) waiter->set_value(std::move(m));
      return;
    }
    deliveries.push_back([this, m = std::move(m)] {
      if (m.header.type == envelope_type::request) {
        request_handler h;
        {
          std::lock_guard lock(handlers_mu);
          h = on_req;
        }
        if (!h) return;
        std::optional<bytes> answer = h(m);
        if (!answer) return;
        if (status st = send_envelope(envelope_type::reply, m.header.sender, "application/octet-stream", *answer,
                                      m.header.message_id);
            !st)
          spdlog::warn("[{}] reply to {} not sent: {}", opts.name, m.header.sender, st.to_string());
        return;
      }
      message_handler h;
      if (m.header.to_kind == recipient_kind::topic) {
        std::lock_guard lock(topics_mu);
        if (auto it = topic_handlers.find(m.header.to); it != topic_handlers.end()) h = it->second;
      } else {
        std::lock_guard lock(handlers_mu);
        h = on_msg;
      }
      if (h) h(m);
    });
  }

  status send_envelope(envelope_type type, const std::string& to, std::string_view content_type, byte_view payload,
                       const bytes& correlation_id, const seal_tweaks* tweaks = nullptr) {
    if (status st = ensure_session(to); !st) return st;
    return seal_and_queue(type, recipient_kind::agent, to, content_type, payload, correlation_id, {to}, tweaks);
  }

  // ---------------------------------------------------------------- control from the broker
  void handle_ctrl(const net::frames& f) {
    if (f.size() != 4) return;
    {
      std::lock_guard lock(hop_mu);
      if (!session::verify_ctrl_tag(hop, f[1], f[2], f[3]).ok()) {
        spdlog::warn("[{}] control message with a bad MAC dropped", opts.name);
        return;
      }
    }
    auto m = session::decode_ctrl(f[2]);
    if (!m || !ctrl_seq_in.accept(f[1], m->seq)) {
      spdlog::warn("[{}] control message malformed or replayed", opts.name);
      return;
    }
    if (m->op == "nack" && m->strings.size() >= 3) {
      status reason(static_cast<status_code>(m->number), m->strings[1]);
      {
        // A refused session offer: forget it, so the next attempt sends a new one and
        // waiters fail now rather than at their timeout.
        std::lock_guard lock(sess_mu);
        for (auto& [peer_name, ps] : sessions)
          if (ps.offer && ps.offer->message_id == m->blob) ps.offer.reset();
      }
      sess_cv.notify_all();
      {
        std::lock_guard lock(req_mu);
        if (auto it = requests.find(m->blob); it != requests.end()) {
          it->second->set_value(reason);
          requests.erase(it);
        }
      }
      report({"broker", reason, opts.name, m->strings[2], m->blob});
    } else if (m->op == "peer" && !m->strings.empty()) {
      accept_peer_info(*m);
      asked.erase(m->strings[0]);
    } else if (m->op == "revoked" && m->strings.size() == 1) {
      // An operator revoked this agent: its sessions end now and nothing more from
      // it is accepted (the broker answers lookups about it as revoked from now on).
      const std::string& name = m->strings[0];
      {
        std::lock_guard lock(sess_mu);
        sessions.erase(name);
      }
      {
        std::lock_guard lock(peers_mu);
        peers.erase(name);
        peer_failures[name] = status(status_code::revoked_agent, name + " was revoked by an operator");
        peer_failure_at[name] = steady::now() + std::chrono::hours(24 * 365);
      }
      sess_cv.notify_all();
      spdlog::warn("[{}] {} was revoked: sessions dropped", opts.name, name);
    } else if (m->op == "members" && !m->strings.empty()) {
      std::lock_guard lock(topics_mu);
      members[m->strings[0]] = std::vector<std::string>(m->strings.begin() + 1, m->strings.end());
      topics_cv.notify_all();
    } else if (m->op == "subscribed" && m->strings.size() >= 2) {
      std::lock_guard lock(topics_mu);
      subscribe_answers[m->strings[0]] = m->number == 0 ? status{} : status(static_cast<status_code>(m->number), m->strings[1]);
      topics_cv.notify_all();
    }
  }

  void accept_peer_info(const ctrl_msg& m) {
    const std::string& name = m.strings[0];
    std::lock_guard lock(peers_mu);
    peer_failure_at[name] = steady::now();
    if (m.number == 2) {
      peer_failures[name] = status(status_code::revoked_agent, name + " is revoked");
      peers.erase(name);
      peers_cv.notify_all();
      return;
    }
    if (m.number != 0 || m.strings.size() < 4) {
      peer_failures[name] = status(status_code::unknown_agent, "broker knows no agent " + name);
      peers_cv.notify_all();
      return;
    }
    peer_info p;
    p.name = name;
    p.role = m.strings[1];
    auto key = crypto::public_key::from_der(m.blob);
    auto s = pol->suite_for(p.role);
    auto prot = parse_protection(m.strings[3]);
    status problem;
    if (!key || !s || !prot) problem = status(status_code::unknown_agent, "broker sent unusable information about " + name);
    else if (const agent_pin* pin = pol->find_pin(name);
             pin && (pin->role != p.role || (!pin->fingerprint.empty() && pin->fingerprint != key->fingerprint_hex())))
      problem = status(status_code::key_changed, "broker's key or role for " + name + " contradicts the policy pin");
    else if (pol->is_revoked(name))
      problem = status(status_code::revoked_agent, name + " is revoked by the policy");
    if (!problem.ok()) {
      peer_failures[name] = problem;
    } else {
      p.peer_suite = *s;
      p.key = std::move(key).value();
      p.key_id = p.key->fingerprint();
      p.key_protection = *prot;
      if (auto existing = peers.find(name); existing != peers.end() && existing->second->key_id != p.key_id)
        peer_failures[name] = status(status_code::key_changed, name + " presented another key than the one pinned");
      else
        peers[name] = std::make_shared<const peer_info>(std::move(p));
    }
    peers_cv.notify_all();
  }

  // ---------------------------------------------------------------- io loop
  void io_loop() {
    auto last_ping = steady::now();
    net::frames received;  // reused for every message: its buffers stay allocated
    while (!stopping) {
      // An optional periodic ping (off by default): a restarted broker is noticed
      // through the connection monitor (on_reconnected) without one.
      if (opts.ping_interval.count() > 0 && steady::now() - last_ping >= opts.ping_interval) {
        (void)send_ctrl("ping", {});
        last_ping = steady::now();
      }
      if (steady::now() >= next_hop_rekey_attempt && hop_due_for_rekey()) rekey_hop();
      while (!deferred.empty()) {
        net::frames f = std::move(deferred.front());
        deferred.pop_front();
        handle_frames(f);
      }
      flush_deliveries();
      // While the socket is at its high-water mark, wait until it can take more.
      const short dealer_events = static_cast<short>(ZMQ_POLLIN | (send_blocked ? ZMQ_POLLOUT : 0));
      zmq::pollitem_t items[3] = {{dealer.handle(), 0, dealer_events, 0},
                                  {nullptr, wake_fd, ZMQ_POLLIN, 0},
                                  {monitor->handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 3, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        (void)!::read(wake_fd, &n, sizeof n);
      }
      if ((items[2].revents & ZMQ_POLLIN) && monitor->reconnected()) on_reconnected();
      send_queued();
      // Receive everything waiting.
      for (int budget = 0; budget < 1024; ++budget) {
        // The largest message is a wire batch: kind, session id, MAC, 2 frames an envelope.
        if (!net::recv_multipart_into(dealer, received, 3 + 2 * session::kMaxWireBatchEnvelopes)) break;
        if (has_received_edit.load(std::memory_order_relaxed)) {
          std::lock_guard lock(received_edit_mu);
          if (received_edit) received_edit(received);
        }
        handle_frames(received);
      }
      // Retry parked envelopes whose sender is now known (or known-bad).
      if (!parked.empty()) {
        std::deque<net::frames> again;
        again.swap(parked);
        for (auto& f : again) handle_frames(f);
      }
      if (!awaiting_session.empty()) recheck_awaiting_session();
    }
  }

  // send_queued sends what callers queued: the whole queue is taken under one lock.
  // What the socket refuses (EAGAIN at the HWM) goes back to the front, in order: no
  // silent drop.
  void send_queued() {
    std::deque<net::frames> batch;
    {
      std::lock_guard lock(out_mu);
      batch.swap(outbound);
    }
    send_blocked = false;
    net::frames last;
    while (!batch.empty()) {
      if (!net::send_multipart(dealer, batch.front())) {
        send_blocked = true;
        break;
      }
      std::string_view kind = net::as_string(batch.front()[0]);
      if (kind == session::frame::kEnvelope || kind == session::frame::kWireBatch) last = std::move(batch.front());
      batch.pop_front();
    }
    std::lock_guard lock(out_mu);
    if (!last.empty()) last_envelope = std::move(last);
    if (!batch.empty()) {
      for (auto& f : outbound) batch.push_back(std::move(f));
      outbound.swap(batch);
    }
  }

  // flush_deliveries hands a burst of verified messages to the dispatch thread with
  // one lock and one wake-up.
  void flush_deliveries() {
    if (deliveries.empty()) return;
    (void)dispatch_all(deliveries);
    deliveries.clear();
  }

  void handle_frames(const net::frames& f) {
    if (f.empty()) return;
    std::string_view kind = net::as_string(f[0]);
    const bool envelope = kind == session::frame::kEnvelope && f.size() == 3;
    const bool wire_batch = kind == session::frame::kWireBatch;
    if (envelope || wire_batch) {
      if (envelope ? check_and_deliver(f) : check_and_deliver_batch(f)) return;
      // Parked until the broker tells us the sender's key (asked once per sender).
      // The signed parts decoded before parking, so they decode here.
      const std::size_t first = envelope ? 1 : 3;
      if (parked.size() >= opts.max_pending) {
        for (std::size_t i = first; i < f.size(); i += 2)
          if (auto h = decode_signed_part(f[i]))
            report({"receiver", {status_code::overloaded, "too many envelopes waiting for sender keys"}, h->sender, opts.name, h->message_id});
        return;
      }
      for (std::size_t i = first; i < f.size(); i += 2)
        if (auto h = decode_signed_part(f[i]); h && asked.insert(h->sender).second) (void)send_ctrl("peer", {h->sender});
      parked.push_back(f);
    } else if (kind == session::frame::kControl) {
      handle_ctrl(f);
    } else if (kind == session::frame::kError) {
      auto err = f.size() == 2 ? session::decode_error(f[1]) : result<session::error_msg>(status{status_code::malformed, "ERR"});
      if (!err) return;
      spdlog::warn("[{}] broker error: {}: {}", opts.name, status_code_name(err->code), err->detail);
      if (err->code == status_code::unknown_agent) reenrol();
    } else {
      report({"receiver", {status_code::malformed, "unexpected frame from the broker"}, "broker", opts.name, {}});
    }
  }

  bool hop_due_for_rekey() {
    std::lock_guard lock(hop_mu);
    return hop_rekey_messages > 0 && hop.due_for_rekey(hop_rekey_messages, hop_rekey_age);
  }

  // rekey_hop runs the enrolment handshake again: fresh ephemeral keys, fresh nonces,
  // a fresh TPM ECDH, both identities signing the new transcript.
  void rekey_hop() {
    try {
      enrol();
      ++st_hop_rekeys;
    } catch (const std::exception& e) {
      spdlog::warn("[{}] hop rekey failed (keeping the current keys): {}", opts.name, e.what());
      next_hop_rekey_attempt = steady::now() + std::chrono::seconds(5);  // whatever triggered it
    }
  }

  // recheck_awaiting_session checks again, in arrival order, the envelopes whose
  // sender's accept has been completed since (installed or not: now they pass or are
  // refused as usual).
  void recheck_awaiting_session() {
    std::deque<std::pair<received_envelope, bytes>> ready;
    {
      std::lock_guard lock(sess_mu);
      for (auto it = awaiting_session.begin(); it != awaiting_session.end();) {
        if (completing.count(it->first.header->sender) > 0) {
          ++it;
          continue;
        }
        ready.push_back(std::move(*it));
        it = awaiting_session.erase(it);
      }
    }
    for (auto& [e, signed_part] : ready) check_and_deliver_opened(e, signed_part);
  }

  // on_reconnected runs when the DEALER connected again after losing its connection
  // (the broker restarted, or heartbeats declared the connection dead). The broker
  // behind the new connection does not know it and says nothing until we speak: one
  // ping now, answered with unknown_agent, makes us re-enrol (schemas/protocol.md
  // §10). The new connection's first unknown_agent must count even within 2 s of
  // the last enrolment, so the de-duplication in reenrol starts afresh.
  void on_reconnected() {
    spdlog::info("[{}] reconnected to the broker", opts.name);
    last_enrol = steady::time_point{};
    (void)send_ctrl("ping", {});
  }

  // reenrol runs when the broker no longer knows us (it restarted): enrol again on
  // this (the socket's) thread, then restore subscriptions and topic watches.
  void reenrol() {
    // Several errors arrive for the envelopes sent before the broker knew us again:
    // one re-enrolment answers them all.
    if (steady::now() - last_enrol < std::chrono::seconds(2)) return;
    for (int attempt = 1; !stopping; ++attempt) {
      try {
        enrol();
        break;
      } catch (const std::exception& e) {
        spdlog::warn("[{}] re-enrolment attempt {} failed: {}", opts.name, attempt, e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 100 * attempt)));
      }
    }
    last_enrol = steady::now();
    ++st_reenrolments;
    std::vector<std::string> topics, watched;
    {
      std::lock_guard lock(topics_mu);
      for (const auto& [t, h] : topic_handlers) topics.push_back(t);
      for (const auto& [t, m] : members) watched.push_back(t);
    }
    for (const auto& t : topics) (void)send_ctrl("subscribe", {t});
    for (const auto& t : watched) (void)send_ctrl("members", {t});
    spdlog::info("[{}] re-enrolled with the broker", opts.name);
  }

  void dispatch_loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(disp_mu);
        disp_cv.wait(lock, [&] { return stopping || !dispatch_q.empty(); });
        if (dispatch_q.empty()) return;
        job = std::move(dispatch_q.front());
        dispatch_q.pop_front();
      }
      try {
        job();
      } catch (const std::exception& e) {
        spdlog::error("[{}] handler threw: {}", opts.name, e.what());
      }
    }
  }
};

agent::agent(agent_options options, std::shared_ptr<identity_key> key, std::shared_ptr<const policy> pol)
    : impl_(std::make_unique<impl>()) {
  impl& d = *impl_;
  d.opts = std::move(options);
  d.key = std::move(key);
  d.pol = std::move(pol);
  if (!d.key || !d.pol) throw std::invalid_argument("agent needs an identity and a policy");
  if (d.opts.heartbeat_interval < std::chrono::milliseconds::zero() || d.opts.heartbeat_interval > std::chrono::hours(1))
    throw std::invalid_argument("agent_options::heartbeat_interval must be 0 (off) .. 1 hour");
  d.role = d.key->metadata().role;
  auto s = d.pol->suite_for(d.role);
  if (!s) throw enrolment_error(s.error().code(), s.error().to_string());
  d.my_suite = *s;
  if (d.key->key_suite().name != d.my_suite.name)
    throw enrolment_error(status_code::suite_mismatch, "identity suite " + d.key->key_suite().name +
                                                           " differs from the policy's " + d.my_suite.name);
  d.my_key_id = d.key->public_key().fingerprint();
  if (const int ivl = static_cast<int>(d.opts.heartbeat_interval.count()); ivl > 0) {
    // A connection silent for 3 intervals (a dead host, a cut link; a closed one is
    // noticed at once) is dropped, so the socket reconnects and the monitor reports it.
    net::set_heartbeats(d.dealer, ivl);
  }
  // Attached before connect, so the first connection is known not to be a reconnection.
  d.monitor.emplace(d.ctx, d.dealer);
  d.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (d.wake_fd < 0) throw std::runtime_error("eventfd failed");
  d.dealer.set(zmq::sockopt::linger, 0);
  d.dealer.set(zmq::sockopt::sndhwm, 10000);
  d.dealer.set(zmq::sockopt::rcvhwm, 10000);
  d.dealer.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxReceivedFrameBytes));
  d.dealer.connect(d.opts.broker_endpoint);
  try {
    d.enrol();
  } catch (...) {
    ::close(d.wake_fd);
    throw;
  }
  if (d.opts.batch_signing && d.key->key_protection() == protection::tpm) {
    // The role's window in the policy bounds ours: verifiers refuse larger batches.
    auto limits = d.pol->batch_limits_for(d.role);
    if (!limits) throw enrolment_error(limits.error().code(), limits.error().to_string());
    const std::size_t max_batch = std::min<std::size_t>(d.opts.max_batch, limits->max_leaves);
    const auto window = std::min<std::chrono::microseconds>(d.opts.batch_window, limits->max_delay);
    d.batcher = std::make_unique<client::batch_signer>(d.key, max_batch, window, [&d] { d.flush_staged(); });
  }
  d.io_thread = std::thread([&d] { d.io_loop(); });
  d.dispatch_thread = std::thread([&d] { d.dispatch_loop(); });
}

agent::~agent() {
  impl& d = *impl_;
  d.batcher.reset();  // signs and queues what was submitted
  // Tell the broker we are leaving, give the io thread a moment to flush it.
  (void)d.send_ctrl("bye", {});
  for (int i = 0; i < 50; ++i) {
    {
      std::lock_guard lock(d.out_mu);
      if (d.outbound.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  d.stopping = true;
  d.disp_cv.notify_all();
  d.sess_cv.notify_all();
  d.peers_cv.notify_all();
  d.topics_cv.notify_all();
  if (d.io_thread.joinable()) d.io_thread.join();
  if (d.dispatch_thread.joinable()) d.dispatch_thread.join();
  std::lock_guard lock(d.req_mu);
  for (auto& [id, p] : d.requests) p->set_value(status{status_code::timeout, "agent stopped"});
  d.requests.clear();
  ::close(d.wake_fd);
}

const std::string& agent::name() const noexcept { return impl_->opts.name; }

status agent::send(const std::string& to, std::string_view content_type, byte_view payload) {
  return impl_->send_envelope(envelope_type::data, to, content_type, payload, {});
}

status agent::publish(const std::string& topic, std::string_view content_type, byte_view payload) {
  impl& d = *impl_;
  if (status st = d.pol->check_publish(d.role, topic); !st) return st;  // refuse locally what the broker would
  std::vector<std::string> recipients;
  {
    std::unique_lock lock(d.topics_mu);
    if (!d.members.count(topic)) {
      lock.unlock();
      if (status st = d.send_ctrl("members", {topic}); !st) return st;
      lock.lock();
      if (!d.topics_cv.wait_for(lock, d.opts.session_timeout, [&] { return d.members.count(topic) > 0 || d.stopping.load(); }))
        return {status_code::timeout, "broker did not list the members of " + topic};
    }
    recipients = d.members[topic];
  }
  std::erase(recipients, d.opts.name);
  // Sessions with every subscriber first; one that cannot be reached is reported and
  // left out (it would refuse the envelope for lack of its MAC anyway). One whose last
  // offer went unanswered is left out quietly until it is offered again.
  for (const auto& r : recipients) {
    if (d.offer_backing_off(r)) continue;
    if (status st = d.ensure_session(r); !st)
      spdlog::warn("[{}] publishing to {} without {}: {}", d.opts.name, topic, r, st.to_string());
  }
  return d.seal_and_queue(envelope_type::data, recipient_kind::topic, topic, content_type, payload, {}, recipients, nullptr);
}

status agent::subscribe(const std::string& topic, message_handler handler) {
  impl& d = *impl_;
  {
    std::lock_guard lock(d.topics_mu);
    d.topic_handlers[topic] = std::move(handler);
    d.subscribe_answers.erase(topic);
  }
  if (status st = d.send_ctrl("subscribe", {topic}); !st) return st;
  std::unique_lock lock(d.topics_mu);
  if (!d.topics_cv.wait_for(lock, d.opts.session_timeout, [&] { return d.subscribe_answers.count(topic) > 0 || d.stopping.load(); }))
    return {status_code::timeout, "broker did not answer the subscription to " + topic};
  status answer = d.subscribe_answers[topic];
  if (!answer) d.topic_handlers.erase(topic);
  return answer;
}

result<message> agent::request(const std::string& to, std::string_view content_type, byte_view payload,
                               std::chrono::milliseconds timeout) {
  impl& d = *impl_;
  if (status st = d.ensure_session(to); !st) return st;
  // The message id is chosen before the envelope is signed, so the reply waiter is
  // registered before anything can answer.
  bytes id = d.message_ids.next();
  auto waiter = std::make_shared<std::promise<result<message>>>();
  auto answer = waiter->get_future();
  {
    std::lock_guard lock(d.req_mu);
    d.requests[id] = waiter;
  }
  seal_tweaks fixed_id;
  fixed_id.edit_header = [&id](envelope_header& h) { h.message_id = id; };
  if (status st = d.seal_and_queue(envelope_type::request, recipient_kind::agent, to, content_type, payload, {}, {to},
                                   &fixed_id);
      !st) {
    std::lock_guard lock(d.req_mu);
    d.requests.erase(id);
    return st;
  }
  if (answer.wait_for(timeout) != std::future_status::ready) {
    std::lock_guard lock(d.req_mu);
    d.requests.erase(id);
    return status{status_code::timeout, "no reply from " + to + " within " + std::to_string(timeout.count()) + " ms"};
  }
  return answer.get();
}

void agent::on_message(message_handler handler) {
  std::lock_guard lock(impl_->handlers_mu);
  impl_->on_msg = std::move(handler);
}
void agent::on_request(request_handler handler) {
  std::lock_guard lock(impl_->handlers_mu);
  impl_->on_req = std::move(handler);
}
void agent::on_rejected(rejection_handler handler) {
  std::lock_guard lock(impl_->handlers_mu);
  impl_->on_rej = std::move(handler);
}

agent_stats agent::stats() const {
  const impl& d = *impl_;
  return {d.st_sent.load(),     d.st_received.load(), d.st_rejected.load(),     d.st_refused.load(),
          d.st_sessions.load(), d.st_rekeys.load(),   d.st_reenrolments.load(), d.st_hop_rekeys.load(),
          d.st_tpm_ecdh_sessions.load(),
          d.batcher ? d.batcher->batches() : 0,
          d.batcher ? d.batcher->envelopes() : 0};
}

status agent::raw_access::send_tweaked(agent& a, recipient_kind kind, const std::string& to,
                                       std::string_view content_type, byte_view payload, const seal_tweaks& tweaks) {
  impl& d = *a.impl_;
  std::vector<std::string> recipients;
  if (kind == recipient_kind::agent) {
    if (status st = d.ensure_session(to); !st) return st;
    recipients = {to};
  }
  return d.seal_and_queue(envelope_type::data, kind, to, content_type, payload, {}, recipients, &tweaks);
}

status agent::raw_access::resend_last(agent& a) {
  net::frames copy;
  // The io thread records what it sent: wait (briefly) until the queue has drained,
  // so "last" is the last envelope the caller queued.
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(a.impl_->out_mu);
      if (a.impl_->outbound.empty()) {
        copy = a.impl_->last_envelope;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (copy.empty()) return {status_code::invalid_field, "nothing sent yet"};
  return a.impl_->enqueue(std::move(copy));
}

status agent::raw_access::send_frames(agent& a, std::vector<bytes> frames) { return a.impl_->enqueue(std::move(frames)); }

void agent::raw_access::edit_received(agent& a, std::function<void(std::vector<bytes>& frames)> edit) {
  impl& d = *a.impl_;
  std::lock_guard lock(d.received_edit_mu);
  d.has_received_edit = static_cast<bool>(edit);
  d.received_edit = std::move(edit);
}

}  // namespace agentbus
