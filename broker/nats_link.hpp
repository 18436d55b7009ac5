// nats_link.hpp — the broker's client of the federation's NATS cluster: one
// connection, the broker's inbox subscription, publishes to other brokers, and the
// directory in a JetStream key-value bucket (schemas/federation.md).
//
// Threads (docs/architecture.md):
//   - libnats's own: the connection's reader and flusher, and the inbox
//     subscription's delivery thread, which puts each message on the inbound queue;
//   - the directory writer: signs records with the broker's identity (a TPM
//     signature waits on the library's TPM worker, never on the event loop) and writes
//     them by compare-and-set;
//   - the heartbeat: this broker's own record (its liveness) every beat, apart from the
//     writer so that no record write holds it back;
//   - the directory watcher: reads the bucket's updates, verifies each record's
//     broker signature against the configured fingerprints, and queues what verifies.
// The event loop drains the queue when fd() is readable. Nothing it calls blocks on
// the network: publish() copies into libnats's buffer, writes go to the writer's
// queue. Locks: the inbound queue's and the writer's are leaves, never nested.
//
// Budgets: the inbound queue holds at most kMaxInboundMessages and kMaxInboundBytes;
// beyond them libnats's own pending limits drop, counted
// (federation_inbound_dropped_total) and logged: NATS core is at-most-once, and a
// broker that cannot keep up loses what it cannot hold, where an operator sees it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "broker_config.hpp"
#include "federation_wire.hpp"
#include "metrics.hpp"

namespace agentbus::broker {

class nats_link {
 public:
  static constexpr std::size_t kMaxInboundMessages = 65536;
  static constexpr std::size_t kMaxInboundBytes = 256u << 20;

  // A message on this broker's inbox.
  struct inbox_message {
    std::string subject;
    bytes data;
  };
  // A directory record whose signature verified (or a deletion), in bucket order.
  struct directory_update {
    std::string key;
    std::uint64_t revision = 0;
    bool deleted = false;
    // Checked: signed by the broker it names as writer, which the configuration lists
    // with that key's fingerprint; its key ("a.<name>") agrees with its fields.
    std::variant<std::monostate, federation_wire::agent_record, federation_wire::broker_record,
                 federation_wire::revocation_record>
        record;  // monostate when deleted
  };
  // A write of this broker's agent record lost to another broker's (a name enrolled at
  // two brokers at once: the first write wins, schemas/federation.md §4).
  struct claim_lost {
    std::string name;
    std::string holder;
  };
  // The connection to NATS came or went.
  struct link_state {
    bool connected = false;
  };
  using event = std::variant<inbox_message, directory_update, claim_lost, link_state>;

  // Connects in the background (a NATS cluster that is down does not stop the broker:
  // its local agents are served, and remote ones are unreachable until it is back).
  // Throws for a configuration libnats refuses (a seed or certificate file it cannot
  // read).
  nats_link(const broker_config& cfg, const policy& pol, std::shared_ptr<identity_key> identity, metrics& m);
  ~nats_link();
  nats_link(const nats_link&) = delete;
  nats_link& operator=(const nats_link&) = delete;

  int fd() const noexcept;
  std::vector<event> take();

  // publish sends `data` on `subject` (copied into libnats's buffer; sent when
  // connected, or within its reconnect buffer while reconnecting). Not ok: the
  // connection is closed or its buffer is full (overloaded), or the payload is over
  // the server's limit (too_large).
  status publish(const std::string& subject, byte_view data);

  // write_agent queues this broker's record of a local agent. `take_over_from`: a
  // broker whose record the write may replace although it says online (the event
  // loop found that broker down); empty: only this broker's own records and offline
  // ones are replaced.
  void write_agent(federation_wire::agent_record r, std::string take_over_from = {});
  void write_revocation(federation_wire::revocation_record r);

  bool connected() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace agentbus::broker
