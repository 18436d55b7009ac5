#include "tpm/attestation.hpp"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "crypto/ossl.hpp"
#include "tpm/tpm_marshal.hpp"

namespace agentbus::tpm::attestation {

namespace {

using crypto::ossl_ptr;

status refuse(std::string why) { return {status_code::not_attested, std::move(why)}; }

std::optional<hash_algorithm> hash_of(TPMI_ALG_HASH alg) {
  switch (alg) {
    case TPM2_ALG_SHA256: return hash_algorithm::sha256;
    case TPM2_ALG_SHA384: return hash_algorithm::sha384;
    case TPM2_ALG_SHA512: return hash_algorithm::sha512;
    default: return std::nullopt;
  }
}

bool has(TPMA_OBJECT attrs, TPMA_OBJECT bit) { return (attrs & bit) == bit; }

// public_key_from_area: the key of a TPM public area (as tpm::public_key_of).
result<crypto::public_key> public_key_from_area(byte_view tpm2b_public) {
  key_blob blob;
  blob.public_area.assign(tpm2b_public.begin(), tpm2b_public.end());
  return tpm::public_key_of(blob);
}

struct x509_deleter {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
using x509_ptr = std::unique_ptr<X509, x509_deleter>;

x509_ptr read_pem_certificate(const std::string& pem) {
  ossl_ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return x509_ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

// kdfa is TPM 2.0 Part 1 §11.4.10.2 KDFa with HMAC-SHA256 (SP 800-108 counter mode:
// HMAC(key, BE32(i) || label || 0x00 || contextU || contextV || BE32(bits))).
secret_bytes kdfa_sha256(byte_view key, std::string_view label, byte_view context_u, std::size_t bytes_out) {
  secret_bytes out(bytes_out);
  const std::uint32_t bits = static_cast<std::uint32_t>(bytes_out * 8);
  std::size_t done = 0;
  for (std::uint32_t i = 1; done < bytes_out; ++i) {
    bytes input;
    for (int s = 24; s >= 0; s -= 8) input.push_back(static_cast<std::uint8_t>(i >> s));
    input.insert(input.end(), label.begin(), label.end());
    input.push_back(0);
    input.insert(input.end(), context_u.begin(), context_u.end());
    for (int s = 24; s >= 0; s -= 8) input.push_back(static_cast<std::uint8_t>(bits >> s));
    const bytes block = crypto::hmac(hash_algorithm::sha256, key, input);
    const std::size_t n = std::min(block.size(), bytes_out - done);
    std::memcpy(out.data() + done, block.data(), n);
    done += n;
  }
  return out;
}

void put_be16(bytes& out, std::size_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

}  // namespace

result<bytes> object_name(byte_view tpm2b_public) {
  auto pub = parse_public(tpm2b_public);
  if (!pub) return refuse("a public area does not parse as TPM2B_PUBLIC");
  auto h = hash_of(pub->publicArea.nameAlg);
  if (!h) return refuse("a public area has an unsupported name algorithm");
  const bytes area = marshal<TPMT_PUBLIC, Tss2_MU_TPMT_PUBLIC_Marshal>(pub->publicArea);
  bytes name;
  put_be16(name, pub->publicArea.nameAlg);
  const bytes d = crypto::digest(*h, area);
  name.insert(name.end(), d.begin(), d.end());
  return name;
}

result<verified_endorsement> verify_endorsement(byte_view certificate_der, byte_view ek_tpm2b_public,
                                                const trust_anchors& trusted) {
  const unsigned char* p = certificate_der.data();
  x509_ptr cert(d2i_X509(nullptr, &p, static_cast<long>(certificate_der.size())));
  if (!cert || p != certificate_der.data() + certificate_der.size()) return refuse("the EK certificate is not one DER certificate");

  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> chain(sk_X509_new_null(), [](STACK_OF(X509)* s) {
    sk_X509_pop_free(s, X509_free);
  });
  if (!store || !chain) crypto::throw_crypto_error("X509_STORE_new");
  for (const auto& pem : trusted.roots_pem) {
    x509_ptr root = read_pem_certificate(pem);
    if (!root) return refuse("a trusted EK CA is not a PEM certificate");
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) crypto::throw_crypto_error("X509_STORE_add_cert");
  }
  for (const auto& pem : trusted.intermediates_pem) {
    x509_ptr c = read_pem_certificate(pem);
    if (!c) return refuse("an EK intermediate is not a PEM certificate");
    sk_X509_push(chain.get(), c.release());
  }
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), chain.get()) != 1)
    crypto::throw_crypto_error("X509_STORE_CTX_init");
  if (X509_verify_cert(ctx.get()) != 1)
    return refuse(std::string("the EK certificate does not chain to a trusted EK CA: ") +
                  X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  // An EK certificate, not any certificate the CA issued: not a CA, and when it names
  // extended key usages, tcg-kp-EKCertificate (2.23.133.8.1) among them.
  if (X509_check_ca(cert.get()) != 0) return refuse("the EK certificate is a CA certificate");
  if (X509_get_extension_flags(cert.get()) & EXFLAG_XKUSAGE) {
    bool ek_usage = false;
    if (auto* ekus = static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(cert.get(), NID_ext_key_usage, nullptr, nullptr))) {
      for (int i = 0; i < sk_ASN1_OBJECT_num(ekus); ++i) {
        char oid[64] = {0};
        OBJ_obj2txt(oid, sizeof oid, sk_ASN1_OBJECT_value(ekus, i), 1);
        if (std::string_view(oid) == "2.23.133.8.1") ek_usage = true;
      }
      EXTENDED_KEY_USAGE_free(ekus);
    }
    if (!ek_usage) return refuse("the certificate's extended key usage is not tcg-kp-EKCertificate");
  }

  // The EK public area: the profile's RSA-2048 storage key, whose parameters make_credential assumes.
  auto pub = parse_public(ek_tpm2b_public);
  if (!pub) return refuse("the EK public area does not parse");
  const TPMT_PUBLIC& a = pub->publicArea;
  if (a.type != TPM2_ALG_RSA || a.nameAlg != TPM2_ALG_SHA256 || !has(a.objectAttributes, TPMA_OBJECT_RESTRICTED) ||
      !has(a.objectAttributes, TPMA_OBJECT_DECRYPT) || !has(a.objectAttributes, TPMA_OBJECT_FIXEDTPM) ||
      a.parameters.rsaDetail.symmetric.algorithm != TPM2_ALG_AES || a.parameters.rsaDetail.symmetric.keyBits.aes != 128 ||
      a.parameters.rsaDetail.symmetric.mode.aes != TPM2_ALG_CFB || a.parameters.rsaDetail.keyBits != 2048)
    return refuse("the EK is not the TCG profile's RSA-2048 storage key (template L-1)");
  auto from_area = public_key_from_area(ek_tpm2b_public);
  if (!from_area) return refuse("the EK public area's key is unusable");

  EVP_PKEY* cert_key = X509_get0_pubkey(cert.get());
  if (cert_key == nullptr) return refuse("the EK certificate has no usable key");
  EVP_PKEY_up_ref(cert_key);
  auto key = crypto::key_access::adopt(ossl_ptr<EVP_PKEY>(cert_key));
  if (!key || key->der() != from_area->der()) return refuse("the EK certificate's key is not the EK's");

  char issuer[256] = {0};
  X509_NAME_oneline(X509_get_issuer_name(cert.get()), issuer, sizeof issuer);
  std::string issuer_text = issuer;
  if (!issuer_text.empty() && issuer_text[0] == '/') issuer_text.erase(0, 1);
  return verified_endorsement{std::move(key).value(), issuer_text,
                              crypto::digest(hash_algorithm::sha256, certificate_der)};
}

result<attestation_key> check_attestation_key(byte_view ak_tpm2b_public) {
  auto pub = parse_public(ak_tpm2b_public);
  if (!pub) return refuse("the AK public area does not parse");
  const TPMT_PUBLIC& a = pub->publicArea;
  const TPMA_OBJECT attrs = a.objectAttributes;
  if (!has(attrs, TPMA_OBJECT_RESTRICTED) || !has(attrs, TPMA_OBJECT_SIGN_ENCRYPT) || has(attrs, TPMA_OBJECT_DECRYPT))
    return refuse("the AK is not a restricted signing key");
  if (!has(attrs, TPMA_OBJECT_FIXEDTPM) || !has(attrs, TPMA_OBJECT_FIXEDPARENT) ||
      !has(attrs, TPMA_OBJECT_SENSITIVEDATAORIGIN))
    return refuse("the AK is not fixedTPM, fixedParent and sensitiveDataOrigin");
  if (a.type != TPM2_ALG_ECC || a.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
      a.parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
      a.parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
    return refuse("the AK is not ECDSA P-256 with the ECDSA-SHA256 scheme");
  auto key = public_key_from_area(ak_tpm2b_public);
  if (!key) return refuse("the AK's key is unusable");
  auto name = object_name(ak_tpm2b_public);
  if (!name) return name.error();
  return attestation_key{std::move(key).value(), std::move(name).value()};
}

status verify_certification(const attestation_key& ak, byte_view attest, byte_view signature, byte_view qualifying_data,
                            byte_view key_tpm2b_public, certified_use use, const crypto::public_key& expected) {
  if (!crypto::verify_digest(ak.key, ak.key.type(), hash_algorithm::sha256, crypto::digest(hash_algorithm::sha256, attest),
                             signature)
           .ok())
    return refuse("the certification is not signed by the AK");
  auto info = unmarshal<TPMS_ATTEST, Tss2_MU_TPMS_ATTEST_Unmarshal>(attest);
  if (!info) return refuse("the certification does not parse as TPMS_ATTEST");
  if (info->magic != TPM2_GENERATED_VALUE || info->type != TPM2_ST_ATTEST_CERTIFY)
    return refuse("the signed structure is not a TPM-generated certification");
  if (!crypto::constant_time_equal(byte_view(info->extraData.buffer, info->extraData.size), qualifying_data))
    return refuse("the certification's qualifying data is not this verifier's");
  auto name = object_name(key_tpm2b_public);
  if (!name) return name.error();
  const TPM2B_NAME& certified = info->attested.certify.name;
  if (!crypto::constant_time_equal(byte_view(certified.name, certified.size), *name))
    return refuse("the certification is for another key");
  auto pub = parse_public(key_tpm2b_public);
  const TPMA_OBJECT attrs = pub->publicArea.objectAttributes;
  if (!has(attrs, TPMA_OBJECT_FIXEDTPM) || !has(attrs, TPMA_OBJECT_FIXEDPARENT) ||
      !has(attrs, TPMA_OBJECT_SENSITIVEDATAORIGIN))
    return refuse("the certified key is not fixedTPM, fixedParent and sensitiveDataOrigin: it may exist outside the TPM");
  if (has(attrs, TPMA_OBJECT_RESTRICTED)) return refuse("the certified key is restricted");
  const bool sign = has(attrs, TPMA_OBJECT_SIGN_ENCRYPT), decrypt = has(attrs, TPMA_OBJECT_DECRYPT);
  if (use == certified_use::signing && (!sign || decrypt)) return refuse("the certified key is not a signing-only key");
  if (use == certified_use::ecdh && (!decrypt || sign)) return refuse("the certified key is not a decrypt-only (ECDH) key");
  auto key = public_key_from_area(key_tpm2b_public);
  if (!key || key->der() != expected.der()) return refuse("the certified key is not the key of this handshake");
  return {};
}

result<credential> make_credential(const crypto::public_key& ek, byte_view ak_name, byte_view secret) {
  if (secret.empty() || secret.size() > 32) return status{status_code::invalid_field, "a credential secret is 1..32 bytes"};
  if (ek.type().scheme != signature_scheme::rsa_pss || ek.type().rsa_bits != 2048)
    return status{status_code::wrong_key, "make_credential needs the RSA-2048 EK"};
  // seed, OAEP-encrypted to the EK with the label "IDENTITY\0".
  const bytes seed = crypto::random_bytes(32);
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, crypto::pkey_of(ek), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1)
    crypto::throw_crypto_error("RSA-OAEP set-up");
  static const unsigned char kIdentity[] = "IDENTITY";  // 9 bytes with its NUL, as the TPM hashes it
  void* label = OPENSSL_memdup(kIdentity, sizeof kIdentity);
  if (label == nullptr || EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, sizeof kIdentity) != 1) {
    OPENSSL_free(label);
    crypto::throw_crypto_error("EVP_PKEY_CTX_set0_rsa_oaep_label");
  }
  std::size_t enc_len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &enc_len, seed.data(), seed.size()) != 1) crypto::throw_crypto_error("RSA-OAEP");
  bytes enc(enc_len);
  if (EVP_PKEY_encrypt(ctx.get(), enc.data(), &enc_len, seed.data(), seed.size()) != 1) crypto::throw_crypto_error("RSA-OAEP");
  enc.resize(enc_len);

  // The credential (TPM2B_DIGEST-marshalled), AES-128-CFB under KDFa(seed, "STORAGE", name), zero IV.
  const secret_bytes sym = kdfa_sha256(seed, "STORAGE", ak_name, 16);
  const secret_bytes hmac_key = kdfa_sha256(seed, "INTEGRITY", {}, 32);
  bytes plain;
  put_be16(plain, secret.size());
  plain.insert(plain.end(), secret.begin(), secret.end());
  bytes enc_identity(plain.size());
  {
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    const unsigned char iv[16] = {0};
    int out_len = 0, final_len = 0;
    if (!c || EVP_EncryptInit_ex(c.get(), EVP_aes_128_cfb128(), nullptr, sym.data(), iv) != 1 ||
        EVP_EncryptUpdate(c.get(), enc_identity.data(), &out_len, plain.data(), static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(c.get(), enc_identity.data() + out_len, &final_len) != 1 ||
        static_cast<std::size_t>(out_len + final_len) != plain.size())
      crypto::throw_crypto_error("AES-128-CFB");
  }
  OPENSSL_cleanse(plain.data(), plain.size());
  bytes mac_input = enc_identity;
  mac_input.insert(mac_input.end(), ak_name.begin(), ak_name.end());
  const bytes outer = crypto::hmac(hash_algorithm::sha256, hmac_key.view(), mac_input);

  credential out;
  put_be16(out.id_object, 2 + outer.size() + enc_identity.size());
  put_be16(out.id_object, outer.size());
  out.id_object.insert(out.id_object.end(), outer.begin(), outer.end());
  out.id_object.insert(out.id_object.end(), enc_identity.begin(), enc_identity.end());
  put_be16(out.encrypted_secret, enc.size());
  out.encrypted_secret.insert(out.encrypted_secret.end(), enc.begin(), enc.end());
  return out;
}

}  // namespace agentbus::tpm::attestation

namespace agentbus::tpm {

result<std::string> endorsement_fingerprint(const endorsement& ek) {
  auto key = attestation::public_key_from_area(ek.public_area);
  if (!key) return status{status_code::not_attested, "the EK public area does not parse: " + key.error().detail()};
  return key->fingerprint_hex();
}

}  // namespace agentbus::tpm
