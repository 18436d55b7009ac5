#include "tpm/tpm_device.hpp"

#include <chrono>

#include <tss2/tss2_mu.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <spdlog/spdlog.h>

#include "crypto/ossl.hpp"
#include "tpm/tpm_marshal.hpp"
#include "tpm/tpm_templates.hpp"
#include "tpm/tss_error.hpp"

namespace agentbus::tpm {
namespace {

std::string four_chars(std::uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    char c = static_cast<char>((v >> shift) & 0xff);
    if (c != '\0') s.push_back(std::isprint(static_cast<unsigned char>(c)) ? c : '?');
  }
  return s;
}

struct alg_name {
  TPM2_ALG_ID id;
  const char* name;
};
constexpr alg_name kAlgNames[] = {
    {TPM2_ALG_RSA, "rsa"},         {TPM2_ALG_SHA1, "sha1"},         {TPM2_ALG_HMAC, "hmac"},
    {TPM2_ALG_TDES, "tdes"},       {TPM2_ALG_MGF1, "mgf1"},         {TPM2_ALG_CMAC, "cmac"},
    {TPM2_ALG_AES, "aes"},         {TPM2_ALG_KEYEDHASH, "keyedhash"}, {TPM2_ALG_XOR, "xor"},
    {TPM2_ALG_SHA256, "sha256"},   {TPM2_ALG_SHA384, "sha384"},     {TPM2_ALG_SHA512, "sha512"},
    {TPM2_ALG_NULL, "null"},       {TPM2_ALG_SM3_256, "sm3_256"},   {TPM2_ALG_SM4, "sm4"},
    {TPM2_ALG_RSASSA, "rsassa"},   {TPM2_ALG_RSAES, "rsaes"},       {TPM2_ALG_RSAPSS, "rsapss"},
    {TPM2_ALG_OAEP, "oaep"},       {TPM2_ALG_ECDSA, "ecdsa"},       {TPM2_ALG_ECDH, "ecdh"},
    {TPM2_ALG_ECDAA, "ecdaa"},     {TPM2_ALG_SM2, "sm2"},           {TPM2_ALG_ECSCHNORR, "ecschnorr"},
    {TPM2_ALG_ECMQV, "ecmqv"},     {TPM2_ALG_KDF1_SP800_56A, "kdf1_sp800_56a"},
    {TPM2_ALG_KDF2, "kdf2"},       {TPM2_ALG_KDF1_SP800_108, "kdf1_sp800_108"},
    {TPM2_ALG_ECC, "ecc"},         {TPM2_ALG_SYMCIPHER, "symcipher"}, {TPM2_ALG_CAMELLIA, "camellia"},
    {TPM2_ALG_SHA3_256, "sha3_256"}, {TPM2_ALG_SHA3_384, "sha3_384"}, {TPM2_ALG_SHA3_512, "sha3_512"},
    {TPM2_ALG_CTR, "ctr"},         {TPM2_ALG_OFB, "ofb"},           {TPM2_ALG_CBC, "cbc"},
    {TPM2_ALG_CFB, "cfb"},         {TPM2_ALG_ECB, "ecb"},
};

std::string name_of_alg(TPM2_ALG_ID id) {
  for (const auto& a : kAlgNames)
    if (a.id == id) return a.name;
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", id);
  return buf;
}

}  // namespace

tpm_device::tpm_device(std::string tcti) : ctx_(std::move(tcti)) {
  // The SRK template is fixed, so CreatePrimary derives the same key every time from
  // the owner seed: nothing needs to be persisted for the parent.
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC tmpl = srk_template();
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  ESYS_TR handle = ESYS_TR_NONE;
  TSS2_RC rc = Esys_CreatePrimary(ctx_.get(), ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                                  &tmpl, &outside, &pcrs, &handle, nullptr, nullptr, nullptr, nullptr);
  if (rc_is(rc, TPM2_RC_OBJECT_MEMORY)) {
    // Every object slot is taken: a process using this TPM without a resource
    // manager was killed with its keys loaded (swtpm keeps them). agentbus gives each
    // identity its own TPM, or goes through /dev/tpmrm0, which shows a connection
    // only its own objects: either way the loaded transients are stale leftovers.
    std::size_t flushed = flush_stale_transients();
    spdlog::warn("TPM at {} had no free object slot: flushed {} stale transient object(s) left by a killed process",
                 ctx_.tcti(), flushed);
    rc = Esys_CreatePrimary(ctx_.get(), ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                            &tmpl, &outside, &pcrs, &handle, nullptr, nullptr, nullptr, nullptr);
  }
  check(rc, "Esys_CreatePrimary(SRK)", ctx_.tcti());
  srk_ = transient_object(ctx_.get(), handle);
}

std::size_t tpm_device::flush_stale_transients() {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  check(Esys_GetCapability(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, TPM2_TRANSIENT_FIRST,
                           TPM2_MAX_CAP_HANDLES, &more, &raw),
        "Esys_GetCapability(HANDLES)", ctx_.tcti());
  esys_ptr<TPMS_CAPABILITY_DATA> data(raw);
  std::size_t flushed = 0;
  for (UINT32 i = 0; i < data->data.handles.count; ++i) {
    ESYS_TR tr = ESYS_TR_NONE;
    if (Esys_TR_FromTPMPublic(ctx_.get(), data->data.handles.handle[i], ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr) !=
        TSS2_RC_SUCCESS)
      continue;
    if (Esys_FlushContext(ctx_.get(), tr) == TSS2_RC_SUCCESS) ++flushed;
    else (void)Esys_TR_Close(ctx_.get(), &tr);
  }
  return flushed;
}

bool tpm_device::handle_exists(std::uint32_t handle) {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  check(Esys_GetCapability(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, handle, 1, &more, &raw),
        "Esys_GetCapability(HANDLES)", tcti());
  esys_ptr<TPMS_CAPABILITY_DATA> data(raw);
  return data->data.handles.count > 0 && data->data.handles.handle[0] == handle;
}

std::vector<std::uint32_t> tpm_device::fixed_properties(std::uint32_t first, std::uint32_t count) {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  check(Esys_GetCapability(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, first, count,
                           &more, &raw),
        "Esys_GetCapability(TPM_PROPERTIES)", tcti());
  esys_ptr<TPMS_CAPABILITY_DATA> data(raw);
  std::vector<std::uint32_t> out(count, 0);
  for (UINT32 i = 0; i < data->data.tpmProperties.count; ++i) {
    const auto& p = data->data.tpmProperties.tpmProperty[i];
    if (p.property >= first && p.property < first + count) out[p.property - first] = p.value;
  }
  return out;
}

tpm_info tpm_device::info() {
  tpm_info info;
  info.tcti = tcti();
  // TPM2_PT_FAMILY_INDICATOR .. TPM2_PT_FIRMWARE_VERSION_2 are consecutive.
  auto props = fixed_properties(TPM2_PT_FAMILY_INDICATOR, TPM2_PT_FIRMWARE_VERSION_2 - TPM2_PT_FAMILY_INDICATOR + 1);
  auto at = [&](std::uint32_t pt) { return props[pt - TPM2_PT_FAMILY_INDICATOR]; };
  info.manufacturer = four_chars(at(TPM2_PT_MANUFACTURER));
  for (std::uint32_t pt = TPM2_PT_VENDOR_STRING_1; pt <= TPM2_PT_VENDOR_STRING_4; ++pt) info.vendor += four_chars(at(pt));
  info.spec_revision = at(TPM2_PT_REVISION);
  std::uint32_t fw1 = at(TPM2_PT_FIRMWARE_VERSION_1), fw2 = at(TPM2_PT_FIRMWARE_VERSION_2);
  char fw[32];
  std::snprintf(fw, sizeof fw, "%08x.%08x", fw1, fw2);  // as tpm2_getcap prints it; vendors encode differently
  info.firmware = fw;
  // swtpm (libtpms) reports manufacturer "IBM" with vendor "SW   TPM"; the Microsoft
  // reference simulator reports "MSFT" with "xCG fTPM"-style strings. Both are
  // simulators; a policy may refuse them (allow_simulator).
  info.simulator = (info.manufacturer == "IBM" && info.vendor.rfind("SW", 0) == 0) ||
                   (info.manufacturer == "MSFT" && info.vendor.find("Simu") != std::string::npos);

  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  check(Esys_GetCapability(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_ALGS, TPM2_ALG_FIRST,
                           TPM2_MAX_CAP_ALGS, &more, &raw),
        "Esys_GetCapability(ALGS)", tcti());
  esys_ptr<TPMS_CAPABILITY_DATA> algs(raw);
  for (UINT32 i = 0; i < algs->data.algorithms.count; ++i)
    info.algorithms.push_back(name_of_alg(algs->data.algorithms.algProperties[i].alg));

  raw = nullptr;
  check(Esys_GetCapability(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_ECC_CURVES, TPM2_ECC_NONE,
                           TPM2_MAX_ECC_CURVES, &more, &raw),
        "Esys_GetCapability(ECC_CURVES)", tcti());
  esys_ptr<TPMS_CAPABILITY_DATA> curves(raw);
  for (UINT32 i = 0; i < curves->data.eccCurves.count; ++i) {
    switch (curves->data.eccCurves.eccCurves[i]) {
      case TPM2_ECC_NIST_P256: info.curves.push_back(ec_curve::p256); break;
      case TPM2_ECC_NIST_P384: info.curves.push_back(ec_curve::p384); break;
      case TPM2_ECC_NIST_P521: info.curves.push_back(ec_curve::p521); break;
      default: break;
    }
  }

  for (unsigned bits : {1024u, 2048u, 3072u, 4096u}) {
    key_type t{signature_scheme::rsa_pss, bits, ec_curve::p256};
    if (check_key_type(t).ok()) info.rsa_bits.push_back(bits);
  }

  raw = nullptr;
  check(Esys_GetCapability(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0, 1, &more, &raw),
        "Esys_GetCapability(PCRS)", tcti());
  esys_ptr<TPMS_CAPABILITY_DATA> pcrs(raw);
  for (UINT32 i = 0; i < pcrs->data.assignedPCR.count; ++i) {
    const auto& sel = pcrs->data.assignedPCR.pcrSelections[i];
    bool any = false;
    for (UINT8 j = 0; j < sel.sizeofSelect; ++j) any = any || sel.pcrSelect[j] != 0;
    if (any) info.pcr_banks.push_back(name_of_alg(sel.hash));
  }
  return info;
}

status tpm_device::check_key_type(const key_type& type) {
  TPMT_PUBLIC_PARMS parms{};
  if (type.scheme == signature_scheme::rsa_pss) {
    parms.type = TPM2_ALG_RSA;
    parms.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    parms.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    parms.parameters.rsaDetail.keyBits = static_cast<TPMI_RSA_KEY_BITS>(type.rsa_bits);
  } else {
    parms.type = TPM2_ALG_ECC;
    parms.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    parms.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    parms.parameters.eccDetail.curveID = tpm_curve_of(type.curve);
    parms.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  }
  TSS2_RC rc = Esys_TestParms(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &parms);
  if (rc == TSS2_RC_SUCCESS) return {};
  // TestParms answers with a parameter error (value, curve, key size) when the
  // algorithm is missing; anything else (TCTI, I/O) is a broken environment.
  if ((rc & 0xffff0000u) != 0) check(rc, "Esys_TestParms", tcti());
  return {status_code::unsupported_algorithm,
          "this TPM does not implement " + type.describe() + " (" + describe_rc(rc, "TPM2_TestParms", tcti()) + ")"};
}

void tpm_device::evict_down_to(std::size_t keep) {
  while (loaded_.size() > keep) {
    auto lru = std::min_element(loaded_.begin(), loaded_.end(),
                                [](const loaded_key& a, const loaded_key& b) { return a.last_use < b.last_use; });
    const auto started = std::chrono::steady_clock::now();
    loaded_.erase(lru);  // flushes (transient_object's destructor)
    note_key_traffic("key_flush", started, true);
  }
}

result<key_blob> tpm_device::create_under_srk(const TPM2B_PUBLIC& tmpl, key_blob meta) {
  // TPM2_Create needs a free object slot for the key it generates.
  evict_down_to(kMaxLoadedKeys - 1);
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  TPM2B_PRIVATE* priv = nullptr;
  TPM2B_PUBLIC* pub = nullptr;
  check(Esys_Create(ctx_.get(), srk_.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl, &outside,
                    &pcrs, &priv, &pub, nullptr, nullptr, nullptr),
        "Esys_Create", tcti());
  esys_ptr<TPM2B_PRIVATE> priv_owner(priv);
  esys_ptr<TPM2B_PUBLIC> pub_owner(pub);
  meta.public_area = marshal<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Marshal>(*pub);
  meta.private_area = marshal<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Marshal>(*priv);
  return meta;
}

result<key_blob> tpm_device::create_signing_key(const key_type& type, hash_algorithm digest_hash) {
  if (status st = check_key_type(type); !st.ok()) return st;
  key_blob meta;
  meta.type = type;
  meta.scheme_hash = scheme_hash_for(digest_hash);
  return create_under_srk(signing_key_template(type, meta.scheme_hash), std::move(meta));
}

result<key_blob> tpm_device::create_ecdh_key(ec_curve curve) {
  key_type type{signature_scheme::ecdsa, 0, curve};
  if (status st = check_key_type(type); !st.ok()) return st;
  key_blob meta;
  meta.type = type;
  meta.ecdh = true;
  return create_under_srk(ecdh_key_template(curve), std::move(meta));
}

result<ESYS_TR> tpm_device::load(const key_blob& key) {
  ++use_clock_;
  for (auto& k : loaded_) {
    if (k.public_area == key.public_area) {
      k.last_use = use_clock_;
      return k.object.get();
    }
  }
  auto pub = parse_public(key.public_area);
  auto priv = unmarshal<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Unmarshal>(key.private_area);
  if (!pub || !priv) return status{status_code::malformed, "key blob does not parse as TPM2B_PUBLIC/TPM2B_PRIVATE"};
  evict_down_to(kMaxLoadedKeys - 1);
  ESYS_TR handle = ESYS_TR_NONE;
  const auto started = std::chrono::steady_clock::now();
  TSS2_RC rc = Esys_Load(ctx_.get(), srk_.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &*priv, &*pub, &handle);
  note_key_traffic("key_load", started, rc == TSS2_RC_SUCCESS);
  if (rc != TSS2_RC_SUCCESS) {
    // Integrity failures mean the blob was made under another storage key (another
    // TPM, or a TPM whose owner seed was cleared): the caller's problem, not ours.
    if (rc_is(rc, TPM2_RC_INTEGRITY) || rc_is(rc, TPM2_RC_BINDING) || rc_is(rc, TPM2_RC_SIZE) ||
        rc_is(rc, TPM2_RC_KEY_SIZE) || rc_is(rc, TPM2_RC_VALUE))
      return status{status_code::wrong_key, "key blob does not belong to this TPM's storage key: " +
                                                describe_rc(rc, "Esys_Load", tcti())};
    check(rc, "Esys_Load", tcti());
  }
  loaded_.push_back(loaded_key{key.public_area, transient_object(ctx_.get(), handle), use_clock_});
  return handle;
}

result<bytes> tpm_device::sign_digest(const key_blob& key, byte_view digest) {
  if (key.ecdh) return status{status_code::wrong_key, "an ECDH key cannot sign"};
  if (digest.size() != hash_size(key.scheme_hash))
    return status{status_code::invalid_field, "digest is " + std::to_string(digest.size()) + " bytes, the key's " +
                                                  std::string(hash_name(key.scheme_hash)) + " scheme needs " +
                                                  std::to_string(hash_size(key.scheme_hash))};
  auto handle = load(key);
  if (!handle) return handle.error();
  TPM2B_DIGEST in{};
  in.size = static_cast<UINT16>(digest.size());
  std::memcpy(in.buffer, digest.data(), digest.size());
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;  // use the scheme bound into the key
  // A null ticket: unrestricted keys sign external digests without proof that the
  // TPM hashed them (restricted keys would refuse, NOTES #14).
  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  TPMT_SIGNATURE* raw = nullptr;
  check(Esys_Sign(ctx_.get(), *handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &in, &scheme, &validation, &raw),
        "Esys_Sign", tcti());
  esys_ptr<TPMT_SIGNATURE> sig(raw);
  if (sig->sigAlg == TPM2_ALG_ECDSA) {
    const auto& e = sig->signature.ecdsa;
    return crypto::ecdsa_der_from_rs(byte_view(e.signatureR.buffer, e.signatureR.size),
                                     byte_view(e.signatureS.buffer, e.signatureS.size));
  }
  if (sig->sigAlg == TPM2_ALG_RSAPSS) {
    const auto& r = sig->signature.rsapss.sig;
    return bytes(r.buffer, r.buffer + r.size);
  }
  throw tpm_error("Esys_Sign returned unexpected signature algorithm " + name_of_alg(sig->sigAlg));
}

result<secret_bytes> tpm_device::ecdh_zgen(const key_blob& key, const crypto::public_key& peer) {
  if (!key.ecdh) return status{status_code::wrong_key, "not an ECDH key"};
  if (peer.type().scheme != signature_scheme::ecdsa || peer.type().curve != key.type.curve)
    return status{status_code::wrong_key, "peer key is not on " + std::string(curve_name(key.type.curve))};
  auto handle = load(key);
  if (!handle) return handle.error();
  auto [x, y] = crypto::ec_point_coordinates(peer);
  TPM2B_ECC_POINT in{};
  in.point.x.size = static_cast<UINT16>(x.size());
  std::memcpy(in.point.x.buffer, x.data(), x.size());
  in.point.y.size = static_cast<UINT16>(y.size());
  std::memcpy(in.point.y.buffer, y.data(), y.size());
  TPM2B_ECC_POINT* raw = nullptr;
  TSS2_RC rc = Esys_ECDH_ZGen(ctx_.get(), *handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &in, &raw);
  if (rc_is(rc, TPM2_RC_ECC_POINT) || rc_is(rc, TPM2_RC_NO_RESULT))
    return status{status_code::invalid_field, "peer point refused by the TPM"};
  check(rc, "Esys_ECDH_ZGen", tcti());
  esys_ptr<TPM2B_ECC_POINT> out(raw);
  secret_bytes z(out->point.x.buffer, out->point.x.size);
  OPENSSL_cleanse(out->point.x.buffer, out->point.x.size);  // ESAPI's copy of Z is a secret too
  OPENSSL_cleanse(out->point.y.buffer, out->point.y.size);
  return z;
}

void tpm_device::pcr_extend(unsigned index, hash_algorithm bank, byte_view digest) {
  if (index > 23) throw tpm_error("PCR index " + std::to_string(index) + " out of range");
  if (digest.size() != hash_size(bank)) throw tpm_error("PCR extend digest has the wrong size for its bank");
  TPML_DIGEST_VALUES values{};
  values.count = 1;
  values.digests[0].hashAlg = tpm_hash_of(bank);
  std::memcpy(reinterpret_cast<std::uint8_t*>(&values.digests[0].digest), digest.data(), digest.size());
  check(Esys_PCR_Extend(ctx_.get(), ESYS_TR_PCR0 + index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values),
        "Esys_PCR_Extend", tcti());
}

bytes tpm_device::pcr_read(unsigned index, hash_algorithm bank) {
  if (index > 23) throw tpm_error("PCR index " + std::to_string(index) + " out of range");
  TPML_PCR_SELECTION sel{};
  sel.count = 1;
  sel.pcrSelections[0].hash = tpm_hash_of(bank);
  sel.pcrSelections[0].sizeofSelect = 3;
  sel.pcrSelections[0].pcrSelect[index / 8] = static_cast<BYTE>(1u << (index % 8));
  UINT32 update_counter = 0;
  TPML_PCR_SELECTION* out_sel = nullptr;
  TPML_DIGEST* values = nullptr;
  check(Esys_PCR_Read(ctx_.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &update_counter, &out_sel, &values),
        "Esys_PCR_Read", tcti());
  esys_ptr<TPML_PCR_SELECTION> sel_owner(out_sel);
  esys_ptr<TPML_DIGEST> values_owner(values);
  if (values->count != 1) throw tpm_error("PCR bank " + std::string(hash_name(bank)) + " is not allocated on this TPM");
  return bytes(values->digests[0].buffer, values->digests[0].buffer + values->digests[0].size);
}

bytes tpm_device::storage_key_name() {
  TPM2B_NAME* raw = nullptr;
  check(Esys_TR_GetName(ctx_.get(), srk_.get(), &raw), "Esys_TR_GetName", tcti());
  esys_ptr<TPM2B_NAME> name(raw);
  return bytes(name->name, name->name + name->size);
}

result<crypto::public_key> tpm::public_key_of(const key_blob& blob) {
  auto pub = parse_public(blob.public_area);
  if (!pub) return status{status_code::malformed, "key blob public area does not parse"};
  const TPMT_PUBLIC& p = pub->publicArea;
  if (p.type == TPM2_ALG_ECC) {
    ec_curve curve;
    switch (p.parameters.eccDetail.curveID) {
      case TPM2_ECC_NIST_P256: curve = ec_curve::p256; break;
      case TPM2_ECC_NIST_P384: curve = ec_curve::p384; break;
      case TPM2_ECC_NIST_P521: curve = ec_curve::p521; break;
      default: return status{status_code::unsupported_algorithm, "key blob uses an unsupported curve"};
    }
    return crypto::public_key::from_ec_point(curve, byte_view(p.unique.ecc.x.buffer, p.unique.ecc.x.size),
                                             byte_view(p.unique.ecc.y.buffer, p.unique.ecc.y.size));
  }
  if (p.type == TPM2_ALG_RSA)
    return crypto::public_key::from_rsa_modulus(byte_view(p.unique.rsa.buffer, p.unique.rsa.size),
                                                p.parameters.rsaDetail.exponent);
  return status{status_code::unsupported_algorithm, "key blob is neither RSA nor ECC"};
}

}  // namespace agentbus::tpm
