// tpm_attestation.cpp — the TPM's side of attestation (internal; the worker thread
// runs these): the endorsement key and its certificate, an attestation key (AK),
// TPM2_Certify of a key by the AK, and TPM2_ActivateCredential. The verifier's side
// (certificate chain, names, MakeCredential in software) is attestation.cpp.
//
// Slots: ActivateCredential holds the AK, the EK (persistent, but a command still
// takes an object slot for it) and the storage key; swtpm and many chips have three,
// so every cached key is flushed first.
#include <openssl/crypto.h>

#include <cstring>

#include "tpm/tpm_device.hpp"
#include "tpm/tpm_marshal.hpp"
#include "tpm/tpm_templates.hpp"
#include "tpm/tss_error.hpp"

namespace agentbus::tpm {

namespace {

// The TCG EK Credential Profile's low-range RSA-2048 EK and its certificate.
constexpr std::uint32_t kEkHandle = 0x81010001;
constexpr std::uint32_t kEkCertificateIndex = 0x01c00002;
constexpr std::uint16_t kNvChunk = 512;  // below every TPM's TPM2_PT_NV_BUFFER_MAX

// esys_handle closes an ESYS_TR made from a TPM handle (not flushed: it names a
// persistent object or an NV index).
class esys_handle {
 public:
  esys_handle(ESYS_CONTEXT* ctx, ESYS_TR h) : ctx_(ctx), h_(h) {}
  ~esys_handle() {
    if (h_ != ESYS_TR_NONE) (void)Esys_TR_Close(ctx_, &h_);
  }
  esys_handle(const esys_handle&) = delete;
  esys_handle& operator=(const esys_handle&) = delete;
  ESYS_TR get() const noexcept { return h_; }

 private:
  ESYS_CONTEXT* ctx_;
  ESYS_TR h_;
};

bool refused_by_tpm(TSS2_RC rc) {
  return rc_is(rc, TPM2_RC_INTEGRITY) || rc_is(rc, TPM2_RC_VALUE) || rc_is(rc, TPM2_RC_SIZE) ||
         rc_is(rc, TPM2_RC_BINDING) || rc_is(rc, TPM2_RC_ECC_POINT) || rc_is(rc, TPM2_RC_KEY_SIZE);
}

}  // namespace

result<bytes> tpm_device::read_nv(std::uint32_t index) {
  ESYS_TR raw = ESYS_TR_NONE;
  if (Esys_TR_FromTPMPublic(ctx_.get(), index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw) != TSS2_RC_SUCCESS)
    return status{status_code::not_attested, "the TPM has no NV index " + to_hex(bytes{static_cast<std::uint8_t>(index >> 24),
                                                                                        static_cast<std::uint8_t>(index >> 16),
                                                                                        static_cast<std::uint8_t>(index >> 8),
                                                                                        static_cast<std::uint8_t>(index)})};
  esys_handle nv(ctx_.get(), raw);
  TPM2B_NV_PUBLIC* pub_raw = nullptr;
  check(Esys_NV_ReadPublic(ctx_.get(), nv.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub_raw, nullptr),
        "Esys_NV_ReadPublic", tcti());
  esys_ptr<TPM2B_NV_PUBLIC> pub(pub_raw);
  const std::uint16_t size = pub->nvPublic.dataSize;
  bytes out;
  out.reserve(size);
  while (out.size() < size) {
    const auto chunk = static_cast<std::uint16_t>(std::min<std::size_t>(kNvChunk, size - out.size()));
    TPM2B_MAX_NV_BUFFER* data_raw = nullptr;
    check(Esys_NV_Read(ctx_.get(), ESYS_TR_RH_OWNER, nv.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, chunk,
                       static_cast<std::uint16_t>(out.size()), &data_raw),
          "Esys_NV_Read", tcti());
    esys_ptr<TPM2B_MAX_NV_BUFFER> data(data_raw);
    if (data->size == 0) break;
    out.insert(out.end(), data->buffer, data->buffer + data->size);
  }
  return out;
}

result<endorsement> tpm_device::read_endorsement() {
  if (!handle_exists(kEkHandle)) return status{status_code::not_attested, "the TPM has no endorsement key at 0x81010001"};
  ESYS_TR raw = ESYS_TR_NONE;
  if (Esys_TR_FromTPMPublic(ctx_.get(), kEkHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw) != TSS2_RC_SUCCESS)
    return status{status_code::not_attested, "the TPM has no endorsement key at 0x81010001"};
  esys_handle ek(ctx_.get(), raw);
  TPM2B_PUBLIC* pub_raw = nullptr;
  check(Esys_ReadPublic(ctx_.get(), ek.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub_raw, nullptr, nullptr),
        "Esys_ReadPublic", tcti());
  esys_ptr<TPM2B_PUBLIC> pub(pub_raw);
  if (!handle_exists(kEkCertificateIndex))
    return status{status_code::not_attested, "the TPM has no endorsement key certificate at 0x01c00002"};
  auto cert = read_nv(kEkCertificateIndex);
  if (!cert) return cert.error();
  return endorsement{marshal<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Marshal>(*pub), std::move(cert).value()};
}

result<key_blob> tpm_device::create_attestation_key() {
  key_blob meta;
  meta.type = key_type{signature_scheme::ecdsa, 0, ec_curve::p256};
  meta.scheme_hash = hash_algorithm::sha256;
  return create_under_srk(attestation_key_template(), std::move(meta));
}

result<certification> tpm_device::certify(const key_blob& key, const key_blob& ak, byte_view qualifying_data) {
  if (qualifying_data.size() > 64) return status{status_code::too_large, "qualifying data exceeds 64 bytes"};
  auto key_handle = load(key);
  if (!key_handle) return key_handle.error();
  auto ak_handle = load(ak);  // evicts the least recently used other key, never `key`
  if (!ak_handle) return ak_handle.error();
  TPM2B_DATA q{};
  q.size = static_cast<UINT16>(qualifying_data.size());
  std::memcpy(q.buffer, qualifying_data.data(), qualifying_data.size());
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;  // the AK's own (a restricted key carries one)
  TPM2B_ATTEST* att_raw = nullptr;
  TPMT_SIGNATURE* sig_raw = nullptr;
  TSS2_RC rc = Esys_Certify(ctx_.get(), *key_handle, *ak_handle, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, ESYS_TR_NONE, &q,
                            &scheme, &att_raw, &sig_raw);
  if (rc_is(rc, TPM2_RC_KEY) || rc_is(rc, TPM2_RC_SCHEME) || rc_is(rc, TPM2_RC_ATTRIBUTES))
    return status{status_code::wrong_key, describe_rc(rc, "Esys_Certify", tcti())};
  check(rc, "Esys_Certify", tcti());
  esys_ptr<TPM2B_ATTEST> att(att_raw);
  esys_ptr<TPMT_SIGNATURE> sig(sig_raw);
  if (sig->sigAlg != TPM2_ALG_ECDSA) return status{status_code::unsupported_algorithm, "the AK did not sign with ECDSA"};
  const TPMS_SIGNATURE_ECC& e = sig->signature.ecdsa;
  return certification{bytes(att->attestationData, att->attestationData + att->size),
                       crypto::ecdsa_der_from_rs(byte_view(e.signatureR.buffer, e.signatureR.size),
                                                 byte_view(e.signatureS.buffer, e.signatureS.size))};
}

result<secret_bytes> tpm_device::activate_credential(const key_blob& ak, byte_view id_object, byte_view encrypted_secret) {
  auto id = unmarshal<TPM2B_ID_OBJECT, Tss2_MU_TPM2B_ID_OBJECT_Unmarshal>(id_object);
  auto enc = unmarshal<TPM2B_ENCRYPTED_SECRET, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal>(encrypted_secret);
  if (!id || !enc) return status{status_code::malformed, "credential does not parse as TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET"};
  evict_down_to(0);  // the AK, the EK and the storage key fill the three slots
  auto ak_handle = load(ak);
  if (!ak_handle) return ak_handle.error();
  if (!handle_exists(kEkHandle)) return status{status_code::not_attested, "the TPM has no endorsement key at 0x81010001"};
  ESYS_TR raw = ESYS_TR_NONE;
  if (Esys_TR_FromTPMPublic(ctx_.get(), kEkHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw) != TSS2_RC_SUCCESS)
    return status{status_code::not_attested, "the TPM has no endorsement key at 0x81010001"};
  esys_handle ek(ctx_.get(), raw);
  // The EK (template L-1) admits its user only through PolicySecret(TPM_RH_ENDORSEMENT).
  TPMT_SYM_DEF sym{};
  sym.algorithm = TPM2_ALG_NULL;
  ESYS_TR session_raw = ESYS_TR_NONE;
  check(Esys_StartAuthSession(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                              TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &session_raw),
        "Esys_StartAuthSession", tcti());
  transient_object session(ctx_.get(), session_raw);  // flushed however this ends
  check(Esys_PolicySecret(ctx_.get(), ESYS_TR_RH_ENDORSEMENT, session.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                          nullptr, nullptr, nullptr, 0, nullptr, nullptr),
        "Esys_PolicySecret", tcti());
  TPM2B_DIGEST* cert_info_raw = nullptr;
  TSS2_RC rc = Esys_ActivateCredential(ctx_.get(), *ak_handle, ek.get(), ESYS_TR_PASSWORD, session.get(), ESYS_TR_NONE,
                                       &*id, &*enc, &cert_info_raw);
  // libtpms answers a seed that does not decrypt under its EK (a credential made for
  // another TPM) with TPM_RC_FAILURE, and keeps working (attestation_test checks
  // both): for this command it is a refusal, not a broken TPM.
  if (refused_by_tpm(rc) || rc == TPM2_RC_FAILURE)
    return status{status_code::not_attested, "the TPM refused the credential: " + describe_rc(rc, "Esys_ActivateCredential", tcti())};
  check(rc, "Esys_ActivateCredential", tcti());
  esys_ptr<TPM2B_DIGEST> cert_info(cert_info_raw);
  secret_bytes secret(cert_info->buffer, cert_info->size);
  OPENSSL_cleanse(cert_info->buffer, cert_info->size);
  return secret;
}

}  // namespace agentbus::tpm
