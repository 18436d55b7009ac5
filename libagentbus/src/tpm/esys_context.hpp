// esys_context.hpp — RAII for the ESAPI context, its TCTI, ESAPI outputs and
// transient objects (internal). Not thread-safe: owned by the TPM worker thread.
#pragma once

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <memory>
#include <string>

namespace agentbus::tpm {

// esys_free releases ESAPI-allocated outputs (Esys_Free).
struct esys_free {
  void operator()(void* p) const noexcept { Esys_Free(p); }
};
template <typename T>
using esys_ptr = std::unique_ptr<T, esys_free>;

// esys_context owns the TCTI (opened through the TCTI loader) and the ESAPI
// context. The constructor throws tpm_error naming the TCTI.
class esys_context {
 public:
  explicit esys_context(std::string tcti);
  ~esys_context();
  esys_context(const esys_context&) = delete;
  esys_context& operator=(const esys_context&) = delete;

  ESYS_CONTEXT* get() const noexcept { return esys_; }
  const std::string& tcti() const noexcept { return tcti_; }

 private:
  std::string tcti_;
  TSS2_TCTI_CONTEXT* tcti_ctx_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
};

// transient_object is a loaded key (or primary): flushed on destruction, which
// also closes its ESYS_TR (flush *or* close, never both).
class transient_object {
 public:
  transient_object() = default;
  transient_object(ESYS_CONTEXT* ctx, ESYS_TR handle) noexcept : ctx_(ctx), handle_(handle) {}
  ~transient_object() { reset(); }
  transient_object(transient_object&& o) noexcept : ctx_(o.ctx_), handle_(o.handle_) { o.handle_ = ESYS_TR_NONE; }
  transient_object& operator=(transient_object&& o) noexcept {
    if (this != &o) {
      reset();
      ctx_ = o.ctx_;
      handle_ = o.handle_;
      o.handle_ = ESYS_TR_NONE;
    }
    return *this;
  }
  transient_object(const transient_object&) = delete;
  transient_object& operator=(const transient_object&) = delete;

  ESYS_TR get() const noexcept { return handle_; }
  explicit operator bool() const noexcept { return handle_ != ESYS_TR_NONE; }
  void reset() noexcept;

 private:
  ESYS_CONTEXT* ctx_ = nullptr;
  ESYS_TR handle_ = ESYS_TR_NONE;
};

}  // namespace agentbus::tpm
