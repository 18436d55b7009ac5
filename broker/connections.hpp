// connections.hpp — the agents the broker knows, apart from their connections.
//
// known_agent is who an agent is (name, role, suite, pinned key, TPM facts) and what
// outlives any one connection: its replay window (an envelope from before a
// reconnection stays a replay), its outgoing control sequence, its registry deltas.
// connection is one enrolled ZeroMQ connection (routing id) of an agent: its hop
// session and what it asked for on it (subscriptions, membership watches).
//
// Lifecycle: a connection is opened when an enrolment completes (PROOF verified and
// WELCOME sent) and closed at `bye`, when a send finds the peer gone, when the agent
// enrols on another connection or another agent takes this routing id, and at
// revocation. Closing detaches the connection first (its agent is offline from then
// on, so nothing the hook sends goes to it), then calls the close hook with it (the
// broker leaves its topics and tells their watchers) and forgets it. A re-enrolment on the same
// connection (a hop rekey) keeps it: subscriptions and watches survive.
//
// Records of agents gone offline are kept (a peer lookup or an admin query may still
// ask for them; the registry holds what must outlive them) but bounded: the event
// loop's sweep forgets the longest-offline ones beyond a limit (forget_offline), so
// names that enrol and leave cannot grow the broker (issue 12, case 6).
//
// Owned by the broker's event-loop thread; not thread-safe. Addresses of known
// agents and connections are stable while they exist.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agentbus/crypto.hpp"
#include "agentbus/suite.hpp"
#include "session/replay_window.hpp"
#include "session/session_keys.hpp"
#include "session/verifier.hpp"
#include "transport.hpp"

namespace agentbus::broker {

struct connection;

struct known_agent {
  std::string name, role;
  suite agent_suite;
  std::optional<crypto::public_key> key;
  bytes key_id;
  protection key_protection = protection::tpm;
  bool tpm_simulator = false;
  std::string tpm_manufacturer;
  bytes evidence;                   // HELLO's TPM evidence when it held (handed to peers with the key)
  session::replay_window window;
  std::uint64_t ctrl_out = 1;       // never reset while the broker runs
  connection* conn = nullptr;       // set while online
  // Registry deltas kept here, so counting an envelope allocates nothing.
  std::map<std::string, std::uint64_t, std::less<>> traffic_to;  // recipient → envelopes since the last flush
  std::int64_t seen_ms = 0;
  bool seen_dirty = false;
  std::uint64_t offline_ticket = 0;  // its place among offline records (0: online, or never connected)
  // Federation (federation.hpp): `home` is the broker of the federation it lives at when
  // that is another one ("" for this broker's own agents), as the directory says;
  // remote_present: its record says online and that broker is live, so its
  // remote_subscriptions are in the topic table.
  std::string home;
  bool remote_online = false;   // its record says online
  bool remote_present = false;
  std::set<std::string, std::less<>> remote_subscriptions;
  std::map<std::string, std::string, std::less<>> remote_queue_groups;  // of those, the ones in a queue group
  std::uint64_t directory_written_ms = 0;  // its last directory record's: older ones are not followed

  bool online() const noexcept { return conn != nullptr; }
  bool remote() const noexcept { return !home.empty(); }
  // reachable: a recipient the broker can hand an envelope to, here or at its broker.
  bool reachable() const noexcept { return conn != nullptr || (remote() && remote_present); }
  // subscriptions: what it follows (its connection's, or its record's when remote);
  // nullptr when neither.
  const std::set<std::string, std::less<>>* subscriptions() const noexcept;
  // facts: the verifier's view of this agent as a sender.
  session::sender_facts facts() const noexcept {
    return {name, role, &agent_suite, key ? &*key : nullptr, key_id, key_protection};
  }
};

struct connection {
  bytes route;
  known_agent* agent = nullptr;
  session::session_state hop;  // send: broker→agent, receive: agent→broker
  session::control_sequence ctrl_in;
  std::set<std::string, std::less<>> subscriptions;
  std::map<std::string, std::string, std::less<>> queue_groups;  // subscription → its queue group, for those in one
  std::set<std::string, std::less<>> watching;  // topics whose membership it follows
  // Bytes the broker holds for it in ZeroMQ's queue (ZeroMQ's I/O thread moves what it
  // writes out to `released`): at most max_queued_bytes_per_agent (outbox).
  std::shared_ptr<queue_meter> queued = std::make_shared<queue_meter>();
  // Since when bytes have waited for it without any being written out: a consumer that
  // does not read (drop_stuck_consumer_seconds; the event loop's sweep keeps these).
  std::optional<std::chrono::steady_clock::time_point> stuck_since;
  std::uint64_t released_at_sweep = 0;
  int transport_fd = -1;  // the socket it enrolled over (libzmq's; -1 unknown): the connection guard's handle
};

class connections {
 public:
  // close_hook runs for a connection being closed: already detached from its agent
  // (known_agent::conn is null), its `agent` still names whose it was.
  using close_hook = std::function<void(connection&)>;
  void on_close(close_hook hook) { on_close_ = std::move(hook); }
  // open_hook runs for a connection just opened (not for a hop rekey on the same one).
  using open_hook = std::function<void(connection&)>;
  void on_open(open_hook hook) { on_open_ = std::move(hook); }

  known_agent* find(std::string_view name) noexcept;
  const known_agent* find(std::string_view name) const noexcept;
  // remember returns the record of `name`, creating an empty one.
  known_agent& remember(const std::string& name);
  connection* by_route(const bytes& route) noexcept;

  // open attaches `a` to `route` and returns the connection: the same one when `a` is
  // already connected there (a hop rekey), else a new one, after closing whatever
  // held `route` and `a`'s connection elsewhere.
  connection& open(known_agent& a, const bytes& route);
  // close ends `a`'s connection, if any.
  void close(known_agent& a);

  std::size_t known_count() const noexcept { return agents_.size(); }
  std::size_t online_count() const noexcept { return routes_.size(); }

  // forget_offline forgets the records of the agents offline longest until at most
  // `keep` offline records remain. A record with registry deltas not yet flushed
  // (seen_dirty) is kept for the next sweep. Returns how many were forgotten.
  std::size_t forget_offline(std::size_t keep);
  // park lets forget_offline forget `a` (not connected here: an agent homed at another
  // broker that is offline there, or whose broker is down) like any offline record;
  // unpark keeps it (present at its broker). Both are no-ops when there is nothing to do.
  void park(known_agent& a);
  void unpark(known_agent& a);

  // for_each_online calls f for every agent online when it starts; f may close
  // connections (a send that finds a peer gone does).
  template <typename F>
  void for_each_online(F&& f) {
    std::vector<known_agent*> online;
    online.reserve(routes_.size());
    for (auto& [route, c] : routes_) online.push_back(c->agent);
    for (known_agent* a : online) f(*a);
  }
  // for_each_known calls f for every record, online or not (f must not add or forget
  // records; it may close connections).
  template <typename F>
  void for_each_known(F&& f) {
    for (auto& [name, a] : agents_) f(a);
  }
  template <typename F>
  void for_each_known_const(F&& f) const {
    for (const auto& [name, a] : agents_) f(a);
  }

 private:
  std::map<std::string, known_agent, std::less<>> agents_;
  std::map<bytes, std::unique_ptr<connection>> routes_;
  std::map<std::uint64_t, std::string> offline_;  // ticket (order of going offline) → name
  std::uint64_t next_ticket_ = 1;
  close_hook on_close_;
  open_hook on_open_;
};

}  // namespace agentbus::broker
