#include "tpm/tpm_templates.hpp"

namespace agentbus::tpm {

namespace {
// Keys are non-exportable (fixedTPM/fixedParent), born inside the TPM
// (sensitiveDataOrigin), used with an empty password (userWithAuth) and exempt from
// dictionary-attack lockout (noDA): their auth is not a human secret, and a lockout
// would stop every agent on the host.
constexpr TPMA_OBJECT kServiceKeyAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                              TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                              TPMA_OBJECT_NODA;
}  // namespace

TPMI_ALG_HASH tpm_hash_of(hash_algorithm h) noexcept {
  switch (h) {
    case hash_algorithm::sha256: return TPM2_ALG_SHA256;
    case hash_algorithm::sha384: return TPM2_ALG_SHA384;
    case hash_algorithm::sha512: return TPM2_ALG_SHA512;
    case hash_algorithm::sha3_256: return TPM2_ALG_SHA3_256;
    case hash_algorithm::sha3_384: return TPM2_ALG_SHA3_384;
    case hash_algorithm::sha3_512: return TPM2_ALG_SHA3_512;
  }
  return TPM2_ALG_NULL;
}

TPMI_ECC_CURVE tpm_curve_of(ec_curve c) noexcept {
  switch (c) {
    case ec_curve::p256: return TPM2_ECC_NIST_P256;
    case ec_curve::p384: return TPM2_ECC_NIST_P384;
    case ec_curve::p521: return TPM2_ECC_NIST_P521;
  }
  return TPM2_ECC_NONE;
}

TPM2B_PUBLIC srk_template() noexcept {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kServiceKeyAttributes | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
  p.parameters.eccDetail.symmetric.keyBits.aes = 128;
  p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

TPM2B_PUBLIC signing_key_template(const key_type& type, hash_algorithm scheme_hash) noexcept {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kServiceKeyAttributes | TPMA_OBJECT_SIGN_ENCRYPT;
  if (type.scheme == signature_scheme::rsa_pss) {
    p.type = TPM2_ALG_RSA;
    p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    // Binding the scheme in the key means the TPM itself refuses to make any other
    // kind of signature with it (no PKCS#1 v1.5, no other hash).
    p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSAPSS;
    p.parameters.rsaDetail.scheme.details.rsapss.hashAlg = tpm_hash_of(scheme_hash);
    p.parameters.rsaDetail.keyBits = static_cast<TPMI_RSA_KEY_BITS>(type.rsa_bits);
    p.parameters.rsaDetail.exponent = 0;  // 65537
  } else {
    p.type = TPM2_ALG_ECC;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = tpm_hash_of(scheme_hash);
    p.parameters.eccDetail.curveID = tpm_curve_of(type.curve);
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  }
  return t;
}

TPM2B_PUBLIC attestation_key_template() noexcept {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kServiceKeyAttributes | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

TPM2B_PUBLIC ecdh_key_template(ec_curve curve) noexcept {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kServiceKeyAttributes | TPMA_OBJECT_DECRYPT;
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.eccDetail.curveID = tpm_curve_of(curve);
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

}  // namespace agentbus::tpm
