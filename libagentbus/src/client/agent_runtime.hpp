// agent_runtime.hpp — what an `agentbus::agent` is made of (internal): its parts, the
// thread each runs on, and the one lock order. agent.cpp is the facade over it.
//
// Parts (one owner for each piece of state):
//   outbound_queue   sealed messages on their way to the broker
//   broker_link      the hop session, control sequence numbers, every enrolment
//                    (first, hop rekey, re-enrolment) on its own worker thread
//   peer_directory   peers' roles and keys, pinned from the broker's answers
//   peer_sessions    end-to-end sessions: offers, acceptances, crossing rule, rekeys
//   sealer           the send half of the hot path (signature, MACs, wire batches)
//   receiver         the receive half: the protocol's enforcement order, again
//   subscriptions    topics, their handlers and member lists; restored after re-enrolment
//   requests         requests waiting for their replies
//   dispatcher       the dispatch thread: handlers and on_rejected reports; a second
//                    dispatcher runs the session jobs
//   reporter         every refusal: counter, rate-limited log line, on_rejected
//
// Threads:
//   caller threads   send/publish/request/subscribe: resolve peers, set sessions up,
//                    seal direct envelopes (the identity signs, maybe in the TPM)
//   io thread        owns the DEALER socket and the connection monitor: sends the
//                    outbound queue, receives, runs every receive-side check
//                    (software only, never the TPM), hands handshake frames to the
//                    broker link, installs WELCOME's keys. Verified messages wait
//                    for room in the dispatcher; while max_pending of them wait it
//                    stops reading (flow control: nothing is dropped)
//   dispatch thread  handlers and on_rejected reports; a handler's reply is sealed here
//                    (a TPM signature in direct mode)
//   session thread   answers offers, completes acceptances, sends re-offers (they sign
//                    and may use the TPM). Not the dispatch thread: a handler that sends
//                    to a peer it has no session with waits for this thread, which
//                    would otherwise be queued behind that very handler
//   link worker      enrolments (TPM signature and ECDH); restores the subscriptions
//                    after a re-enrolment
//   batch signer     tpm-batch mode: signs Merkle roots, completes and queues batches
//
// Lock order (a thread holding one may take only those after it):
//   peer_sessions  →  outbound_queue  →  broker_link (hop)
// Every other lock is a leaf, never held while another is taken: peer_directory,
// subscriptions, requests, both dispatchers, reporter (and its log limiter),
// handlers_mu, the receive hook's, outbound_queue's recording lock, the batch
// signer's, and those inside the library's primitives (message-id pool, prepared
// HMAC contexts). The identity below may hold its own lock while it creates a static
// ECDH key in the TPM; no part's lock is held when it is called.
// No lock is held while a handler runs, while the TPM works, or while the io thread
// polls.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "client/broker_link.hpp"
#include "client/dispatcher.hpp"
#include "client/outbound_queue.hpp"
#include "client/peer_directory.hpp"
#include "client/peer_sessions.hpp"
#include "client/receiver.hpp"
#include "client/reporter.hpp"
#include "client/requests.hpp"
#include "client/sealer.hpp"
#include "client/subscriptions.hpp"
#include "net/connection_monitor.hpp"

namespace agentbus::client {

struct agent_runtime {
  agent_runtime(agent_options options, std::shared_ptr<identity_key> identity, std::shared_ptr<const policy> pol,
                const suite& my_suite);
  ~agent_runtime();

  // Set once, before any thread starts; read-only afterwards.
  const agent_options opts;
  const std::shared_ptr<identity_key> key;
  const std::shared_ptr<const policy> pol;
  const suite my_suite;
  const std::string role;

  // The parts, in construction order (each refers to those above it; the dispatchers'
  // wake-up callbacks and the sealer's end-to-end MACs reach parts built after them,
  // used only once every part exists).
  dispatcher jobs;
  dispatcher session_jobs;
  reporter rejections;
  outbound_queue outbound;
  broker_link link;
  requests pending_requests;
  subscriptions topics;
  peer_directory peers;
  sealer seal;
  peer_sessions sessions;
  receiver receive;

  // Application handlers (handlers_mu).
  std::mutex handlers_mu;
  message_handler on_message;
  request_handler on_request;

  // io thread state.
  zmq::context_t ctx{1};
  zmq::socket_t dealer{ctx, zmq::socket_type::dealer};
  std::optional<net::connection_monitor> monitor;  // declared after the socket it watches: closed first
  std::atomic<bool> stopping{false};
  std::thread io_thread;
  // Testing (agentbus_testing): an edit of every message as it arrives, before any
  // check. The flag keeps the lock off the receive path when none is set.
  std::atomic<bool> has_received_edit{false};
  std::mutex received_edit_mu;
  std::function<void(net::frames&)> received_edit;

  // io_loop.cpp
  void io_loop();
  void send_queued(bool& blocked);
  void handle_frames(net::frames& f);
  void handle_control(const net::frames& f);
  void handle_error(const net::frames& f);
  // deliver_burst: verified messages to the dispatcher (replies to their waiters at once).
  void deliver_burst(std::vector<message>& burst);
  void deliver_reply(message&& m);
  void run_delivery(const message& m);
  // send_envelope: a direct envelope (data, request, reply) after its session.
  status send_envelope(envelope_type type, const std::string& to, std::string_view content_type, byte_view payload,
                       const bytes& correlation_id, std::shared_ptr<const seal_hooks> hooks = nullptr,
                       bytes message_id = {});
};

}  // namespace agentbus::client
