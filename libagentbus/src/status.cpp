#include "agentbus/status.hpp"

#include <cstdio>
#include <cstdlib>

namespace agentbus {

std::string_view status_code_name(status_code code) noexcept {
  switch (code) {
    case status_code::ok: return "ok";
    case status_code::malformed: return "malformed";
    case status_code::too_large: return "too_large";
    case status_code::trailing_bytes: return "trailing_bytes";
    case status_code::duplicate_key: return "duplicate_key";
    case status_code::too_deep: return "too_deep";
    case status_code::unsupported_version: return "unsupported_version";
    case status_code::invalid_field: return "invalid_field";
    case status_code::unknown_role: return "unknown_role";
    case status_code::suite_mismatch: return "suite_mismatch";
    case status_code::unknown_suite: return "unknown_suite";
    case status_code::assurance_refused: return "assurance_refused";
    case status_code::policy_invalid: return "policy_invalid";
    case status_code::bad_signature: return "bad_signature";
    case status_code::bad_mac: return "bad_mac";
    case status_code::wrong_key: return "wrong_key";
    case status_code::unsupported_algorithm: return "unsupported_algorithm";
    case status_code::bad_batch_proof: return "bad_batch_proof";
    case status_code::bad_batch_signature: return "bad_batch_signature";
    case status_code::batch_too_large: return "batch_too_large";
    case status_code::unknown_agent: return "unknown_agent";
    case status_code::revoked_agent: return "revoked_agent";
    case status_code::replayed: return "replayed";
    case status_code::stale: return "stale";
    case status_code::spoofed_sender: return "spoofed_sender";
    case status_code::acl_denied: return "acl_denied";
    case status_code::not_deliverable: return "not_deliverable";
    case status_code::no_session: return "no_session";
    case status_code::refused: return "refused";
    case status_code::key_changed: return "key_changed";
    case status_code::software_key_refused: return "software_key_refused";
    case status_code::simulator_refused: return "simulator_refused";
    case status_code::timeout: return "timeout";
    case status_code::overloaded: return "overloaded";
    case status_code::not_authorised: return "not_authorised";
    case status_code::not_attested: return "not_attested";
    case status_code::revoked_key: return "revoked_key";
    case status_code::enrolled_elsewhere: return "enrolled_elsewhere";
    case status_code::tpm_unavailable: return "tpm_unavailable";
    case status_code::io_error: return "io_error";
    case status_code::internal: return "internal";
  }
  return "unknown_code";
}

std::string status::to_string() const {
  std::string out(status_code_name(code_));
  if (!detail_.empty()) {
    out += ": ";
    out += detail_;
  }
  return out;
}

void abort_on_bad_result_access(const status& st) noexcept {
  std::fprintf(stderr, "agentbus: value() of a failed result (%s)\n", st.to_string().c_str());
  std::abort();
}

}  // namespace agentbus
