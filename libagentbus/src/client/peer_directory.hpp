// peer_directory.hpp — who the agent's peers are (internal; schemas/protocol.md §6):
// each peer's role, suite and identity key, learned from the broker (`peer` lookups)
// and checked against the local policy (role known, key of the role's type, policy
// pin, revocation), then pinned for the life of the process.
//
// A failed lookup is remembered for kFailureTtl (envelopes from that sender are
// refused with its reason meanwhile), then asked again: the peer may have been
// re-enrolling. A revocation the broker announces is remembered for good. A lookup
// is asked once at a time per name; one that could not be sent is not counted as
// asked, so the next attempt sends it.
//
// Thread-safe; its mutex is a leaf. Entries are immutable and shared: the receive
// path and every send take a pointer, not a copy.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agentbus/agent.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/policy.hpp"
#include "session/control.hpp"
#include "session/verifier.hpp"

namespace agentbus::client {

// peer_endorsement: the endorsement key and the AK name of a peer whose role our own
// policy requires attested, from evidence that passed our checks. Sessions with the
// peer carry a credential of ours for that AK until its TPM has proven, by a session
// key depending on the credential's secret, that the AK sits next to the EK
// (schemas/protocol.md §4.3): the broker's activation is not taken on its word.
struct peer_endorsement {
  crypto::public_key ek;
  bytes ak_name;
};

struct peer_info {
  std::string name, role;
  suite peer_suite;
  std::optional<crypto::public_key> key;
  bytes key_id;
  protection key_protection = protection::tpm;
  std::optional<peer_endorsement> endorsement;  // set iff our policy requires its role attested
  // attestation_id: what a proof of its AK is for — key_id, then the AK's name when
  // endorsed (a proof holds for this key and this AK only).
  bytes attestation_id;

  session::sender_facts facts() const noexcept {
    return {name, role, &peer_suite, key ? &*key : nullptr, key_id, key_protection};
  }
};

class peer_directory {
 public:
  static constexpr std::chrono::seconds kFailureTtl{5};
  // An unanswered lookup is asked again after this long.
  static constexpr std::chrono::seconds kAskAgain{5};

  using send_fn = std::function<status(const session::control::request&)>;
  peer_directory(const agent_options& opts, const policy& pol, send_fn send) : opts_(opts), pol_(pol), send_(std::move(send)) {}

  // check is the receive path's question: the pinned peer; or the reason its lookup
  // failed less than kFailureTtl ago (refuse its envelopes); or neither (ask, and
  // hold its envelopes until the answer).
  struct check_result {
    std::shared_ptr<const peer_info> peer;
    std::optional<status> failure;
  };
  check_result check(std::string_view name);
  // ask sends a lookup of `name` unless one is out already.
  status ask(const std::string& name);
  // resolve is a sender's question: the pinned peer, asking the broker and waiting
  // up to session_timeout (a fresh send asks again after an earlier failure).
  result<std::shared_ptr<const peer_info>> resolve(const std::string& name);
  // find: the pinned peer, or nullptr, without asking.
  std::shared_ptr<const peer_info> find(std::string_view name) const;

  // io thread: the broker's answer; an operator's revocation; a key change (the
  // pinned key and any cached failure are forgotten: the next use looks it up again).
  void on_answer(const session::control::peer_answer& a);
  void revoked(const std::string& name);
  void forget(const std::string& name);
  // stop wakes every waiter (the agent is stopping).
  void stop();

 private:
  using steady = std::chrono::steady_clock;
  void fail(const std::string& name, status why, steady::time_point at);
  const agent_options& opts_;
  const policy& pol_;
  send_fn send_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<const peer_info>, std::less<>> peers_;
  struct failure {
    status why;
    steady::time_point at;  // far in the future for a revocation
  };
  std::map<std::string, failure, std::less<>> failures_;
  std::map<std::string, steady::time_point, std::less<>> asked_;
};

}  // namespace agentbus::client
