// tss_error.hpp — the one checker for every TSS2 return code (internal).
#pragma once

#include <tss2/tss2_common.h>

#include <string>

#include "agentbus/status.hpp"
#include "agentbus/tpm.hpp"

namespace agentbus::tpm {

// describe_rc renders "Esys_Sign failed: 0x000001d5 (tpm:parameter(1):structure is
// the wrong size) [tcti swtpm:path=...]".
std::string describe_rc(TSS2_RC rc, const char* call, const std::string& tcti);

// check throws tpm_error for any rc other than TSS2_RC_SUCCESS.
void check(TSS2_RC rc, const char* call, const std::string& tcti);

// rc_is compares the TPM-layer response code, ignoring the parameter/handle/
// session number bits the TPM adds (0x1d5 is "size" on parameter 1).
bool rc_is(TSS2_RC rc, TSS2_RC format1_code) noexcept;

}  // namespace agentbus::tpm
