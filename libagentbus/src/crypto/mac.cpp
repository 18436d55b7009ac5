#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include <mutex>
#include <vector>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

bytes hmac(hash_algorithm h, byte_view key, byte_view data) {
  bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  // One-shot HMAC(): OpenSSL 3 keeps it as a non-deprecated convenience over EVP_MAC.
  if (HMAC(md_of(h), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
           out.data(), &len) == nullptr)
    throw_crypto_error("HMAC");
  out.resize(len);
  return out;
}

// hmac_key::state: the keyed context, never used for a tag itself, and a few work
// contexts cut from it. A work context is re-initialised with EVP_MAC_init(NULL key),
// which restarts from the stored inner/outer digest states: 2 allocations per tag
// instead of ~8 for a fresh EVP_MAC_CTX_dup (measured with heaptrack on the broker).
// The pool only lends contexts out, so concurrent tag() calls never share one.
struct hmac_key::state {
  ossl_ptr<EVP_MAC_CTX> keyed;
  std::mutex mu;
  std::vector<EVP_MAC_CTX*> spare;  // owned; freed (and wiped by OpenSSL) in ~state
  static constexpr std::size_t kMaxSpare = 4;

  ~state() {
    for (EVP_MAC_CTX* c : spare) EVP_MAC_CTX_free(c);
  }
  ossl_ptr<EVP_MAC_CTX> borrow() {
    {
      std::lock_guard lock(mu);
      if (!spare.empty()) {
        ossl_ptr<EVP_MAC_CTX> c(spare.back());
        spare.pop_back();
        if (EVP_MAC_init(c.get(), nullptr, 0, nullptr) != 1) throw_crypto_error("EVP_MAC_init (restart)");
        return c;
      }
    }
    ossl_ptr<EVP_MAC_CTX> c(EVP_MAC_CTX_dup(keyed.get()));
    if (!c) throw_crypto_error("EVP_MAC_CTX_dup");
    return c;
  }
  void give_back(ossl_ptr<EVP_MAC_CTX> c) {
    std::lock_guard lock(mu);
    if (spare.size() < kMaxSpare) spare.push_back(c.release());
  }
};

hmac_key::hmac_key(hash_algorithm h, byte_view key) {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);  // process lifetime
  if (mac == nullptr) throw_crypto_error("EVP_MAC_fetch(HMAC)");
  auto st = std::make_shared<state>();
  st->keyed.reset(EVP_MAC_CTX_new(mac));
  if (!st->keyed) throw_crypto_error("EVP_MAC_CTX_new");
  OSSL_PARAM params[2] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(EVP_MD_get0_name(md_of(h))), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(st->keyed.get(), key.data(), key.size(), params) != 1) throw_crypto_error("EVP_MAC_init");
  state_ = std::move(st);
}

bytes hmac_key::tag(byte_view data) const {
  return tag_pieces([&](const std::function<void(byte_view)>& piece) { piece(data); });
}

bytes hmac_key::tag_pieces(const std::function<void(const std::function<void(byte_view)>&)>& feed) const {
  if (!state_) throw crypto_error("hmac_key::tag on an empty key");
  ossl_ptr<EVP_MAC_CTX> c = state_->borrow();
  feed([&](byte_view piece) {
    if (EVP_MAC_update(c.get(), piece.data(), piece.size()) != 1) throw_crypto_error("HMAC update");
  });
  bytes out(EVP_MAX_MD_SIZE);
  std::size_t len = 0;
  if (EVP_MAC_final(c.get(), out.data(), &len, out.size()) != 1) throw_crypto_error("HMAC final");
  out.resize(len);
  state_->give_back(std::move(c));
  return out;
}

bool constant_time_equal(byte_view a, byte_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

status verify_hmac(hash_algorithm h, byte_view key, byte_view data, byte_view tag) {
  bytes expected = hmac(h, key, data);
  bool equal = constant_time_equal(expected, tag);
  OPENSSL_cleanse(expected.data(), expected.size());
  if (!equal) return {status_code::bad_mac, "MAC does not verify"};
  return {};
}

secret_bytes hkdf(hash_algorithm h, byte_view ikm, byte_view salt, byte_view info,
                  std::size_t length) {
  ossl_ptr<EVP_KDF> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) throw_crypto_error("EVP_KDF_fetch(HKDF)");
  ossl_ptr<EVP_KDF_CTX> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) throw_crypto_error("EVP_KDF_CTX_new");
  std::string md_name(EVP_MD_get0_name(md_of(h)));
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md_name.data(), 0);
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(ikm.data()), ikm.size());
  // An empty salt is left out rather than passed as (NULL, 0): OpenSSL 3.0's HKDF
  // fails on the latter without queuing an error, and an absent salt is exactly
  // RFC 5869's default (HashLen zero bytes).
  if (!salt.empty())
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()), salt.size());
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_INFO, const_cast<std::uint8_t*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  secret_bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) throw_crypto_error("HKDF derive");
  return out;
}

}  // namespace agentbus::crypto
