#include "session/key_agreement.hpp"

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

agreed_keys agree(handshake_role me, const ecdh_shares& shares, const key_schedule_input& in) {
  // Z_se is the initiator's static share, Z_es the responder's: for the initiator its
  // own static share comes second, for the responder the peer's.
  const std::optional<secret_bytes>& z_se = me == handshake_role::initiator ? shares.my_static : shares.peer_static;
  const std::optional<secret_bytes>& z_es = me == handshake_role::initiator ? shares.peer_static : shares.my_static;
  std::vector<secret_bytes> ikm;
  ikm.push_back(shares.ephemeral.clone());
  if (z_se) ikm.push_back(z_se->clone());
  if (z_es) ikm.push_back(z_es->clone());

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

bytes welcome_confirm_tag(const agreed_keys& responder_keys) {
  return crypto::hmac(responder_keys.send.hash, responder_keys.send.key.view(),
                      welcome_confirm_input(responder_keys.transcript_hash));
}

status check_welcome_confirm(const agreed_keys& initiator_keys, byte_view session_id, byte_view tag) {
  if (!crypto::constant_time_equal(initiator_keys.session_id, session_id) ||
      !crypto::verify_hmac(initiator_keys.receive.hash, initiator_keys.receive.key.view(),
                           welcome_confirm_input(initiator_keys.transcript_hash), tag)
           .ok())
    return {status_code::bad_mac, "WELCOME key confirmation failed"};
  return {};
}

}  // namespace agentbus::session
