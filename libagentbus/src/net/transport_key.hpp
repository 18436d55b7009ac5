// transport_key.hpp — CurveZMQ keys for the tcp:// hop (internal;
// schemas/protocol.md §1.3).
//
// The hop over TCP is CurveZMQ: the agent knows the broker's public key before it
// connects, and the broker's ZAP handler admits only client keys it knows. A curve
// key only opens the transport; identities stay with the TPM-signed handshake
// above it. Keys are X25519 (OpenSSL computes public keys; libzmq's libsodium
// clamps secrets the same way, RFC 7748).
#pragma once

#include <zmq.hpp>

#include <array>
#include <filesystem>
#include <string>
#include <string_view>

#include "agentbus/bytes.hpp"

namespace agentbus::net {

inline constexpr std::size_t kCurveKeySize = 32;
using curve_public_key = std::array<std::uint8_t, kCurveKeySize>;

struct curve_keypair {
  curve_public_key public_key{};
  secret_bytes secret;  // 32 bytes
};

// kTransportKeyInfo is the HKDF info of a token's transport key.
inline constexpr std::string_view kTransportKeyInfo = "agentbus-v1 transport key";

// curve_generate makes a random key pair.
curve_keypair curve_generate();
// curve_from_secret completes a key pair from its 32-byte secret.
curve_keypair curve_from_secret(byte_view secret);
// curve_from_token is the key pair an enrolment token stands for: the secret is
// HKDF-SHA256(ikm = the 32 token bytes, salt = none, info = kTransportKeyInfo),
// 32 bytes. The broker knows it when it issues the token and admits its public key
// while the token is usable; the agent derives it to make its first connection.
curve_keypair curve_from_token(byte_view token);

// curve_load_or_create reads a key pair from `file` (the secret as 64 hex digits
// and a newline, mode 0600, refused if group or others may read it), creating the
// file with a new key when it does not exist. Throws std::runtime_error naming the
// file.
curve_keypair curve_load_or_create(const std::filesystem::path& file);

// parse_curve_public reads 64 hex digits (either case); false if it is not that.
bool parse_curve_public(std::string_view hex, curve_public_key& out);

// make_curve_server / make_curve_client set a socket's CURVE options; they apply to
// the endpoints bound or connected after them.
void make_curve_server(zmq::socket_t& socket, const curve_keypair& own, std::string_view zap_domain);
void make_curve_client(zmq::socket_t& socket, const curve_keypair& own, const curve_public_key& server);

// is_tcp_endpoint: "tcp://..." (CurveZMQ applies), as opposed to ipc:// or inproc://.
inline bool is_tcp_endpoint(std::string_view endpoint) { return endpoint.starts_with("tcp://"); }

}  // namespace agentbus::net
