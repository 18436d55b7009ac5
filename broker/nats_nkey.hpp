// nats_nkey.hpp — NATS NKEYs for user authentication (the broker's credential towards
// the federation's NATS cluster): Ed25519 keys in NATS's text form (base32 of a
// prefix byte, the key and a CRC-16/XMODEM; a seed "SU…", a user public key "U…"),
// as the nkeys library writes them. libnats signs the server's nonce from the seed
// file itself; it needs the public key said beside it, which is derived here.
#pragma once

#include <filesystem>
#include <string>

namespace agentbus::broker {

struct nkey_pair {
  std::string seed;        // "SU…": the secret; keep it in a 0600 file
  std::string public_key;  // "U…": what nats-server's authorization lists
};

// generate_user_nkey makes a new user NKEY (OpenSSL's Ed25519).
nkey_pair generate_user_nkey();
// user_nkey_public_from_seed_file reads a user seed file (the first line that
// starts with "SU", as nsc and nk write them; other lines are ignored) and returns
// its public key. Throws std::runtime_error naming the file for anything else.
std::string user_nkey_public_from_seed_file(const std::filesystem::path& seed_file);
// user_nkey_public_from_seed: the same for the seed text itself.
std::string user_nkey_public_from_seed(const std::string& seed);

}  // namespace agentbus::broker
