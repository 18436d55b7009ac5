#include "agentbus/testing/agent_access.hpp"

#include <memory>

#include "client/agent_internals.hpp"
#include "client/seal_hooks.hpp"
#include "session/handshake.hpp"
#include "session/session_keys.hpp"

namespace agentbus::testing {
namespace {

// tweak_hooks: seal_tweaks as the sealer's tamper points.
class tweak_hooks final : public client::seal_hooks {
 public:
  explicit tweak_hooks(seal_tweaks t) : t_(std::move(t)) {}
  void edit_header(envelope_header& h) const override {
    if (t_.edit_header) t_.edit_header(h);
  }
  std::optional<hash_algorithm> digest_hash() const override { return t_.digest_hash; }
  void edit_after_signing(bytes& b) const override {
    if (t_.edit_after_signing) t_.edit_after_signing(b);
  }
  void edit_auth(envelope_auth& a) const override {
    if (t_.edit_auth) t_.edit_auth(a);
  }
  bool omit_hop_mac() const override { return t_.omit_hop_mac; }
  bool omit_e2e_macs() const override { return t_.omit_e2e_macs; }
  bool edits_wire_batch() const override { return static_cast<bool>(t_.edit_wire_batch); }
  void edit_wire_batch(std::vector<bytes>& f) const override {
    if (t_.edit_wire_batch) t_.edit_wire_batch(f);
  }

 private:
  seal_tweaks t_;
};

}  // namespace

status agent_access::send_tweaked(agent& a, recipient_kind kind, const std::string& to, std::string_view content_type,
                                  byte_view payload, const seal_tweaks& tweaks) {
  client::agent_runtime& d = client::agent_internals::of(a);
  auto hooks = std::make_shared<const tweak_hooks>(tweaks);
  if (kind == recipient_kind::agent) return d.send_envelope(envelope_type::data, to, content_type, payload, {}, std::move(hooks));
  return d.seal.seal_and_queue({envelope_type::data, kind, to, content_type, payload, {}, {}, {}}, std::move(hooks));
}

status agent_access::send_session_offer(agent& a, const std::string& to, ec_curve curve) {
  client::agent_runtime& d = client::agent_internals::of(a);
  session::offer_msg m;
  m.ephemeral_der = crypto::ec_keypair::generate(curve).public_part().der();
  m.nonce = crypto::random_bytes(session::kNonceSize);
  m.curve = std::string(curve_name(curve));
  return d.seal.seal_and_queue(
      {envelope_type::control, recipient_kind::agent, to, session::kOfferContentType, session::encode(m), {}, {}, {}},
      nullptr);
}

status agent_access::send_control_op(agent& a, const std::string& op) {
  return client::agent_internals::of(a).link.send_control_body([&](std::uint64_t seq) {
    session::ctrl_msg m;
    m.seq = seq;
    m.op = op;
    return session::encode(m);
  });
}

void agent_access::record_sent(agent& a) { client::agent_internals::of(a).outbound.record_sent(true); }

status agent_access::resend_last(agent& a) {
  client::agent_runtime& d = client::agent_internals::of(a);
  // Once the io thread has sent what was queued, "last" is the last envelope queued.
  (void)d.outbound.wait_drained(std::chrono::milliseconds(1000));
  net::frames copy = d.outbound.last_sent();
  if (copy.empty()) return {status_code::invalid_field, "nothing recorded (record_sent first) or nothing sent yet"};
  return d.outbound.push(std::move(copy));
}

status agent_access::send_frames(agent& a, std::vector<bytes> frames) {
  return client::agent_internals::of(a).outbound.push(std::move(frames));
}

void agent_access::edit_received(agent& a, std::function<void(std::vector<bytes>& frames)> edit) {
  client::agent_runtime& d = client::agent_internals::of(a);
  std::lock_guard lock(d.received_edit_mu);
  d.has_received_edit = static_cast<bool>(edit);
  d.received_edit = std::move(edit);
}

void agent_access::hold_outbound(agent& a, bool hold) {
  client::agent_runtime& d = client::agent_internals::of(a);
  d.outbound.hold(hold);
  if (!hold) d.outbound.wake();
}

bool agent_access::outbound_empty(agent& a) { return client::agent_internals::of(a).outbound.empty(); }

}  // namespace agentbus::testing
