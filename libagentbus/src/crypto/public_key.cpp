#include <openssl/core_names.h>
#include <openssl/pem.h>

#include <cstring>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

const char* group_name_of(ec_curve c) noexcept {
  switch (c) {
    case ec_curve::p256: return "P-256";
    case ec_curve::p384: return "P-384";
    case ec_curve::p521: return "P-521";
  }
  return "P-256";
}

std::shared_ptr<const pkey_handle> share_pkey(ossl_ptr<EVP_PKEY> pkey) {
  return std::make_shared<const pkey_handle>(std::move(pkey));
}

std::optional<key_type> key_type_of(const EVP_PKEY* pkey) {
  key_type t;
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    t.scheme = signature_scheme::rsa_pss;
    t.rsa_bits = static_cast<unsigned>(EVP_PKEY_get_bits(pkey));
    return t;
  }
  if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1)
      return std::nullopt;
    t.scheme = signature_scheme::ecdsa;
    // OpenSSL reports NIST names as "prime256v1"/"secp384r1"/"secp521r1".
    std::string_view g(group, len);
    if (g == "prime256v1" || g == "P-256") t.curve = ec_curve::p256;
    else if (g == "secp384r1" || g == "P-384") t.curve = ec_curve::p384;
    else if (g == "secp521r1" || g == "P-521") t.curve = ec_curve::p521;
    else return std::nullopt;
    return t;
  }
  return std::nullopt;
}

result<public_key> key_access::adopt(ossl_ptr<EVP_PKEY> pkey) {
  auto type = key_type_of(pkey.get());
  if (!type) return status{status_code::unsupported_algorithm, "public key is neither RSA nor EC P-256/384/521"};
  int len = i2d_PUBKEY(pkey.get(), nullptr);
  if (len <= 0) return status{status_code::malformed, "public key cannot be DER-encoded"};
  bytes der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  i2d_PUBKEY(pkey.get(), &p);
  return public_key(share_pkey(std::move(pkey)), *type, std::move(der));
}

result<public_key> public_key::from_der(byte_view der) {
  const unsigned char* p = der.data();
  EVP_PKEY* pkey = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (pkey == nullptr) {
    ERR_clear_error();
    return status{status_code::malformed, "not a DER SubjectPublicKeyInfo"};
  }
  if (p != der.data() + der.size()) {
    EVP_PKEY_free(pkey);
    return status{status_code::trailing_bytes, "bytes after the DER public key"};
  }
  return key_access::adopt(ossl_ptr<EVP_PKEY>(pkey));
}

result<public_key> public_key::from_pem(std::string_view pem) {
  // BIO_new_mem_buf refuses a null buffer, which an empty string_view may have.
  if (pem.empty()) return status{status_code::malformed, "not a PEM public key"};
  ossl_ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw_crypto_error("BIO_new_mem_buf");
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (pkey == nullptr) {
    ERR_clear_error();
    return status{status_code::malformed, "not a PEM public key"};
  }
  return key_access::adopt(ossl_ptr<EVP_PKEY>(pkey));
}

result<public_key> public_key::from_ec_point(ec_curve curve, byte_view x, byte_view y) {
  std::size_t n = curve_bytes(curve);
  if (x.size() > n || y.size() > n) return status{status_code::invalid_field, "EC coordinate longer than the field"};
  // Uncompressed point 04||X||Y, coordinates left-padded to the field size.
  bytes point(1 + 2 * n, 0);
  point[0] = 0x04;
  // An empty span may carry a null pointer, which memcpy must not see even for 0 bytes.
  if (!x.empty()) std::memcpy(point.data() + 1 + (n - x.size()), x.data(), x.size());
  if (!y.empty()) std::memcpy(point.data() + 1 + n + (n - y.size()), y.data(), y.size());

  ossl_ptr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bld) throw_crypto_error("OSSL_PARAM_BLD_new");
  OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group_name_of(curve), 0);
  OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  ossl_ptr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!params || !ctx) throw_crypto_error("EC key context");
  EVP_PKEY* pkey = nullptr;
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return status{status_code::invalid_field, "EC point is not on the curve"};
  }
  // fromdata does not always validate the point; check it explicitly.
  ossl_ptr<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return status{status_code::invalid_field, "EC point is not on the curve"};
  }
  return key_access::adopt(ossl_ptr<EVP_PKEY>(pkey));
}

result<public_key> public_key::from_rsa_modulus(byte_view modulus, std::uint32_t exponent) {
  if (exponent == 0) exponent = 65537;  // TPM2B_PUBLIC encodes the default exponent as 0
  ossl_ptr<BIGNUM> n(BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr));
  ossl_ptr<BIGNUM> e(BN_new());
  if (!n || !e || BN_set_word(e.get(), exponent) != 1) throw_crypto_error("RSA bignum");
  ossl_ptr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bld) throw_crypto_error("OSSL_PARAM_BLD_new");
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
  ossl_ptr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (!params || !ctx) throw_crypto_error("RSA key context");
  EVP_PKEY* pkey = nullptr;
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return status{status_code::invalid_field, "RSA modulus rejected"};
  }
  return key_access::adopt(ossl_ptr<EVP_PKEY>(pkey));
}

std::string public_key::pem() const {
  ossl_ptr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey_of(*this)) != 1) throw_crypto_error("PEM_write_bio_PUBKEY");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

bytes public_key::fingerprint() const { return digest(hash_algorithm::sha256, der_); }

ec_keypair ec_keypair::generate(ec_curve curve) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group_name_of(curve));
  if (raw == nullptr) throw_crypto_error("EC key generation");
  auto shared = share_pkey(ossl_ptr<EVP_PKEY>(raw));
  // Derive the public half as its own EVP_PKEY so public_key never holds a secret.
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(raw, &der);
  if (len <= 0) throw_crypto_error("i2d_PUBKEY");
  auto pub = public_key::from_der(byte_view(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  if (!pub) throw crypto_error("generated EC key unreadable: " + pub.error().to_string());
  return key_access::make_keypair(std::move(shared), std::move(pub).value());
}

result<secret_bytes> ec_keypair::derive(const public_key& peer) const {
  if (peer.type().scheme != signature_scheme::ecdsa || peer.type().curve != curve())
    return status{status_code::wrong_key, "peer key is not on " + std::string(curve_name(curve()))};
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_access::pkey(*this), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) throw_crypto_error("EVP_PKEY_derive_init");
  if (EVP_PKEY_derive_set_peer(ctx.get(), pkey_of(peer)) != 1) {
    ERR_clear_error();
    return status{status_code::invalid_field, "peer public key rejected"};
  }
  std::size_t len = 0;
  if (EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) throw_crypto_error("EVP_PKEY_derive");
  secret_bytes out(len);
  if (EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1) throw_crypto_error("EVP_PKEY_derive");
  return out;
}

}  // namespace agentbus::crypto

namespace agentbus::crypto {

std::pair<bytes, bytes> ec_point_coordinates(const public_key& key) {
  if (key.type().scheme != signature_scheme::ecdsa) throw crypto_error("not an EC key");
  std::size_t n = curve_bytes(key.type().curve);
  BIGNUM* x = nullptr;
  BIGNUM* y = nullptr;
  if (EVP_PKEY_get_bn_param(pkey_of(key), OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
      EVP_PKEY_get_bn_param(pkey_of(key), OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1) {
    BN_free(x);
    throw_crypto_error("EC public coordinates");
  }
  ossl_ptr<BIGNUM> bx(x), by(y);
  bytes ox(n), oy(n);
  if (BN_bn2binpad(bx.get(), ox.data(), static_cast<int>(n)) < 0 ||
      BN_bn2binpad(by.get(), oy.data(), static_cast<int>(n)) < 0)
    throw_crypto_error("BN_bn2binpad");
  return {std::move(ox), std::move(oy)};
}

}  // namespace agentbus::crypto
