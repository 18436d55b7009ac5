#include "session/key_agreement.hpp"

#include <stdexcept>
#include <vector>

#include "session/handshake.hpp"

namespace agentbus::session {

result<ecdh_shares> software_shares(const crypto::ec_keypair& my_ephemeral, const crypto::public_key& peer_ephemeral,
                                    const std::optional<crypto::public_key>& peer_static) {
  ecdh_shares out;
  auto z_ee = my_ephemeral.derive(peer_ephemeral);
  if (!z_ee) return z_ee.error();
  out.ephemeral = std::move(z_ee).value();
  if (peer_static) {
    auto z = my_ephemeral.derive(*peer_static);
    if (!z) return z.error();
    out.peer_static = std::move(z).value();
  }
  return out;
}

bytes transcript_hash(hash_algorithm mac_initiator, hash_algorithm mac_responder, std::span<const byte_view> messages) {
  const hash_algorithm h = hash_size(mac_initiator) >= hash_size(mac_responder) ? mac_initiator : mac_responder;
  bytes all;
  std::size_t total = 0;
  for (byte_view m : messages) total += m.size();
  all.reserve(total);
  for (byte_view m : messages) all.insert(all.end(), m.begin(), m.end());
  return crypto::digest(h, all);
}

namespace {

// ordered_shares puts the shares in IKM order for `me` (the credential secrets, the
// same at both ends, last). Z_se is the initiator's
// static share, Z_es the responder's: for the initiator its own static share comes
// second, for the responder the peer's.
std::vector<secret_bytes> ordered_shares(handshake_role me, const ecdh_shares& shares) {
  const std::optional<secret_bytes>& z_se = me == handshake_role::initiator ? shares.my_static : shares.peer_static;
  const std::optional<secret_bytes>& z_es = me == handshake_role::initiator ? shares.peer_static : shares.my_static;
  std::vector<secret_bytes> ikm;
  ikm.push_back(shares.ephemeral.clone());
  if (z_se) ikm.push_back(z_se->clone());
  if (z_es) ikm.push_back(z_es->clone());
  if (shares.offer_credential) ikm.push_back(shares.offer_credential->clone());
  if (shares.accept_credential) ikm.push_back(shares.accept_credential->clone());
  return ikm;
}

// token_box_keys: the one-time pad and the tag key of the token box, derived from
// the hop's shares over HELLO || CHALLENGE (schemas/protocol.md §3.3).
secret_bytes token_box_keys(handshake_role me, const ecdh_shares& shares, const key_schedule_input& in) {
  const bytes th = transcript_hash(in.mac_initiator, in.mac_responder, in.transcript);
  return derive_output(ordered_shares(me, shares), in.nonce_initiator, in.nonce_responder, in.label, in.initiator,
                       in.responder, th, in.mac_initiator, "tok", kEnrolmentTokenSize + hash_size(in.mac_initiator));
}

bytes token_tag(const secret_bytes& keys, hash_algorithm h, byte_view ciphertext) {
  std::string_view label = "agentbus-v1 token";
  bytes input(label.begin(), label.end());
  input.push_back(0);
  input.insert(input.end(), ciphertext.begin(), ciphertext.end());
  return crypto::hmac(h, byte_view(keys.data() + kEnrolmentTokenSize, keys.size() - kEnrolmentTokenSize), input);
}

}  // namespace

agreed_keys agree(handshake_role me, const ecdh_shares& shares, const key_schedule_input& in) {
  const std::vector<secret_bytes> ikm = ordered_shares(me, shares);
  agreed_keys out;
  out.transcript_hash = transcript_hash(in.mac_initiator, in.mac_responder, in.transcript);
  derived_keys k = derive_keys(ikm, in.nonce_initiator, in.nonce_responder, in.label, in.initiator, in.responder,
                               out.transcript_hash, in.mac_initiator, in.mac_responder);
  out.session_id = k.session_id;
  mac_key i2r{k.session_id, std::move(k.initiator_to_responder), in.mac_initiator};
  mac_key r2i{k.session_id, std::move(k.responder_to_initiator), in.mac_responder};
  if (me == handshake_role::initiator) {
    out.send = std::move(i2r);
    out.receive = std::move(r2i);
  } else {
    out.send = std::move(r2i);
    out.receive = std::move(i2r);
  }
  return out;
}

bytes welcome_confirm_tag(const agreed_keys& responder_keys, std::uint64_t rekey_after_messages,
                          std::uint64_t rekey_after_seconds) {
  return crypto::hmac(responder_keys.send.hash, responder_keys.send.key.view(),
                      welcome_confirm_input(responder_keys.transcript_hash, rekey_after_messages, rekey_after_seconds));
}

status check_welcome_confirm(const agreed_keys& initiator_keys, const welcome_msg& w) {
  if (!crypto::constant_time_equal(initiator_keys.session_id, w.session_id) ||
      !crypto::verify_hmac(initiator_keys.receive.hash, initiator_keys.receive.key.view(),
                           welcome_confirm_input(initiator_keys.transcript_hash, w.rekey_after_messages,
                                                 w.rekey_after_seconds),
                           w.confirm_tag)
           .ok())
    return {status_code::bad_mac, "WELCOME key confirmation failed"};
  return {};
}

bytes seal_enrolment_token(const ecdh_shares& shares, const key_schedule_input& in, byte_view token) {
  if (token.size() != kEnrolmentTokenSize) throw std::invalid_argument("an enrolment token is 32 bytes");
  const secret_bytes keys = token_box_keys(handshake_role::initiator, shares, in);
  bytes box(token.begin(), token.end());
  for (std::size_t i = 0; i < kEnrolmentTokenSize; ++i) box[i] ^= keys.data()[i];
  const bytes tag = token_tag(keys, in.mac_initiator, box);
  box.insert(box.end(), tag.begin(), tag.end());
  return box;
}

result<secret_bytes> open_enrolment_token(const ecdh_shares& shares, const key_schedule_input& in, byte_view box) {
  if (box.size() != kEnrolmentTokenSize + hash_size(in.mac_initiator))
    return status{status_code::invalid_field, "sealed token has the wrong length"};
  const secret_bytes keys = token_box_keys(handshake_role::responder, shares, in);
  const byte_view ciphertext = box.first(kEnrolmentTokenSize);
  if (!crypto::constant_time_equal(token_tag(keys, in.mac_initiator, ciphertext), box.subspan(kEnrolmentTokenSize)))
    return status{status_code::bad_mac, "sealed token does not verify"};
  secret_bytes token(kEnrolmentTokenSize);
  for (std::size_t i = 0; i < kEnrolmentTokenSize; ++i) token.data()[i] = ciphertext[i] ^ keys.data()[i];
  return token;
}

}  // namespace agentbus::session
