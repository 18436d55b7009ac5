#include "nats_nkey.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

namespace agentbus::broker {
namespace {

constexpr std::uint8_t kPrefixSeed = 18 << 3;  // 'S'
constexpr std::uint8_t kPrefixUser = 20 << 3;  // 'U'
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

std::uint16_t crc16_xmodem(const std::vector<std::uint8_t>& data) {
  std::uint16_t crc = 0;
  for (std::uint8_t b : data) {
    crc ^= static_cast<std::uint16_t>(b << 8);
    for (int i = 0; i < 8; ++i) crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
  }
  return crc;
}

std::string base32(const std::vector<std::uint8_t>& in) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::uint8_t b : in) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

std::vector<std::uint8_t> unbase32(const std::string& in) {
  std::vector<std::uint8_t> out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : in) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= '2' && c <= '7') v = c - '2' + 26;
    if (v < 0) throw std::runtime_error("not base32");
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<std::uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
  }
  return out;
}

std::string encode(std::vector<std::uint8_t> raw) {
  const std::uint16_t crc = crc16_xmodem(raw);
  raw.push_back(static_cast<std::uint8_t>(crc & 0xff));  // little-endian, as nkeys writes it
  raw.push_back(static_cast<std::uint8_t>(crc >> 8));
  std::string s = base32(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return s;
}

std::string public_from_raw_seed(const std::uint8_t* seed32) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed32, 32), EVP_PKEY_free);
  if (!key) throw std::runtime_error("Ed25519 key from seed failed");
  std::array<std::uint8_t, 32> pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), pub.data(), &len) != 1 || len != 32)
    throw std::runtime_error("Ed25519 public key failed");
  std::vector<std::uint8_t> raw{kPrefixUser};
  raw.insert(raw.end(), pub.begin(), pub.end());
  return encode(std::move(raw));
}

}  // namespace

nkey_pair generate_user_nkey() {
  std::array<std::uint8_t, 32> seed{};
  if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) != 1) throw std::runtime_error("RAND_bytes failed");
  std::vector<std::uint8_t> raw{static_cast<std::uint8_t>(kPrefixSeed | (kPrefixUser >> 5)),
                                static_cast<std::uint8_t>((kPrefixUser & 31) << 3)};
  raw.insert(raw.end(), seed.begin(), seed.end());
  nkey_pair p;
  p.public_key = public_from_raw_seed(seed.data());
  p.seed = encode(std::move(raw));
  OPENSSL_cleanse(seed.data(), seed.size());
  return p;
}

std::string user_nkey_public_from_seed(const std::string& seed) {
  std::vector<std::uint8_t> raw;
  try {
    raw = unbase32(seed);
  } catch (const std::exception&) {
    throw std::runtime_error("not an NKEY seed (base32)");
  }
  struct wipe {
    std::vector<std::uint8_t>& v;
    ~wipe() { OPENSSL_cleanse(v.data(), v.size()); }
  } wiped{raw};
  if (raw.size() != 36) throw std::runtime_error("not an NKEY seed (length)");
  const std::uint16_t crc = static_cast<std::uint16_t>(raw[34] | raw[35] << 8);
  if (crc16_xmodem(std::vector<std::uint8_t>(raw.begin(), raw.begin() + 34)) != crc)
    throw std::runtime_error("NKEY seed checksum does not match");
  if ((raw[0] & 0xf8) != kPrefixSeed) throw std::runtime_error("not an NKEY seed (prefix)");
  const std::uint8_t kind = static_cast<std::uint8_t>((raw[0] & 7) << 5 | (raw[1] & 0xf8) >> 3);
  if (kind != kPrefixUser) throw std::runtime_error("not a user NKEY seed (SU…)");
  return public_from_raw_seed(raw.data() + 2);
}

std::string user_nkey_public_from_seed_file(const std::filesystem::path& seed_file) {
  std::ifstream in(seed_file);
  if (!in) throw std::runtime_error(seed_file.string() + ": cannot open the NKEY seed file");
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.starts_with("SU")) continue;
    try {
      std::string pub = user_nkey_public_from_seed(line);
      OPENSSL_cleanse(line.data(), line.size());
      return pub;
    } catch (const std::exception& e) {
      OPENSSL_cleanse(line.data(), line.size());
      throw std::runtime_error(seed_file.string() + ": " + e.what());
    }
  }
  throw std::runtime_error(seed_file.string() + ": no user NKEY seed (a line starting with SU)");
}

}  // namespace agentbus::broker
