#include "client/sealer.hpp"

#include <spdlog/spdlog.h>

#include "client/peer_sessions.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"
#include "session/replay_window.hpp"

namespace agentbus::client {
namespace {
std::uint64_t micros_now() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}
static_assert(crypto::random_id_pool::kIdSize == kMessageIdSize);
}  // namespace

sealer::sealer(const agent_options& opts, std::shared_ptr<identity_key> key, const suite& my_suite, broker_link& link,
               outbound_queue& out, reporter& rep)
    : opts_(opts),
      key_(std::move(key)),
      suite_(my_suite),
      key_id_(key_->public_key().fingerprint()),
      link_(link),
      out_(out),
      reporter_(rep),
      // Sequence numbers start at the start time in microseconds: a restarted agent
      // continues above everything it sent before (schemas/protocol.md §9.3).
      next_sequence_(micros_now()) {}

sealer::~sealer() { stop_batching(); }

void sealer::start_batching(std::size_t max_batch, std::chrono::microseconds window) {
  auto b = std::make_shared<batch_signer>(key_, max_batch, window, [this] {
    flush_staged();
    std::shared_ptr<batch_signer> self = batcher();
    if (self) {
      batch_roots_ = self->batches();
      batched_envelopes_ = self->envelopes();
    }
  });
  std::lock_guard lock(batcher_mu_);
  batcher_ = std::move(b);
}

std::shared_ptr<batch_signer> sealer::batcher() const {
  std::lock_guard lock(batcher_mu_);
  return batcher_;
}

void sealer::stop_batching() {
  std::shared_ptr<batch_signer> b;
  {
    std::lock_guard lock(batcher_mu_);
    b.swap(batcher_);
  }
  if (!b) return;
  b.reset();  // signs and queues what was submitted (unless a sealer still holds it: then at its release)
}

// 1. Header and its canonical bytes: these exact bytes are hashed, sent and verified.
// 2. Digest in software (TPMs lack SHA-3) under the role's hash; the TPM signs it, or
// the batch root.
sealer::prepared sealer::prepare(const envelope_request& r, const seal_hooks* hooks, bytes* message_id_out) {
  envelope_header h;
  h.type = r.type;
  h.message_id = r.message_id.empty() ? message_ids_.next() : r.message_id;
  h.correlation_id = r.correlation_id;
  h.sender = opts_.name;
  h.to_kind = r.kind;
  h.to = r.to;
  h.sequence = next_sequence_++;
  h.timestamp_ms = session::now_ms();
  h.suite = suite_.name;
  h.content_type = std::string(r.content_type);
  h.payload.assign(r.payload.begin(), r.payload.end());
  if (hooks) hooks->edit_header(h);
  if (message_id_out) *message_id_out = h.message_id;
  prepared p;
  p.signed_part = encode_signed_part(h);
  const auto forced = hooks ? hooks->digest_hash() : std::nullopt;
  p.digest = envelope_digest(forced.value_or(suite_.envelope_hash), p.signed_part);
  return p;
}

// 3.-4. The auth part (signature, batch proof) and the end-to-end MACs.
envelope_auth sealer::authenticate(prepared& p, bytes signature, assurance level, std::optional<batch_proof> proof,
                                   const std::vector<std::string>& e2e_to, const seal_hooks* hooks) {
  if (hooks) {
    bytes before = p.signed_part;
    hooks->edit_after_signing(p.signed_part);
    if (p.signed_part != before) p.digest = envelope_digest(suite_.envelope_hash, p.signed_part);
  }
  envelope_auth auth;
  auth.level = level;
  auth.key_id = key_id_;
  auth.signature = std::move(signature);
  auth.batch = std::move(proof);
  if (hooks) hooks->edit_auth(auth);
  if (!(hooks && hooks->omit_e2e_macs()) && !e2e_to.empty() && sessions_ != nullptr)
    sessions_->add_macs(auth, p.digest, e2e_to);
  return auth;
}

// 5. The hop MAC and the frames of an envelope that travels alone.
net::frames sealer::seal_hop(bytes signed_part, byte_view digest, envelope_auth auth, const seal_hooks* hooks) {
  if (!(hooks && hooks->omit_hop_mac())) {
    link_.with_hop([&](session::session_state& hop) {
      const session::mac_key* k = hop.send_key();
      if (k == nullptr) return;  // not enrolled: the broker refuses it, and says so
      auth.hop_mac = session_mac{"", k->session_id, session::hop_tag(*k, digest, auth)};
      hop.count_sent();
    });
  }
  return net::frames{net::to_bytes(session::frame::kEnvelope), std::move(signed_part), encode_auth_part(auth)};
}

result<net::frames> sealer::seal(const envelope_request& r, const seal_hooks* hooks, bytes* message_id_out) {
  prepared p = prepare(r, hooks, message_id_out);
  auto sig = key_->sign_digest(p.digest);
  if (!sig) return sig.error();
  const assurance level = key_->key_protection() == protection::tpm ? assurance::tpm : assurance::software;
  envelope_auth auth = authenticate(p, std::move(sig).value(), level, std::nullopt, r.e2e_to, hooks);
  return seal_hop(std::move(p.signed_part), p.digest, std::move(auth), hooks);
}

status sealer::queue_sealed(net::frames f) {
  status st = out_.push(std::move(f));
  if (st) ++sent_;
  return st;
}

status sealer::seal_and_queue(envelope_request r, std::shared_ptr<const seal_hooks> hooks) {
  const std::shared_ptr<batch_signer> batcher_now = batcher();
  if (!batcher_now) {
    auto frames = seal(r, hooks.get());
    if (!frames) return frames.error();
    return queue_sealed(std::move(frames).value());
  }
  bytes id;
  prepared p = prepare(r, hooks.get(), &id);
  bytes digest = p.digest;
  batcher_now->submit(std::move(digest), [this, p = std::move(p), e2e_to = std::move(r.e2e_to), hooks = std::move(hooks),
                                       to = std::move(r.to), id](const result<bytes>& sig, batch_proof proof) mutable {
    if (!sig) {
      // The sender is told, as for any refusal; nothing is sent unsigned.
      reporter_.report({"sender", sig.error(), opts_.name, to, id});
      return;
    }
    envelope_auth auth = authenticate(p, sig.value(), assurance::tpm_batch, std::move(proof), e2e_to, hooks.get());
    staged_.push_back({std::move(p.signed_part), std::move(p.digest), std::move(auth), std::move(hooks), id, to});
  });
  return {};
}

// seal_wire_batch: staged envelopes [first, last) as one multipart message under one
// hop MAC (schemas/envelope.md §7.3).
net::frames sealer::seal_wire_batch(std::size_t first, std::size_t last) {
  std::vector<wire_batch_item> items;
  items.reserve(last - first);
  for (std::size_t i = first; i < last; ++i) items.push_back({staged_[i].digest, &staged_[i].auth});
  net::frames out;
  out.reserve(3 + 2 * (last - first));
  out.push_back(net::to_bytes(session::frame::kWireBatch));
  link_.with_hop([&](session::session_state& hop) {
    const session::mac_key* k = hop.send_key();
    out.push_back(k ? k->session_id : bytes(session::kSessionIdSize, 0));
    out.push_back(k ? session::wire_batch_tag(*k, items) : bytes{});
    for (std::size_t i = first; i < last; ++i) hop.count_sent();
  });
  for (std::size_t i = first; i < last; ++i) {
    out.push_back(std::move(staged_[i].signed_part));
    out.push_back(std::move(staged_[i].encoded_auth));
  }
  for (std::size_t i = first; i < last; ++i)
    if (staged_[i].hooks) staged_[i].hooks->edit_wire_batch(out);
  return out;
}

// flush_staged queues a signed batch's envelopes with one lock and one wake-up, as
// wire batches (split by wire_batch_group_end) or one by one. An envelope whose hooks
// drop its hop MAC travels alone (tests only).
void sealer::flush_staged() {
  if (staged_.empty()) return;
  std::vector<net::frames> out;
  std::vector<std::pair<std::size_t, std::size_t>> members;  // staged envelopes [first, last) of each message
  auto alone = [&](std::size_t i) {
    const staged& e = staged_[i];
    return !opts_.wire_batching || (e.hooks && e.hooks->omit_hop_mac());
  };
  for (std::size_t i = 0; i < staged_.size(); ++i)
    if (!alone(i)) staged_[i].encoded_auth = encode_auth_part(staged_[i].auth);  // its exact size counts
  for (std::size_t i = 0; i < staged_.size();) {
    std::size_t end = i + 1;
    if (!alone(i))
      end = session::wire_batch_group_end(
          i, staged_.size(),
          [&](std::size_t k) { return staged_[k].signed_part.size() + staged_[k].encoded_auth.size(); },
          [&](std::size_t k) { return !alone(k); });
    const bool forced = end - i == 1 && staged_[i].hooks && staged_[i].hooks->edits_wire_batch();
    if (end - i > 1 || forced) {
      out.push_back(seal_wire_batch(i, end));
    } else {
      staged& e = staged_[i];
      out.push_back(seal_hop(std::move(e.signed_part), e.digest, std::move(e.auth), e.hooks.get()));
    }
    members.emplace_back(i, end);
    i = end;
  }
  const std::size_t dropped = out_.push_all(out);
  // Not silent: each envelope the full queue refused reaches on_rejected by its id.
  std::size_t lost = 0;
  for (std::size_t m = out.size() - dropped; m < out.size(); ++m)
    for (std::size_t k = members[m].first; k < members[m].second; ++k, ++lost)
      reporter_.report({"sender", {status_code::overloaded, "outbound queue full: a signed envelope was dropped"},
                        opts_.name, staged_[k].to, staged_[k].message_id});
  sent_ += staged_.size() - lost;
  staged_.clear();
}

}  // namespace agentbus::client
