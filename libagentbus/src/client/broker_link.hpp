// broker_link.hpp — the agent's hop to the broker (internal): the hop session's keys,
// the control channel's sequence numbers, and every enrolment: the first one, hop
// rekeys and re-enrolment after a broker restart (schemas/protocol.md §3, §9.1, §10).
//
// Enrolments run on the link's own worker thread, never the io thread: they sign
// and use the TPM, which can take as long as a TPM takes. The io thread only hands
// the worker the handshake's frames (CHALLENGE, REFUSED) and goes on receiving and
// sending; everything else that arrives meanwhile is handled as usual, under the
// hop keys in force. WELCOME is the exception: it is checked and its keys installed
// on the io thread itself, the moment it arrives (a MAC check; the worker derived
// the keys before PROOF left), so that no envelope the broker MACed under the new
// keys can be read before they are installed.
//
// Thread-safe. Its mutex guards the hop session and the handshake in progress; it is
// the innermost lock of the agent (taken after the outbound queue's: control
// messages are numbered and MACed in queue order).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "client/hop_handshake.hpp"
#include "client/outbound_queue.hpp"
#include "session/control.hpp"
#include "session/replay_window.hpp"
#include "session/session_keys.hpp"
#include "session/verifier.hpp"

namespace agentbus::client {

class broker_link final : public session::hop_receiver {
 public:
  broker_link(const agent_options& opts, identity_key& key, const suite& my_suite, outbound_queue& out);
  ~broker_link();
  broker_link(const broker_link&) = delete;
  broker_link& operator=(const broker_link&) = delete;

  // start runs the worker; on_reenrolled runs on it after each re-enrolment (the
  // agent restores its subscriptions and membership watches).
  void start(std::function<void()> on_reenrolled);
  void stop();
  // enrol_first runs the first enrolment (the agent's constructor) and waits for it.
  // Throws enrolment_error (refused, unreachable, a broker that fails its proof).
  void enrol_first();

  // ---- io thread
  // on_handshake: CHALLENGE, WELCOME or REFUSED from the broker.
  void on_handshake(std::string_view kind, const bytes& body);
  // on_error: an ERR. unknown_agent (the broker does not know this connection: it
  // restarted) starts a re-enrolment, at most one per 2 s.
  void on_error(const session::error_msg& e);
  // on_reconnected: the connection was replaced; one ping makes a restarted broker
  // answer unknown_agent at once.
  void on_reconnected();
  // on_transport_refused: the broker's transport turned the connection away during
  // the ZMTP handshake (connection_monitor::take_refusal), logged (rate-limited). A
  // final refusal ends the enrolment in progress, or the next one unless a transport
  // handshake succeeds first (on_transport_ok), with not_authorised and `why` at once
  // rather than at its timeout.
  void on_transport_refused(const std::string& why, bool final);
  void on_transport_ok();
  // tick starts a hop rekey when the hop session is due for one.
  void tick();

  // ---- any thread
  // with_hop runs f on the hop session under the link's lock (sealers MAC with its
  // send key, the receiver checks with its receive keys).
  template <typename F>
  decltype(auto) with_hop(F&& f) {
    std::lock_guard lock(mu_);
    return f(hop_);
  }
  // The hop's receive side (session::hop_receiver), each check under the link's lock.
  status verify_envelope(byte_view digest, const envelope_auth& auth) const override;
  status verify_batch(byte_view session_id, std::span<const wire_batch_item> items, byte_view tag) const override;
  status verify_control(byte_view session_id, byte_view body, byte_view tag) const;
  // send_control numbers, MACs and queues a control message, in queue order.
  status send_control(const session::control::request& r);
  // send_control_body: the same with the body `encode(seq)` makes (send_control's,
  // and a test's that misbehaves on purpose).
  status send_control_body(const std::function<bytes(std::uint64_t seq)>& encode);
  // accept_control: the receive side's replay check of a verified control message.
  bool accept_control(byte_view session_id, std::uint64_t seq);

  std::uint64_t reenrolments() const noexcept { return reenrolments_.load(); }
  std::uint64_t hop_rekeys() const noexcept { return hop_rekeys_.load(); }
  std::uint64_t static_ecdh_failures() const noexcept { return static_ecdh_failures_.load(); }

 private:
  enum class job { none, first, rekey, reenrol };
  void run();
  // handshake runs one enrolment on the worker thread; ok when WELCOME installed keys.
  status handshake();
  void submit(job j);

  const agent_options& opts_;
  std::optional<secret_bytes> token_;  // opts_.enrolment_token, decoded; worker thread; dropped once enrolled
  identity_key& key_;
  const suite suite_;
  outbound_queue& out_;
  std::function<void()> on_reenrolled_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  session::session_state hop_;  // has a send key once enrolled
  std::uint64_t rekey_after_messages_ = 0;
  std::chrono::seconds rekey_after_{0};
  session::control_sequence ctrl_in_;              // io thread only
  std::atomic<std::uint64_t> ctrl_seq_out_{1};     // never reset: monotonic across sessions
  // The handshake in progress (worker thread) and what the io thread handed it.
  std::shared_ptr<hop_handshake> current_;
  std::optional<bytes> cookie_;     // the latest COOKIE for the handshake in progress
  std::optional<bytes> challenge_;
  std::optional<status> outcome_;  // set when it ended: ok (WELCOME installed) or why not
  std::string transport_refusal_;  // a transport refusal seen while no handshake ran
  std::chrono::steady_clock::time_point last_refusal_log_{};
  job pending_job_ = job::none;
  job running_ = job::none;
  bool stopping_ = false;
  std::optional<std::promise<status>> first_result_;
  std::chrono::steady_clock::time_point last_enrol_{};
  std::chrono::steady_clock::time_point next_rekey_attempt_{};
  std::atomic<std::uint64_t> reenrolments_{0}, hop_rekeys_{0}, static_ecdh_failures_{0};
  std::thread worker_;
};

}  // namespace agentbus::client
