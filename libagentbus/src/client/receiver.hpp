// receiver.hpp — the receive half of the hot path (internal; schemas/protocol.md
// §8.2): every envelope and wire batch from the broker checked again, in the
// protocol's one enforcement order (session/verifier.hpp) with the receiver's hooks:
// the sender is the peer pinned in the directory, the ACL is this agent's policy
// and subscriptions, and the end-to-end MAC is checked under the peer session.
// Never trusting the broker.
//
// Envelopes that cannot be decided yet are held, bounded by max_pending (past it,
// each is refused `overloaded`, reported): those whose sender's key is being looked
// up (parked), and those whose end-to-end key a queued session job is about to
// install (awaiting a session). Every refusal goes to the reporter.
//
// Verified messages wait here for room in the dispatcher (flush hands over no more
// than it has): while max_pending of them wait, the io thread stops reading. Replies
// do not wait: they go to their request at once (a handler may be the one waiting).
//
// io thread only (no lock of its own); it takes the broker link's lock for hop MACs
// and the peer-sessions lock for end-to-end MACs, one at a time.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/policy.hpp"
#include "client/broker_link.hpp"
#include "client/peer_directory.hpp"
#include "client/peer_sessions.hpp"
#include "client/reporter.hpp"
#include "client/subscriptions.hpp"
#include "net/zmq_util.hpp"
#include "session/checks.hpp"
#include "session/verifier.hpp"

namespace agentbus::client {

// kMaxReceivedFrameBytes: ZeroMQ drops a larger frame from the broker (and the
// connection): the DEALER's ZMQ_MAXMSGSIZE.
inline constexpr std::size_t kMaxReceivedFrameBytes = 2u << 20;

class receiver {
 public:
  // deliver receives a burst of verified messages for the handlers (one dispatcher
  // hand-off); on_reply each verified reply, at once.
  using deliver_fn = std::function<void(std::vector<message>&)>;
  using reply_fn = std::function<void(message&&)>;
  receiver(const agent_options& opts, const policy& pol, const std::string& my_role, broker_link& link,
           peer_directory& peers, peer_sessions& sessions, subscriptions& subs, reporter& rep, deliver_fn deliver,
           reply_fn on_reply);

  // on_envelope / on_wire_batch: ENV / BATCH frames (the kind first).
  void on_envelope(const net::frames& f);
  void on_wire_batch(const net::frames& f);
  // retry checks again what waits: parked envelopes whose sender is now known (or
  // known bad), and envelopes whose session job has run.
  void retry();
  // flush hands at most `room` of the verified messages waiting, oldest first.
  void flush(std::size_t room);
  // held: verified messages waiting for the dispatcher.
  std::size_t held() const noexcept { return held_.size(); }

  std::uint64_t received() const noexcept { return received_.load(); }
  // unaddressed: topic envelopes without a MAC for this agent that arrived just after
  // it subscribed (sealed before their publisher knew of it): dropped, not refused.
  std::uint64_t unaddressed() const noexcept { return unaddressed_.load(); }

 private:
  class receiver_hooks;
  struct awaiting {
    session::opened_envelope envelope;
    bytes signed_part;
    std::shared_ptr<const peer_info> peer;
  };
  // handle_envelope / handle_batch: false when the message was parked.
  bool handle_envelope(const net::frames& f);
  bool handle_batch(const net::frames& f);
  // check: steps 5-10 and delivery of one opened envelope from `peer`.
  void check(session::opened_envelope& e, const bytes& signed_part, const std::shared_ptr<const peer_info>& peer);
  void deliver(session::opened_envelope& e, const bytes& signed_part, const std::shared_ptr<const peer_info>& peer);
  void park(const net::frames& f, std::size_t first_signed_part);
  void refuse(const status& why, std::string sender, std::string recipient, bytes message_id);

  const agent_options& opts_;
  const policy& pol_;
  const std::string& my_role_;
  broker_link& link_;
  peer_directory& peers_;
  peer_sessions& sessions_;
  subscriptions& subs_;
  reporter& reporter_;
  deliver_fn deliver_;
  reply_fn on_reply_;
  session::root_cache roots_{4096};  // verified batch roots
  session::verifier verifier_;
  std::map<std::string, session::replay_window, std::less<>> windows_;  // per sender
  std::deque<net::frames> parked_;
  std::deque<awaiting> awaiting_session_;
  std::deque<message> held_;
  std::atomic<std::uint64_t> received_{0}, unaddressed_{0};
};

}  // namespace agentbus::client
