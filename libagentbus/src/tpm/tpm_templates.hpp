// tpm_templates.hpp — object templates (internal).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include "agentbus/suite.hpp"

namespace agentbus::tpm {

// TPM algorithm identifiers for our enums.
TPMI_ALG_HASH tpm_hash_of(hash_algorithm h) noexcept;
TPMI_ECC_CURVE tpm_curve_of(ec_curve c) noexcept;

// srk_template is the storage primary: ECC P-256, AES-128-CFB, restricted decrypt,
// empty unique (tpm2_createprimary -C o -g sha256 -G ecc256:aes128cfb -a
// "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda"
// makes the same key, which is how tpm2-tools loads our blobs).
TPM2B_PUBLIC srk_template() noexcept;

// signing_key_template: unrestricted signing key, scheme bound to RSA-PSS or ECDSA
// with `scheme_hash`, noDA, non-exportable.
TPM2B_PUBLIC signing_key_template(const key_type& type, hash_algorithm scheme_hash) noexcept;

// attestation_key_template: a restricted ECDSA P-256 signing key with scheme
// ECDSA-SHA256 (an AK, as tpm2_createak -G ecc -g sha256 -s ecdsa makes), noDA.
TPM2B_PUBLIC attestation_key_template() noexcept;

// ecdh_key_template: unrestricted decrypt ECC key usable with ECDH_ZGen.
TPM2B_PUBLIC ecdh_key_template(ec_curve curve) noexcept;

}  // namespace agentbus::tpm
