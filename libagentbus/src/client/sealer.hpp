// sealer.hpp — the send half of the hot path (internal; schemas/envelope.md): an
// envelope's signed part and digest, its signature (the identity's, maybe in the
// TPM; or a Merkle batch root's in tpm-batch mode), its end-to-end MACs (one per
// recipient with a session) and its hop MAC, and its way into the outbound queue,
// alone or in a wire batch.
//
// Threads: direct mode seals on the caller's thread; in batch mode the caller
// prepares the signed part and digest and the batch signer's thread completes the
// envelopes of each signed batch and queues them together (flush_staged).
//
// Thread-safe. It takes the peer-sessions lock (e2e MACs) and the broker link's lock
// (hop MAC) one after the other, never together.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "client/batch_signer.hpp"
#include "client/broker_link.hpp"
#include "client/outbound_queue.hpp"
#include "client/reporter.hpp"
#include "client/seal_hooks.hpp"
#include "crypto/random_id_pool.hpp"

namespace agentbus::client {

class peer_sessions;

// envelope_request: what to seal.
struct envelope_request {
  envelope_type type = envelope_type::data;
  recipient_kind kind = recipient_kind::agent;
  std::string to;
  std::string_view content_type;
  byte_view payload;
  bytes correlation_id;
  std::vector<std::string> e2e_to;  // recipients to MAC for (their sessions must exist)
  bytes message_id;                 // empty: a fresh random id
};

class sealer {
 public:
  sealer(const agent_options& opts, std::shared_ptr<identity_key> key, const suite& my_suite, broker_link& link,
         outbound_queue& out, reporter& rep);
  ~sealer();
  // attach: where end-to-end MACs come from (set once, before any sealing).
  void attach(peer_sessions& sessions) noexcept { sessions_ = &sessions; }
  // start_batching turns tpm-batch mode on (TPM identities): at most max_batch
  // envelopes per root, a batch held open up to `window` for company.
  void start_batching(std::size_t max_batch, std::chrono::microseconds window);
  // stop_batching signs and queues what was submitted, then stops the signer.
  void stop_batching();

  // next_message_id: a fresh random message id (public, from a pool).
  bytes next_message_id() { return message_ids_.next(); }

  // seal signs directly (whatever the mode) and returns the frames of an envelope
  // that travels alone. Session offers and acceptances take this path.
  result<net::frames> seal(const envelope_request& r, const seal_hooks* hooks, bytes* message_id_out = nullptr);
  // seal_and_queue is the path data envelopes take: signed here (direct) or joining
  // the next Merkle batch (batch mode: queued by the signer thread once the root is
  // signed, in submission order; a signing failure reaches on_rejected).
  status seal_and_queue(envelope_request r, std::shared_ptr<const seal_hooks> hooks);
  // queue_sealed queues a sealed envelope and counts it sent.
  status queue_sealed(net::frames f);

  std::uint64_t sent() const noexcept { return sent_.load(); }
  std::uint64_t batch_roots() const noexcept { return batch_roots_.load(); }
  std::uint64_t batched_envelopes() const noexcept { return batched_envelopes_.load(); }

 private:
  struct prepared {
    bytes signed_part;
    bytes digest;  // what the signature (or the batch leaf) covers
  };
  // staged: an envelope of the batch being completed, its MACs but the hop's done.
  struct staged {
    bytes signed_part, digest;
    envelope_auth auth;
    std::shared_ptr<const seal_hooks> hooks;
    bytes message_id;
    std::string to;
    bytes encoded_auth = {};  // the auth part without a hop MAC, as a wire batch carries it
  };
  prepared prepare(const envelope_request& r, const seal_hooks* hooks, bytes* message_id_out);
  envelope_auth authenticate(prepared& p, bytes signature, assurance level, std::optional<batch_proof> proof,
                             const std::vector<std::string>& e2e_to, const seal_hooks* hooks);
  net::frames seal_hop(bytes signed_part, byte_view digest, envelope_auth auth, const seal_hooks* hooks);
  net::frames seal_wire_batch(std::size_t first, std::size_t last);
  void flush_staged();  // the batch signer's thread, once a batch's envelopes are complete

  const agent_options& opts_;
  std::shared_ptr<identity_key> key_;
  const suite suite_;
  const bytes key_id_;
  broker_link& link_;
  outbound_queue& out_;
  reporter& reporter_;
  peer_sessions* sessions_ = nullptr;
  std::atomic<std::uint64_t> next_sequence_;
  crypto::random_id_pool message_ids_;  // message ids: public, random, one RAND_bytes call per 256
  // The batch signer, shared: a caller sealing while the agent stops keeps it alive
  // until its envelope is submitted (stop_batching swaps it out under batcher_mu_).
  std::shared_ptr<batch_signer> batcher() const;
  mutable std::mutex batcher_mu_;
  std::shared_ptr<batch_signer> batcher_;
  std::atomic<std::uint64_t> batch_roots_{0}, batched_envelopes_{0};  // kept once it is gone
  std::vector<staged> staged_;  // the batch signer's thread only
  std::atomic<std::uint64_t> sent_{0};
};

}  // namespace agentbus::client
