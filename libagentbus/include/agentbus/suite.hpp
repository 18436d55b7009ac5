// suite.hpp — algorithm suites: the signature, envelope hash, MAC and ECDH curve
// a role uses, and the protection / assurance vocabulary.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

enum class hash_algorithm { sha256, sha384, sha512, sha3_256, sha3_384, sha3_512 };
enum class signature_scheme { rsa_pss, ecdsa };
enum class ec_curve { p256, p384, p521 };

// protection says where an identity key lives: in a TPM (non-exportable) or in a
// software file (the loudly-flagged fallback).
enum class protection { tpm, software };

// assurance is how an envelope's signature was made: directly by the TPM, by the
// TPM over a Merkle batch root, or by a software key.
enum class assurance { tpm, tpm_batch, software };

std::string_view hash_name(hash_algorithm h) noexcept;      // "sha256", "sha3-384"
std::optional<hash_algorithm> parse_hash(std::string_view name) noexcept;
std::size_t hash_size(hash_algorithm h) noexcept;           // digest bytes
std::string_view curve_name(ec_curve c) noexcept;           // "P-256"
std::optional<ec_curve> parse_curve(std::string_view name) noexcept;
std::size_t curve_bytes(ec_curve c) noexcept;               // field size: 32, 48, 66
std::string_view protection_name(protection p) noexcept;    // "tpm", "software"
std::optional<protection> parse_protection(std::string_view name) noexcept;
std::string_view assurance_name(assurance a) noexcept;      // "tpm", "tpm-batch", "software"
std::optional<assurance> parse_assurance(std::string_view name) noexcept;

// key_type is the identity key's algorithm: RSA with a modulus size, or an EC curve.
struct key_type {
  signature_scheme scheme = signature_scheme::ecdsa;
  unsigned rsa_bits = 0;            // RSA only
  ec_curve curve = ec_curve::p256;  // ECDSA only

  bool operator==(const key_type&) const = default;
  // describe renders "RSA-3072" or "ECDSA P-256".
  std::string describe() const;
};

// suite is one named row of the policy's algorithm table. Envelopes declare the suite
// by name; verifiers compare that name with the sender's role suite.
struct suite {
  std::string name;                  // e.g. "rsa3072-pss-sha384"
  key_type key;                      // signature key algorithm
  hash_algorithm envelope_hash = hash_algorithm::sha256;
  hash_algorithm mac_hash = hash_algorithm::sha256;   // HMAC-<mac_hash>
  ec_curve ecdh_curve = ec_curve::p256;

  // describe renders "RSA-3072-PSS / SHA-384 / HMAC-SHA384 / ECDH P-384".
  std::string describe() const;
};

}  // namespace agentbus

#pragma GCC visibility pop
