// checks.hpp — the enforcement steps shared by the broker (at publish) and the
// library (at receive), so both apply exactly the same rules (internal).
#pragma once

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "agentbus/policy.hpp"
#include "session/session_keys.hpp"

namespace agentbus::session {

// hop_tag / e2e_tag compute MACs (schemas/envelope.md "MAC inputs").
bytes hop_tag(const mac_key& key, byte_view digest, const envelope_auth& auth);
bytes e2e_tag(const mac_key& key, byte_view digest, const envelope_auth& auth, std::string_view recipient);
bytes ctrl_tag(const mac_key& key, byte_view body);

// verify_hop_mac: the hop MAC is present, names a live receive key of `s`, and verifies.
status verify_hop_mac(const session_state& s, byte_view digest, const envelope_auth& auth);
// verify_e2e_mac: the entry for `me` is present, names a live key, and verifies.
status verify_e2e_mac(const session_state& s, byte_view digest, const envelope_auth& auth, std::string_view me);
status verify_ctrl_tag(const session_state& s, byte_view session_id, byte_view body, byte_view tag);

// check_key_and_assurance: the envelope names the sender's pinned key; its
// assurance level is one the role accepts and matches the key's protection
// (a software key cannot claim tpm).
status check_key_and_assurance(const policy& pol, const std::string& role, protection sender_protection,
                               byte_view pinned_key_id, const envelope_auth& auth);

// verify_envelope_signature: direct signatures over the envelope digest.
status verify_envelope_signature(const crypto::public_key& key, const suite& s, byte_view digest,
                                 const envelope_auth& auth);

// curve_for_pair: agent↔agent sessions use the stronger of the two roles' curves.
ec_curve curve_for_pair(ec_curve a, ec_curve b) noexcept;

}  // namespace agentbus::session
