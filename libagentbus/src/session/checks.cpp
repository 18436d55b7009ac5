#include "session/checks.hpp"

#include "session/handshake.hpp"

namespace agentbus::session {

bytes hop_tag(const mac_key& key, byte_view digest, const envelope_auth& auth) {
  return crypto::hmac(key.hash, key.key.view(), hop_mac_input(digest, auth));
}

bytes e2e_tag(const mac_key& key, byte_view digest, const envelope_auth& auth, std::string_view recipient) {
  return crypto::hmac(key.hash, key.key.view(), e2e_mac_input(digest, auth, recipient));
}

bytes ctrl_tag(const mac_key& key, byte_view body) {
  return crypto::hmac(key.hash, key.key.view(), ctrl_mac_input(key.session_id, body));
}

status verify_hop_mac(const session_state& s, byte_view digest, const envelope_auth& auth) {
  if (!auth.hop_mac) return {status_code::bad_mac, "hop MAC missing"};
  const mac_key* k = s.find_receive(auth.hop_mac->session_id);
  // Same answer for an unknown session and a wrong tag: the sender learns nothing.
  if (k == nullptr) return {status_code::bad_mac, "hop MAC does not verify"};
  if (!crypto::constant_time_equal(hop_tag(*k, digest, auth), auth.hop_mac->tag))
    return {status_code::bad_mac, "hop MAC does not verify"};
  return {};
}

status verify_e2e_mac(const session_state& s, byte_view digest, const envelope_auth& auth, std::string_view me) {
  for (const auto& m : auth.e2e_macs) {
    if (m.recipient != me) continue;
    const mac_key* k = s.find_receive(m.session_id);
    if (k == nullptr) return {status_code::bad_mac, "end-to-end MAC does not verify"};
    if (!crypto::constant_time_equal(e2e_tag(*k, digest, auth, me), m.tag))
      return {status_code::bad_mac, "end-to-end MAC does not verify"};
    return {};
  }
  return {status_code::no_session, "no end-to-end MAC for this receiver"};
}

status verify_ctrl_tag(const session_state& s, byte_view session_id, byte_view body, byte_view tag) {
  const mac_key* k = s.find_receive(session_id);
  if (k == nullptr || !crypto::constant_time_equal(ctrl_tag(*k, body), tag))
    return {status_code::bad_mac, "control MAC does not verify"};
  return {};
}

status check_key_and_assurance(const policy& pol, const std::string& role, protection sender_protection,
                               byte_view pinned_key_id, const envelope_auth& auth) {
  if (!crypto::constant_time_equal(pinned_key_id, auth.key_id))
    return {status_code::wrong_key, "envelope names a key other than the sender's pinned key"};
  if (status st = pol.check_assurance(role, auth.level); !st) return st;
  bool software_level = auth.level == assurance::software;
  if (software_level != (sender_protection == protection::software))
    return {status_code::assurance_refused, "assurance level does not match the key's protection"};
  return {};
}

status verify_envelope_signature(const crypto::public_key& key, const suite& s, byte_view digest,
                                 const envelope_auth& auth) {
  if (auth.level == assurance::tpm_batch)
    return {status_code::unsupported_algorithm, "tpm-batch signatures are not accepted by this build"};
  return crypto::verify_digest(key, s.key, s.envelope_hash, digest, auth.signature);
}

ec_curve curve_for_pair(ec_curve a, ec_curve b) noexcept { return curve_bytes(a) >= curve_bytes(b) ? a : b; }

}  // namespace agentbus::session
