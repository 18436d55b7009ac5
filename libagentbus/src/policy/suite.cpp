#include "agentbus/suite.hpp"

#include <array>
#include <cctype>
#include <utility>

namespace agentbus {
namespace {

template <typename E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<std::string_view, E>, N>& table, std::string_view name) {
  for (const auto& [n, v] : table)
    if (n == name) return v;
  return std::nullopt;
}

constexpr std::array<std::pair<std::string_view, hash_algorithm>, 6> kHashes{{
    {"sha256", hash_algorithm::sha256},     {"sha384", hash_algorithm::sha384},
    {"sha512", hash_algorithm::sha512},     {"sha3-256", hash_algorithm::sha3_256},
    {"sha3-384", hash_algorithm::sha3_384}, {"sha3-512", hash_algorithm::sha3_512},
}};
constexpr std::array<std::pair<std::string_view, ec_curve>, 3> kCurves{{
    {"P-256", ec_curve::p256}, {"P-384", ec_curve::p384}, {"P-521", ec_curve::p521},
}};
constexpr std::array<std::pair<std::string_view, protection>, 2> kProtections{{
    {"tpm", protection::tpm}, {"software", protection::software},
}};
constexpr std::array<std::pair<std::string_view, assurance>, 3> kAssurances{{
    {"tpm", assurance::tpm}, {"tpm-batch", assurance::tpm_batch}, {"software", assurance::software},
}};

template <typename E, std::size_t N>
std::string_view name_of(const std::array<std::pair<std::string_view, E>, N>& table, E value) {
  for (const auto& [n, v] : table)
    if (v == value) return n;
  return "?";
}

}  // namespace

std::string_view hash_name(hash_algorithm h) noexcept { return name_of(kHashes, h); }
std::optional<hash_algorithm> parse_hash(std::string_view name) noexcept { return lookup(kHashes, name); }
std::string_view curve_name(ec_curve c) noexcept { return name_of(kCurves, c); }
std::optional<ec_curve> parse_curve(std::string_view name) noexcept { return lookup(kCurves, name); }
std::string_view protection_name(protection p) noexcept { return name_of(kProtections, p); }
std::optional<protection> parse_protection(std::string_view name) noexcept { return lookup(kProtections, name); }
std::string_view assurance_name(assurance a) noexcept { return name_of(kAssurances, a); }
std::optional<assurance> parse_assurance(std::string_view name) noexcept { return lookup(kAssurances, name); }

std::size_t hash_size(hash_algorithm h) noexcept {
  switch (h) {
    case hash_algorithm::sha256: case hash_algorithm::sha3_256: return 32;
    case hash_algorithm::sha384: case hash_algorithm::sha3_384: return 48;
    case hash_algorithm::sha512: case hash_algorithm::sha3_512: return 64;
  }
  return 0;
}

std::size_t curve_bytes(ec_curve c) noexcept {
  switch (c) {
    case ec_curve::p256: return 32;
    case ec_curve::p384: return 48;
    case ec_curve::p521: return 66;
  }
  return 0;
}

std::string key_type::describe() const {
  if (scheme == signature_scheme::rsa_pss) return "RSA-" + std::to_string(rsa_bits);
  return "ECDSA " + std::string(curve_name(curve));
}

static std::string upper_hash(hash_algorithm h) {
  std::string s(hash_name(h));
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string suite::describe() const {
  std::string sig = key.scheme == signature_scheme::rsa_pss ? "RSA-" + std::to_string(key.rsa_bits) + "-PSS"
                                                            : "ECDSA " + std::string(curve_name(key.curve));
  return sig + " / " + upper_hash(envelope_hash) + " / HMAC-" + upper_hash(mac_hash) + " / ECDH " +
         std::string(curve_name(ecdh_curve));
}

}  // namespace agentbus
