#include "session/session_keys.hpp"

#include <algorithm>

#include "agentbus/crypto.hpp"

namespace agentbus::session {

namespace {

// schedule: what every output of one handshake's key schedule shares.
struct schedule {
  secret_bytes ikm;
  bytes salt, info;
};

schedule make_schedule(const std::vector<secret_bytes>& shared_secrets, byte_view nonce_initiator,
                       byte_view nonce_responder, std::string_view label, std::string_view initiator,
                       std::string_view responder, byte_view transcript_hash) {
  std::size_t ikm_len = 0;
  for (const auto& z : shared_secrets) ikm_len += z.size();
  schedule s{secret_bytes(ikm_len), {}, {}};
  std::size_t off = 0;
  for (const auto& z : shared_secrets) {
    std::copy(z.data(), z.data() + z.size(), s.ikm.data() + off);
    off += z.size();
  }
  s.salt.assign(nonce_initiator.begin(), nonce_initiator.end());
  s.salt.insert(s.salt.end(), nonce_responder.begin(), nonce_responder.end());
  std::string prefix = "agentbus-v1 " + std::string(label);
  s.info.insert(s.info.end(), prefix.begin(), prefix.end());
  s.info.push_back(0);
  s.info.push_back(static_cast<std::uint8_t>(initiator.size()));
  s.info.insert(s.info.end(), initiator.begin(), initiator.end());
  s.info.push_back(static_cast<std::uint8_t>(responder.size()));
  s.info.insert(s.info.end(), responder.begin(), responder.end());
  s.info.insert(s.info.end(), transcript_hash.begin(), transcript_hash.end());
  return s;
}

secret_bytes expand(const schedule& s, hash_algorithm kdf, std::string_view tag, std::size_t length) {
  bytes info = s.info;
  info.insert(info.end(), tag.begin(), tag.end());
  return crypto::hkdf(kdf, s.ikm.view(), s.salt, info, length);
}

}  // namespace

derived_keys derive_keys(const std::vector<secret_bytes>& shared_secrets, byte_view nonce_initiator,
                         byte_view nonce_responder, std::string_view label, std::string_view initiator,
                         std::string_view responder, byte_view transcript_hash, hash_algorithm i2r_mac,
                         hash_algorithm r2i_mac) {
  const schedule s =
      make_schedule(shared_secrets, nonce_initiator, nonce_responder, label, initiator, responder, transcript_hash);
  // The KDF hash is the stronger of the two MAC hashes.
  hash_algorithm kdf = hash_size(i2r_mac) >= hash_size(r2i_mac) ? i2r_mac : r2i_mac;
  derived_keys out;
  out.initiator_to_responder = expand(s, kdf, "i2r", hash_size(i2r_mac));
  out.responder_to_initiator = expand(s, kdf, "r2i", hash_size(r2i_mac));
  secret_bytes sid = expand(s, kdf, "sid", kSessionIdSize);
  out.session_id.assign(sid.data(), sid.data() + sid.size());
  return out;
}

secret_bytes derive_output(const std::vector<secret_bytes>& shared_secrets, byte_view nonce_initiator,
                           byte_view nonce_responder, std::string_view label, std::string_view initiator,
                           std::string_view responder, byte_view transcript_hash, hash_algorithm kdf,
                           std::string_view tag, std::size_t length) {
  return expand(make_schedule(shared_secrets, nonce_initiator, nonce_responder, label, initiator, responder,
                              transcript_hash),
                kdf, tag, length);
}

void session_state::install(mac_key send, mac_key receive, std::chrono::seconds grace) {
  auto now = steady::now();
  // Superseded receive keys keep working for the grace window, then expire.
  for (auto& k : receive_)
    if (k.valid_until == steady::time_point::max()) k.valid_until = now + grace;
  receive_.erase(std::remove_if(receive_.begin(), receive_.end(), [&](const mac_key& k) { return k.valid_until < now; }),
                 receive_.end());
  send.prepared = crypto::hmac_key(send.hash, send.key.view());
  receive.prepared = crypto::hmac_key(receive.hash, receive.key.view());
  // The new key is valid until it is superseded, whatever the caller put there.
  receive.valid_until = steady::time_point::max();
  receive_.push_back(std::move(receive));
  send_ = std::move(send);
  has_send_ = true;
  sent_ = 0;
  established_ = now;
  ++epoch_;
}

const mac_key* session_state::find_receive(byte_view session_id) const noexcept {
  auto now = steady::now();
  for (auto it = receive_.rbegin(); it != receive_.rend(); ++it)
    if (it->valid_until >= now && it->session_id.size() == session_id.size() &&
        std::equal(it->session_id.begin(), it->session_id.end(), session_id.begin()))
      return &*it;
  return nullptr;
}

bool session_state::due_for_rekey(std::uint64_t max_messages, std::chrono::seconds max_age) const noexcept {
  return has_send_ && (sent_ >= max_messages || steady::now() - established_ >= max_age);
}

}  // namespace agentbus::session
