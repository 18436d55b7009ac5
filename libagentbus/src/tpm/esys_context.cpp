#include "tpm/esys_context.hpp"

#include "tpm/tss_error.hpp"

namespace agentbus::tpm {

esys_context::esys_context(std::string tcti) : tcti_(std::move(tcti)) {
  // An empty configuration would make the TCTI loader probe default addresses
  // (localhost:2321 and friends), which on a shared machine can be someone
  // else's TPM. Every TCTI is explicit.
  if (tcti_.empty()) throw tpm_error("no TCTI given: agentbus never falls back to a default TPM address");
  check(Tss2_TctiLdr_Initialize(tcti_.c_str(), &tcti_ctx_), "Tss2_TctiLdr_Initialize", tcti_);
  TSS2_RC rc = Esys_Initialize(&esys_, tcti_ctx_, nullptr);
  if (rc != TSS2_RC_SUCCESS) {
    Tss2_TctiLdr_Finalize(&tcti_ctx_);
    check(rc, "Esys_Initialize", tcti_);
  }
}

esys_context::~esys_context() {
  if (esys_ != nullptr) Esys_Finalize(&esys_);
  if (tcti_ctx_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_ctx_);
}

void transient_object::reset() noexcept {
  if (ctx_ != nullptr && handle_ != ESYS_TR_NONE) {
    // A failed flush (TPM gone) leaves nothing we can do; the handle is dropped.
    (void)Esys_FlushContext(ctx_, handle_);
  }
  handle_ = ESYS_TR_NONE;
}

}  // namespace agentbus::tpm
