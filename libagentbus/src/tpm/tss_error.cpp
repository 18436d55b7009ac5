#include "tpm/tss_error.hpp"

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstdio>

namespace agentbus::tpm {

std::string describe_rc(TSS2_RC rc, const char* call, const std::string& tcti) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", rc);
  return std::string(call) + " failed: " + hex + " (" + Tss2_RC_Decode(rc) + ") [tcti " + tcti + "]";
}

void check(TSS2_RC rc, const char* call, const std::string& tcti) {
  if (rc != TSS2_RC_SUCCESS) throw tpm_error(describe_rc(rc, call, tcti), rc);
}

bool rc_is(TSS2_RC rc, TSS2_RC code) noexcept {
  // Codes from ESAPI/TCTI layers carry their layer in the top byte: compare whole.
  if ((rc & 0xffff0000u) != 0 || (code & 0xffff0000u) != 0) return rc == code;
  // Format-one TPM codes (bit 7) add a parameter/handle/session number in bits
  // 6 and 8..11 (0x1d5 is TPM2_RC_SIZE on parameter 1); keep only the error number.
  if (rc & TPM2_RC_FMT1) return (rc & 0xbfu) == (code & 0xbfu);
  return (rc & 0xfffu) == (code & 0xfffu);
}

}  // namespace agentbus::tpm
