// status.hpp — expected failures as values with stable codes.
//
// A bad MAC, a policy refusal or malformed input is not exceptional on a bus that
// takes bytes from the network: it is returned as a `status` (or a `result<T>`)
// whose `status_code` is stable across releases, so that metrics, logs, wire
// errors and scripts can rely on the number. A broken environment (cannot reach
// the TPM, cannot open a file the operator named) is thrown as an exception.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

// status_code values are part of the wire protocol and the metrics schema: never
// renumber or reuse one. New codes are appended within their block.
enum class status_code : std::uint16_t {
  ok = 0,

  // 100-199: decoding and limits of untrusted input.
  malformed = 100,           // not the expected MessagePack structure
  too_large = 101,           // a frame, field or collection exceeds its limit
  trailing_bytes = 102,      // bytes after the end of the object
  duplicate_key = 103,       // a map repeats a key
  too_deep = 104,            // nesting deeper than allowed
  unsupported_version = 105, // envelope version this build does not speak
  invalid_field = 106,       // a field has the right type but an impossible value

  // 200-299: policy.
  unknown_role = 200,        // the role is not in the policy
  suite_mismatch = 201,      // declared suite differs from the sender's role suite
  unknown_suite = 202,       // the suite name is not in the policy
  assurance_refused = 203,   // assurance level (tpm, tpm-batch, software) not accepted
  policy_invalid = 204,      // the policy file itself is wrong

  // 300-399: cryptographic verification.
  bad_signature = 300,       // signature does not verify under the sender's key
  bad_mac = 301,             // MAC does not verify
  wrong_key = 302,           // key id or key type is not the sender's pinned key
  unsupported_algorithm = 303, // the algorithm is not available here (TPM or OpenSSL)
  bad_batch_proof = 304,     // the inclusion path leads to a root signed for other leaves (forged path, moved leaf)
  bad_batch_signature = 305, // the batch root is not signed by the sender's key
  batch_too_large = 306,     // a tpm-batch proof's leaf_count exceeds the sender role's batch_max_leaves

  // 400-499: identity and replay (used by the bus).
  unknown_agent = 400,
  revoked_agent = 401,
  replayed = 402,
  stale = 403,
  spoofed_sender = 404,
  acl_denied = 405,
  not_deliverable = 406,     // recipient offline or unknown to the broker
  no_session = 407,          // no end-to-end session (or MAC entry) for this receiver
  refused = 408,             // enrolment refused (detail says why)
  key_changed = 409,         // a pinned agent presented another key
  software_key_refused = 410,  // role requires a TPM key
  simulator_refused = 411,   // role refuses simulated TPMs
  timeout = 412,             // no answer within the deadline
  overloaded = 413,          // a bounded queue is full (no silent drop: the sender is told)
  not_authorised = 414,      // enrolment: no valid token or pin authorises this name, role and key
  not_attested = 415,        // enrolment: TPM evidence missing, invalid, or from an untrusted EK
  revoked_key = 416,         // the key (or EK) is revoked, whatever name or role presents it
  enrolled_elsewhere = 417,  // enrolment: the name is online at another live broker of the federation

  // 500-599: local environment reported as a value where a caller wants to continue.
  tpm_unavailable = 500,
  io_error = 501,
  internal = 599,
};

// status_code_name returns the stable lower_snake name of a code ("bad_mac"), used
// in logs, metrics labels and JSON output.
std::string_view status_code_name(status_code code) noexcept;

// status is a code plus a human-readable detail. The detail never carries secrets;
// it may name a field, a file or a limit. Cheap to copy when ok.
class [[nodiscard]] status {
 public:
  status() = default;
  status(status_code code, std::string detail) : code_(code), detail_(std::move(detail)) {}

  static status ok_status() { return {}; }

  bool ok() const noexcept { return code_ == status_code::ok; }
  explicit operator bool() const noexcept { return ok(); }
  status_code code() const noexcept { return code_; }
  const std::string& detail() const noexcept { return detail_; }
  // to_string renders "bad_mac: hop MAC does not verify".
  std::string to_string() const;

 private:
  status_code code_ = status_code::ok;
  std::string detail_;
};

// result<T> holds either a value or a non-ok status (a minimal std::expected, which
// C++20 lacks). Accessing value() of a failed result is a programming error and aborts.
template <typename T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // A result built from an ok status would be neither value nor error: it becomes
  // an internal error instead, so ok() and error() never disagree.
  result(status st)  // NOLINT(google-explicit-constructor)
      : v_(st.ok() ? status(status_code::internal, "result built from an ok status") : std::move(st)) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  T&& value() && { check(); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // error returns the failure; for an ok result it returns an ok status.
  status error() const { return ok() ? status{} : std::get<1>(v_); }

 private:
  void check() const;
  std::variant<T, status> v_;
};

[[noreturn]] void abort_on_bad_result_access(const status& st) noexcept;

template <typename T>
void result<T>::check() const {
  if (!ok()) abort_on_bad_result_access(std::get<1>(v_));
}

}  // namespace agentbus

#pragma GCC visibility pop
