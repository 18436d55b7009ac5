// ossl.hpp — owning pointers for OpenSSL types and error helpers (internal).
#pragma once

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <utility>

#include "agentbus/crypto.hpp"

namespace agentbus::crypto {

// One deleter per OpenSSL type, as BoringSSL's bssl::UniquePtr does.
template <typename T> struct ossl_deleter;
#define AGENTBUS_OSSL_DELETER(type, fn) \
  template <> struct ossl_deleter<type> { void operator()(type* p) const noexcept { fn(p); } }
AGENTBUS_OSSL_DELETER(EVP_PKEY, EVP_PKEY_free);
AGENTBUS_OSSL_DELETER(EVP_PKEY_CTX, EVP_PKEY_CTX_free);
AGENTBUS_OSSL_DELETER(EVP_MD_CTX, EVP_MD_CTX_free);
AGENTBUS_OSSL_DELETER(EVP_MAC, EVP_MAC_free);
AGENTBUS_OSSL_DELETER(EVP_MAC_CTX, EVP_MAC_CTX_free);
AGENTBUS_OSSL_DELETER(EVP_KDF, EVP_KDF_free);
AGENTBUS_OSSL_DELETER(EVP_KDF_CTX, EVP_KDF_CTX_free);
AGENTBUS_OSSL_DELETER(BIGNUM, BN_clear_free);
AGENTBUS_OSSL_DELETER(ECDSA_SIG, ECDSA_SIG_free);
AGENTBUS_OSSL_DELETER(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free);
AGENTBUS_OSSL_DELETER(OSSL_PARAM, OSSL_PARAM_free);
AGENTBUS_OSSL_DELETER(BIO, BIO_free_all);
#undef AGENTBUS_OSSL_DELETER

template <typename T>
using ossl_ptr = std::unique_ptr<T, ossl_deleter<T>>;

// openssl_errors drains the thread's OpenSSL error queue into one line.
std::string openssl_errors();

// throw_crypto_error throws crypto_error with `what` and the drained queue.
[[noreturn]] void throw_crypto_error(const std::string& what);

// md_of maps a hash to its EVP_MD: fetched once per process (never freed by callers).
const EVP_MD* md_of(hash_algorithm h);

// group_name_of maps a curve to OpenSSL's group name ("P-256").
const char* group_name_of(ec_curve c) noexcept;

// pkey_handle owns one EVP_PKEY: what public_key, ec_keypair and the software
// private key share (the public header only forward-declares it).
struct pkey_handle {
  explicit pkey_handle(ossl_ptr<EVP_PKEY> k) noexcept : pkey(std::move(k)) {}
  ossl_ptr<EVP_PKEY> pkey;
};

// share_pkey wraps an owned EVP_PKEY in the shared handle the key classes keep.
std::shared_ptr<const pkey_handle> share_pkey(ossl_ptr<EVP_PKEY> pkey);

// key_access is the library's way to the EVP_PKEY inside the public key classes
// (their friend): nothing outside libagentbus can name it.
struct key_access {
  static EVP_PKEY* pkey(const public_key& k) noexcept { return k.pkey_->pkey.get(); }
  static EVP_PKEY* pkey(const ec_keypair& k) noexcept { return k.pkey_->pkey.get(); }
  // adopt: a public_key over an owned EVP_PKEY (its type checked, its DER kept).
  static result<public_key> adopt(ossl_ptr<EVP_PKEY> pkey);
  static ec_keypair make_keypair(std::shared_ptr<const pkey_handle> pkey, public_key pub) {
    return ec_keypair(std::move(pkey), std::move(pub));
  }
};

// key_type_of inspects an EVP_PKEY; nullopt for unsupported types.
std::optional<key_type> key_type_of(const EVP_PKEY* pkey);

// pkey_of returns the EVP_PKEY held by a public_key.
inline EVP_PKEY* pkey_of(const public_key& k) noexcept { return key_access::pkey(k); }

}  // namespace agentbus::crypto

namespace agentbus::crypto {
// ec_point_coordinates returns the affine X and Y of an EC public key, each
// left-padded to the curve's field size (as TPM2B_ECC_POINT wants them).
std::pair<bytes, bytes> ec_point_coordinates(const public_key& key);
}  // namespace agentbus::crypto
