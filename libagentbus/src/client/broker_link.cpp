#include "client/broker_link.hpp"

#include <spdlog/spdlog.h>

#include <future>
#include <utility>

#include "net/transport_key.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"

namespace agentbus::client {
namespace {
using steady = std::chrono::steady_clock;
// A failed hop rekey keeps the current keys; the next attempt waits this long.
constexpr std::chrono::seconds kRekeyRetry{5};
// Several ERR unknown_agent arrive for what was sent before the broker knew us
// again: one re-enrolment answers them all.
constexpr std::chrono::seconds kReenrolDebounce{2};
// kMaxCookies: COOKIE answers one handshake follows before it gives up (a broker
// restarted between the two HELLOs answers a second one).
constexpr int kMaxCookies = 3;
}  // namespace

broker_link::broker_link(const agent_options& opts, identity_key& key, const suite& my_suite, outbound_queue& out)
    : opts_(opts), key_(key), suite_(my_suite), out_(out) {
  // agent::agent checked the hex; the token lives as key material from here on.
  if (!opts_.enrolment_token.empty()) {
    const bytes raw = from_hex(opts_.enrolment_token);
    token_ = secret_bytes(raw.size());
    std::copy(raw.begin(), raw.end(), token_->data());
  }
}

broker_link::~broker_link() { stop(); }

void broker_link::start(std::function<void()> on_reenrolled) {
  on_reenrolled_ = std::move(on_reenrolled);
  worker_ = std::thread([this] { run(); });
}

void broker_link::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void broker_link::enrol_first() {
  std::future<status> result;
  {
    std::lock_guard lock(mu_);
    first_result_.emplace();
    result = first_result_->get_future();
  }
  submit(job::first);
  status st = result.get();
  if (!st) throw enrolment_error(st.code(), st.code() == status_code::timeout
                                                ? "broker at " + opts_.broker_endpoint + " did not answer: " + st.detail()
                                                : st.to_string());
}

void broker_link::submit(job j) {
  {
    std::lock_guard lock(mu_);
    // At most one job waits; a re-enrolment supersedes a waiting rekey, and one that
    // is already running answers every unknown_agent that arrives meanwhile.
    if (j == job::reenrol && running_ == job::reenrol) return;
    if (pending_job_ == job::none || (j == job::reenrol && pending_job_ == job::rekey)) pending_job_ = j;
    else return;
  }
  cv_.notify_all();
}

status broker_link::send_control(const session::control::request& r) {
  return send_control_body([&](std::uint64_t seq) { return session::control::encode(seq, r); });
}

status broker_link::send_control_body(const std::function<bytes(std::uint64_t seq)>& encode) {
  return out_.push_built([&] {
    // Numbered and MACed under the queue's lock: two threads can never put a lower
    // number behind a higher one, which the broker would drop as replayed.
    std::lock_guard lock(mu_);
    const session::mac_key* k = hop_.send_key();
    bytes body = encode(ctrl_seq_out_++);
    bytes tag = k ? session::ctrl_tag(*k, body) : bytes{};
    bytes sid = k ? k->session_id : bytes(session::kSessionIdSize, 0);
    return net::frames{net::to_bytes(session::frame::kControl), std::move(sid), std::move(body), std::move(tag)};
  });
}

status broker_link::verify_envelope(byte_view digest, const envelope_auth& auth) const {
  std::lock_guard lock(mu_);
  return session::verify_hop_mac(hop_, digest, auth);
}

status broker_link::verify_batch(byte_view session_id, std::span<const wire_batch_item> items, byte_view tag) const {
  std::lock_guard lock(mu_);
  return session::verify_wire_batch_mac(hop_, session_id, items, tag);
}

status broker_link::verify_control(byte_view session_id, byte_view body, byte_view tag) const {
  std::lock_guard lock(mu_);
  return session::verify_ctrl_tag(hop_, session_id, body, tag);
}

bool broker_link::accept_control(byte_view session_id, std::uint64_t seq) {
  return ctrl_in_.accept(bytes(session_id.begin(), session_id.end()), seq);
}

// ---------------------------------------------------------------- io thread

void broker_link::on_handshake(std::string_view kind, const bytes& body) {
  std::lock_guard lock(mu_);
  if (!current_) return;  // a late answer to a handshake that gave up: nothing waits for it
  if (kind == session::frame::kCookie) {
    if (!current_->proof_sent()) cookie_ = body;
  } else if (kind == session::frame::kChallenge) {
    if (!current_->proof_sent()) challenge_ = body;  // the latest: an earlier one may answer an older HELLO
  } else if (kind == session::frame::kWelcome) {
    // Checked and installed here, before the io thread reads anything the broker MACed
    // under the new keys. Software only: the worker derived the keys before PROOF left.
    auto w = current_->on_welcome(body);
    if (!w) {
      outcome_ = w.error();
    } else {
      // A rekey keeps the previous broker→agent key for the grace window: envelopes the
      // broker MACed before it saw our new handshake still verify.
      hop_.install(std::move(w->keys.send), std::move(w->keys.receive), opts_.rekey_grace);
      rekey_after_messages_ = w->rekey_after_messages;
      rekey_after_ = w->rekey_after;
      outcome_ = status{};
    }
  } else if (kind == session::frame::kRefused) {
    auto r = session::decode_refused(body);
    outcome_ = r ? status(r->code, "enrolment refused: " + std::string(status_code_name(r->code)) + ": " + r->reason)
                 : status(status_code::refused, "enrolment refused (unreadable reason)");
  }
  cv_.notify_all();
}

void broker_link::on_error(const session::error_msg& e) {
  bool reenrol = false;
  {
    std::lock_guard lock(mu_);
    if (current_ && !current_->proof_sent() && !challenge_ && e.code != status_code::unknown_agent) {
      // The broker turned this handshake down before it began (one already in
      // progress on this connection, a malformed HELLO): no CHALLENGE will come.
      outcome_ = status(e.code, "broker: " + e.detail);
      cv_.notify_all();
      return;
    }
    reenrol = e.code == status_code::unknown_agent && hop_.send_key() != nullptr && steady::now() - last_enrol_ >= kReenrolDebounce;
  }
  if (reenrol) submit(job::reenrol);
}

void broker_link::on_reconnected() {
  spdlog::info("[{}] reconnected to the broker", opts_.name);
  {
    // The new connection's first unknown_agent must count even within the debounce.
    std::lock_guard lock(mu_);
    last_enrol_ = steady::time_point{};
  }
  (void)send_control(session::control::ping{});
}

void broker_link::on_transport_ok() {
  std::lock_guard lock(mu_);
  transport_refusal_.clear();
}

void broker_link::on_transport_refused(const std::string& why, bool final) {
  bool log = false;
  {
    std::lock_guard lock(mu_);
    if (final && current_ && !outcome_) outcome_ = status{status_code::not_authorised, why};
    else if (final) transport_refusal_ = why;  // for a handshake about to start
    if (steady::now() - last_refusal_log_ >= std::chrono::seconds(10)) {
      last_refusal_log_ = steady::now();
      log = true;
    }
  }
  cv_.notify_all();
  if (log) spdlog::error("[{}] {}", opts_.name, why);
}

void broker_link::tick() {
  bool due;
  {
    std::lock_guard lock(mu_);
    // due_for_rekey is false until the first WELCOME installed keys.
    due = running_ == job::none && pending_job_ == job::none && steady::now() >= next_rekey_attempt_ &&
          rekey_after_messages_ > 0 && hop_.due_for_rekey(rekey_after_messages_, rekey_after_);
  }
  if (due) submit(job::rekey);
}

// ---------------------------------------------------------------- worker thread

status broker_link::handshake() {
  if (opts_.broker_fingerprint.empty())
    spdlog::critical("[{}] enrolling WITHOUT authenticating the broker (insecure_trust_any_broker): anyone on the path "
                     "can pose as it",
                     opts_.name);
  auto hs = std::make_shared<hop_handshake>(key_, suite_, opts_.name, opts_.broker_fingerprint,
                                            token_ ? &*token_ : nullptr);
  if (hs->static_key_failed()) ++static_ecdh_failures_;
  const auto deadline = steady::now() + opts_.connect_timeout;
  std::unique_lock lock(mu_);
  current_ = hs;
  cookie_.reset();
  challenge_.reset();
  outcome_.reset();
  if (!transport_refusal_.empty()) outcome_ = status{status_code::not_authorised, std::exchange(transport_refusal_, {})};
  // However it ends, the handshake is forgotten under the lock (the io thread reads it).
  struct clear_current {
    broker_link& l;
    std::unique_lock<std::mutex>& lock;
    ~clear_current() {
      if (!lock.owns_lock()) lock.lock();
      l.current_.reset();
    }
  } clear{*this, lock};
  lock.unlock();
  if (status st = out_.push({net::to_bytes(session::frame::kHello), hs->hello()}); !st) return st;
  lock.lock();
  // The broker answers a first HELLO with a COOKIE (schemas/protocol.md §3.1); the
  // HELLO that returns it is signed (TPM) and is the one the transcripts cover.
  int cookies = 0;
  result<hop_handshake::proof> proof = status{status_code::timeout, "no CHALLENGE from the broker"};
  for (;;) {
    if (!cv_.wait_until(lock, deadline, [&] { return stopping_ || cookie_ || challenge_ || outcome_; }))
      return {status_code::timeout,
              cookies > 0 ? "no CHALLENGE from the broker"
              : net::is_tcp_endpoint(opts_.broker_endpoint) && !opts_.insecure_plain_tcp
                  ? "no COOKIE from the broker (over CurveZMQ a wrong broker_transport_key looks like this: the "
                    "broker cannot read the handshake and drops it)"
                  : "no COOKIE from the broker"};
    if (stopping_) return {status_code::timeout, "agent stopping"};
    if (outcome_) return *outcome_;
    if (cookie_) {
      const bytes cookie = std::move(*cookie_);
      cookie_.reset();
      // A broker that restarted (or a cookie that aged) answers with a new one; one
      // that never stops is not waited on.
      if (++cookies > kMaxCookies) return {status_code::overloaded, "the broker kept answering COOKIE"};
      lock.unlock();
      auto hello = hs->with_cookie(cookie);  // TPM: the possession signature, no lock held
      if (!hello) return hello.error();
      if (status st = out_.push({net::to_bytes(session::frame::kHello), std::move(*hello)}); !st) return st;
      lock.lock();
      continue;
    }
    const bytes challenge = std::move(*challenge_);
    challenge_.reset();
    lock.unlock();
    proof = hs->on_challenge(challenge);  // TPM: signature and ECDH, no lock held
    lock.lock();
    // A CHALLENGE whose signature does not cover this HELLO may answer an earlier
    // attempt the broker was still working on: wait for this attempt's own.
    if (proof || proof.error().code() != status_code::bad_signature) break;
  }
  if (!proof) return proof.error();
  // Published before PROOF leaves: WELCOME (checked on the io thread) finds the keys.
  hs->keys_ready(std::move(proof->keys));
  lock.unlock();
  if (status st = out_.push({net::to_bytes(session::frame::kProof), std::move(proof->body)}); !st) return st;
  lock.lock();
  if (!cv_.wait_until(lock, deadline, [&] { return stopping_ || outcome_; }))
    return {status_code::timeout, "no WELCOME from the broker"};
  if (stopping_) return {status_code::timeout, "agent stopping"};
  if (outcome_->ok()) {
    last_enrol_ = steady::now();
    // The broker spent the token (or needed none): it is not sent again.
    token_.reset();
  }
  return *outcome_;
}

void broker_link::run() {
  for (;;) {
    job j;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || pending_job_ != job::none; });
      if (stopping_) break;
      j = pending_job_;
      pending_job_ = job::none;
      running_ = j;
    }
    // Whatever throws (a TPM past its deadline, a broken OpenSSL) ends the attempt, not
    // the process: it is reported like any failed attempt.
    auto attempt = [this] {
      try {
        return handshake();
      } catch (const std::exception& e) {
        return status{status_code::tpm_unavailable, e.what()};
      }
    };
    if (j == job::first) {
      status st = attempt();
      std::lock_guard lock(mu_);
      first_result_->set_value(st);
      first_result_.reset();
    } else if (j == job::rekey) {
      status st = attempt();
      if (st) {
        ++hop_rekeys_;
      } else {
        spdlog::warn("[{}] hop rekey failed (keeping the current keys): {}", opts_.name, st.to_string());
        std::lock_guard lock(mu_);
        next_rekey_attempt_ = steady::now() + kRekeyRetry;  // whatever triggered it
      }
    } else {
      // Re-enrolment: the broker no longer knows us. Retried with a back-off until it
      // works or the agent stops.
      bool ok = false;
      for (int n = 1;; ++n) {
        status st = attempt();
        if (st) {
          ok = true;
          break;
        }
        spdlog::warn("[{}] re-enrolment attempt {} failed: {}", opts_.name, n, st.to_string());
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, std::chrono::milliseconds(std::min(2000, 100 * n)), [&] { return stopping_; })) break;
      }
      if (ok) {
        ++reenrolments_;
        spdlog::info("[{}] re-enrolled with the broker", opts_.name);
        if (on_reenrolled_) on_reenrolled_();
      }
    }
    std::lock_guard lock(mu_);
    running_ = job::none;
  }
  std::lock_guard lock(mu_);
  if (first_result_) {
    first_result_->set_value(status{status_code::timeout, "agent stopping"});
    first_result_.reset();
  }
}

}  // namespace agentbus::client
