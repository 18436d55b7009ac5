// session_keys.hpp — key schedule and MAC state of one session (internal).
//
// A session (agent↔broker "hop", or agent↔agent "end-to-end") has one key per
// direction, derived with HKDF from the ECDH shared secrets, both nonces, both
// identities and the handshake transcript. Rekeying replaces both keys; the old
// receive key stays valid for a grace window so envelopes in flight still verify.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/suite.hpp"

namespace agentbus::session {

inline constexpr std::size_t kSessionIdSize = 16;
inline constexpr std::size_t kNonceSize = 32;

struct derived_keys {
  bytes session_id;                 // kSessionIdSize
  secret_bytes initiator_to_responder;
  secret_bytes responder_to_initiator;
};

// derive_keys: ikm = Z_1 || Z_2 || ...; salt = nonce_i || nonce_r;
// info = "agentbus-v1 <label>" || 0x00 || u8 len || initiator || u8 len || responder
//        || transcript_hash || one of "i2r", "r2i", "sid".
// Each direction's key is as long as that direction's MAC hash output.
derived_keys derive_keys(const std::vector<secret_bytes>& shared_secrets, byte_view nonce_initiator,
                         byte_view nonce_responder, std::string_view label, std::string_view initiator,
                         std::string_view responder, byte_view transcript_hash, hash_algorithm i2r_mac,
                         hash_algorithm r2i_mac);

// derive_output: one more output of the same schedule (same ikm, salt and info
// prefix), named `tag`, `length` bytes of HKDF-`kdf`: "tok" keys the enrolment
// token box (schemas/protocol.md §3.3).
secret_bytes derive_output(const std::vector<secret_bytes>& shared_secrets, byte_view nonce_initiator,
                           byte_view nonce_responder, std::string_view label, std::string_view initiator,
                           std::string_view responder, byte_view transcript_hash, hash_algorithm kdf,
                           std::string_view tag, std::size_t length);

using steady = std::chrono::steady_clock;

// mac_key is one direction's key of one session epoch.
struct mac_key {
  bytes session_id;
  secret_bytes key;
  hash_algorithm hash = hash_algorithm::sha256;
  steady::time_point valid_until = steady::time_point::max();  // set when superseded
  crypto::hmac_key prepared = {};  // keyed once by session_state::install (the per-envelope MAC)

  bytes tag(byte_view data) const { return prepared.empty() ? crypto::hmac(hash, key.view(), data) : prepared.tag(data); }
  // tag_pieces: the same over input handed over in pieces (crypto::hmac_key::tag_pieces).
  bytes tag_pieces(const std::function<void(const std::function<void(byte_view)>&)>& feed) const {
    if (prepared.empty()) {
      bytes all;
      feed([&](byte_view p) { all.insert(all.end(), p.begin(), p.end()); });
      return crypto::hmac(hash, key.view(), all);
    }
    return prepared.tag_pieces(feed);
  }
};

// session_state holds the current send key and the receive keys (current plus the
// superseded ones still inside their grace window).
class session_state {
 public:
  void install(mac_key send, mac_key receive, std::chrono::seconds grace);
  const mac_key* send_key() const noexcept { return has_send_ ? &send_ : nullptr; }
  const mac_key* find_receive(byte_view session_id) const noexcept;
  void count_sent() noexcept { ++sent_; }
  std::uint64_t sent() const noexcept { return sent_; }
  std::uint64_t received() const noexcept { return received_; }
  void count_received() noexcept { ++received_; }
  steady::time_point established() const noexcept { return established_; }
  std::uint64_t epoch() const noexcept { return epoch_; }
  bool due_for_rekey(std::uint64_t max_messages, std::chrono::seconds max_age) const noexcept;

 private:
  bool has_send_ = false;
  mac_key send_;
  std::vector<mac_key> receive_;  // newest last
  std::uint64_t sent_ = 0, received_ = 0, epoch_ = 0;
  steady::time_point established_{};
};

}  // namespace agentbus::session
