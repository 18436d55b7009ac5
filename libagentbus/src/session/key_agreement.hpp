// key_agreement.hpp — the one key agreement of the bus (internal; schemas/protocol.md
// §3.4 for the hop, §4.3 for agent↔agent sessions).
//
// Both handshakes agree keys the same way, and both ends of each run this code:
//   Z_ee = x(eph_I × eph_R)                     always
//   Z_se = x(static_I × eph_R)                  iff the initiator offered a static key
//   Z_es = x(eph_I × static_R)                  iff the responder offered a static key
//   IKM  = Z_ee || Z_se || Z_es || A_R || A_I   (absent parts left out, order fixed)
//          A_R / A_I: agent↔agent sessions only, the secrets of the credentials the
//          offer / the accept carried (the responder's / initiator's TPM recovered it)
//   th   = H_t(transcript messages, concatenated), H_t the stronger MAC hash
//          (ties: the initiator's)
//   keys = derive_keys(IKM, nonce_I || nonce_R, label, I, R, th)
// A static key is TPM-resident: its owner computes its share with TPM2_ECDH_ZGen
// (my_static_share below), the other side with its ephemeral key in software.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"
#include "session/handshake.hpp"
#include "session/session_keys.hpp"

namespace agentbus::session {

enum class handshake_role { initiator, responder };

// ecdh_shares: the shared secrets one side holds, named from its own point of view.
struct ecdh_shares {
  secret_bytes ephemeral;                 // my ephemeral × peer ephemeral (Z_ee)
  std::optional<secret_bytes> my_static;  // my static key (TPM) × peer ephemeral
  std::optional<secret_bytes> peer_static;  // my ephemeral × peer static key
  // The secrets of the credentials the offer and the accept carried (A_R, A_I): the
  // same at both ends, one side made it, the other's TPM recovered it by
  // TPM2_ActivateCredential. Sessions whose keys depend on them prove to the
  // credential's maker that the peer's AK sits next to its EK (protocol.md §4.3).
  std::optional<secret_bytes> offer_credential, accept_credential;
};

// software_shares computes the shares that need no TPM: Z_ee, and my ephemeral ×
// the peer's static key when it offered one. `my_static` is left for the caller
// (TPM2_ECDH_ZGen on the caller's thread of choice). invalid_field / wrong_key when
// a peer key is unusable.
result<ecdh_shares> software_shares(const crypto::ec_keypair& my_ephemeral, const crypto::public_key& peer_ephemeral,
                                    const std::optional<crypto::public_key>& peer_static);

// key_schedule_input: the handshake's public values, the same at both ends.
struct key_schedule_input {
  std::string_view label;  // "hop" or "e2e"
  std::string_view initiator, responder;
  byte_view nonce_initiator, nonce_responder;
  hash_algorithm mac_initiator = hash_algorithm::sha256;  // each direction is MACed with its sender's hash
  hash_algorithm mac_responder = hash_algorithm::sha256;
  std::span<const byte_view> transcript;  // the handshake messages, in order, as sent
};

// agreed_keys: one side's result. send and receive are already oriented for `me`.
struct agreed_keys {
  bytes session_id;
  bytes transcript_hash;
  mac_key send, receive;
};

// transcript_hash is H_t(concatenation of the messages): H_t the stronger of the two
// MAC hashes, the initiator's on a tie.
bytes transcript_hash(hash_algorithm mac_initiator, hash_algorithm mac_responder, std::span<const byte_view> messages);

// agree orders the shares for `me` (as the table above) and runs the key schedule.
agreed_keys agree(handshake_role me, const ecdh_shares& shares, const key_schedule_input& in);

// welcome_confirm_tag is the hop's key confirmation (WELCOME): a MAC under the
// responder's (broker's) send key over the transcript hash and WELCOME's rekey
// schedule. The initiator checks it, and the session id, with check_welcome_confirm
// (constant time; bad_mac).
bytes welcome_confirm_tag(const agreed_keys& responder_keys, std::uint64_t rekey_after_messages,
                          std::uint64_t rekey_after_seconds);
status check_welcome_confirm(const agreed_keys& initiator_keys, const welcome_msg& w);

// The enrolment token box (schemas/protocol.md §3.3): the agent seals its one-time
// token into PROOF under a key only it and the broker whose CHALLENGE it verified can
// derive (the hop's shares and nonces, over HELLO || CHALLENGE, output "tok"), so an
// eavesdropper never sees it. A one-time pad (the key is used once) and an HMAC tag.
// `in` is the hop's key_schedule_input with transcript {HELLO, CHALLENGE}; the shares
// are the caller's own (agent: initiator, broker: responder). open: invalid_field for
// a wrong length, bad_mac when the tag does not verify.
inline constexpr std::size_t kEnrolmentTokenSize = 32;
bytes seal_enrolment_token(const ecdh_shares& agent_shares, const key_schedule_input& in, byte_view token);
result<secret_bytes> open_enrolment_token(const ecdh_shares& broker_shares, const key_schedule_input& in, byte_view box);

}  // namespace agentbus::session
