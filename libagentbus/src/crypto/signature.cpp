#include <openssl/rsa.h>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

status verify_digest(const public_key& key, const key_type& expected, hash_algorithm h,
                     byte_view digest_bytes, byte_view signature) {
  if (key.type() != expected)
    return {status_code::wrong_key, "key is " + key.type().describe() + ", suite needs " + expected.describe()};
  if (digest_bytes.size() != hash_size(h))
    return {status_code::invalid_field, "digest length does not match " + std::string(hash_name(h))};
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_of(key), nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) throw_crypto_error("EVP_PKEY_verify_init");
  if (expected.scheme == signature_scheme::rsa_pss) {
    // PSS binds the hash into the padding; salt length is recovered from the
    // signature because TPMs differ (swtpm: hash length; others: maximum).
    if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md_of(h)) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md_of(h)) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_AUTO) != 1)
      throw_crypto_error("RSA-PSS verify parameters");
  }
  // ECDSA verifies the digest as given: a SHA3 digest under a SHA-2-sized scheme is
  // fine (the curve order truncation is the same), which is how SHA-3 suites work
  // with TPMs that lack SHA-3.
  int rc = EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest_bytes.data(),
                           digest_bytes.size());
  ERR_clear_error();  // a failed verify queues errors; they are not news
  if (rc != 1) return {status_code::bad_signature, "signature does not verify"};
  return {};
}

bytes ecdsa_der_from_rs(byte_view r, byte_view s) {
  ossl_ptr<ECDSA_SIG> sig(ECDSA_SIG_new());
  BIGNUM* br = BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr);
  BIGNUM* bs = BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr);
  if (!sig || !br || !bs || ECDSA_SIG_set0(sig.get(), br, bs) != 1) {
    BN_free(br);
    BN_free(bs);
    throw_crypto_error("ECDSA_SIG_set0");
  }
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) throw_crypto_error("i2d_ECDSA_SIG");
  bytes der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

}  // namespace agentbus::crypto
