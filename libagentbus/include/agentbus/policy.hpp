// policy.hpp — the per-role algorithm policy (config/policy.toml).
//
// A policy maps each role to a named suite and says which assurance levels and
// key protections the role accepts and how large its tpm-batch batches may be. It
// is immutable after loading and safe to share between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

// policy_error is thrown when a policy file cannot be read or is invalid. Its
// message names the file and the field ("config/policy.toml: roles.DIRECTOR.suite:
// unknown suite 'rsa9999'").
class policy_error : public std::runtime_error {
 public:
  policy_error(std::string file, std::string field, const std::string& problem)
      : std::runtime_error(file + ": " + field + ": " + problem),
        file_(std::move(file)), field_(std::move(field)) {}
  const std::string& file() const noexcept { return file_; }
  const std::string& field() const noexcept { return field_; }

 private:
  std::string file_;
  std::string field_;
};

// batch_limits is a role's tpm-batch window (policy keys batch_max_leaves and
// batch_max_delay_ms). Verifiers refuse a tpm-batch envelope whose proof names
// more than max_leaves leaves (batch_too_large); the role's signer caps its batch
// at min(its own max_batch, max_leaves) and holds an envelope back at most
// max_delay to fill a batch (0: adaptive, close the batch as soon as the TPM is
// free). The loader guarantees kMinLeaves <= max_leaves <= kMaxLeaves and
// 0 <= max_delay <= kMaxDelay.
struct batch_limits {
  static constexpr std::uint32_t kMinLeaves = 1;
  static constexpr std::uint32_t kMaxLeaves = 65536;
  static constexpr std::uint32_t kDefaultLeaves = 1024;
  static constexpr std::chrono::milliseconds kMaxDelay{1000};
  static constexpr std::chrono::milliseconds kDefaultDelay{2};

  std::uint32_t max_leaves = kDefaultLeaves;
  std::chrono::milliseconds max_delay = kDefaultDelay;
  bool operator==(const batch_limits&) const = default;
};

// enrolment_mode says what authorises an agent of a role to enrol under a name
// with a key it has not enrolled with before (schemas/protocol.md §3.8):
//   pinned  the policy's [agents.<name>] pin names this role and the key's fingerprint;
//   token   a one-time enrolment token an operator issued for this name and role
//           (`agentbus-trust token create`), presented sealed in PROOF;
//   open    nothing: the first key to enrol a name keeps it (demo roles only).
// A name that already enrolled with a key re-enrols with that key in every mode.
enum class enrolment_mode { pinned, token, open };
std::string_view enrolment_mode_name(enrolment_mode m) noexcept;

// role_policy is one role's row: its suite, the assurance levels accepted from it,
// whether a software key or a simulated TPM is acceptable for it, how its agents are
// authorised to enrol, and its batch window.
struct role_policy {
  std::string name;                     // upper-case role name, e.g. "DIRECTOR"
  std::string suite;                    // suite name
  std::vector<assurance> accepted_assurance;
  bool allow_software = false;
  bool allow_simulator = true;
  enrolment_mode enrolment = enrolment_mode::token;  // fail closed: nothing is first-come unless the policy says so
  // require_attestation: an agent of this role must prove that its keys live in a
  // TPM whose EK certificate chains to one of the policy's ek_cas (not_attested
  // otherwise); "simulator" then comes from that CA, not from the agent's word.
  bool require_attestation = false;
  batch_limits batch;                   // tpm-batch window limits
  // The operation profile the role points to ("" for none): its settings came first,
  // the role's own keys over them.
  std::string profile;
  // Session rekey limits the role's sessions must keep (0: the endpoint's own, the
  // broker's [sessions] and agent_options): an agent rekeys its end-to-end sessions,
  // and the broker its hop with the agent, at the smaller of the two.
  std::uint64_t rekey_after_messages = 0;
  std::chrono::seconds rekey_after{0};
  // ACL. send_to lists recipient roles ("*" = any role); publish and subscribe list
  // topic patterns: segments separated by '/', "*" matches one segment, a final ">"
  // matches one or more. Empty lists deny (fail closed).
  std::vector<std::string> send_to;
  std::vector<std::string> publish;
  std::vector<std::string> subscribe;
};

// agent_pin fixes an agent name to a role and, optionally, a key fingerprint
// (hex SHA-256 of the DER public key). Agents without a pin are recorded on first
// use (TOFU) by the broker and then pinned.
struct agent_pin {
  std::string name;
  std::string role;
  std::string fingerprint;  // empty: trust on first use
};

// operator_key lists a person (or automation) allowed to sign state-changing admin
// requests (revoke, approve a changed key, reset counters) by the fingerprint of
// their identity key (hex SHA-256 of the DER public key).
struct operator_key {
  std::string name;
  std::string fingerprint;
};

// ek_ca is a certificate authority whose EK certificates the policy trusts
// ([attestation.ek_ca.<name>]): TPMs it certified are real TPMs of one
// manufacturer, or simulators (swtpm-localca) when `simulator` says so.
struct ek_ca {
  std::string name;
  std::string root_pem;                        // the trusted root
  std::vector<std::string> intermediates_pem;  // issuers between the root and the EK certificates
  bool simulator = false;
};

// operation_profile is a named preset a role points to ([profiles.<name>]): what to
// choose for a need (realtime, batch, high_security in config/policy.toml). Unset
// fields leave the role's defaults alone.
struct operation_profile {
  std::string name;
  std::string description;
  std::optional<std::string> suite;
  std::optional<std::vector<assurance>> accepted_assurance;
  std::optional<std::uint32_t> batch_max_leaves;
  std::optional<std::chrono::milliseconds> batch_max_delay;
  std::uint64_t rekey_after_messages = 0;  // 0: not set
  std::chrono::seconds rekey_after{0};
};

// topic_matches applies a publish/subscribe pattern to a concrete topic.
bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;
// is_topic_pattern: segments separated by '/', each 1.. characters of A-Z a-z 0-9 . _ -
// or a wildcard: "*" (one segment) anywhere, ">" (one or more) as the last. What an
// agent may subscribe to and an ACL may list.
bool is_topic_pattern(std::string_view pattern) noexcept;
// is_concrete_topic: a topic pattern without wildcards: what an envelope is published to.
bool is_concrete_topic(std::string_view topic) noexcept;
// pattern_covers: every topic `inner` matches, `outer` matches too (both patterns). An
// ACL pattern must cover a subscription: "metrics/*" covers "metrics/cpu" and
// "metrics/*", not "metrics/>" (which matches metrics/a/b).
bool pattern_covers(std::string_view outer, std::string_view inner) noexcept;
// is_queue_group_name: 1..64 characters of A-Z a-z 0-9 . _ - (a queue group, as
// agent::queue_subscribe names it).
bool is_queue_group_name(std::string_view group) noexcept;

class policy {
 public:
  // load_file reads and validates a TOML policy; throws policy_error.
  static policy load_file(const std::filesystem::path& file);
  // parse validates TOML text; `source` names it in errors. Relative file names in
  // it (EK CA certificates) are read from the current directory; load_file reads
  // them from the policy file's directory.
  static policy parse(std::string_view toml_text, const std::string& source);
  static policy parse_in(std::string_view toml_text, const std::string& source, const std::filesystem::path& base_dir);
  // builtin_default is the DIRECTOR/MONITOR table of DESIGN.md; config/policy.toml
  // ships the same content (a test keeps them equal).
  static policy builtin_default();

  // suite_for returns the suite of a role; unknown_role if the policy has no such role.
  result<suite> suite_for(std::string_view role) const;
  // find_role returns the role's row or nullptr.
  const role_policy* find_role(std::string_view role) const noexcept;
  // find_suite returns a suite by name or nullptr.
  const suite* find_suite(std::string_view name) const noexcept;

  // check_declared_suite accepts only the exact suite of the sender's role: no
  // downgrade and no "stronger is fine". unknown_role or suite_mismatch otherwise.
  status check_declared_suite(std::string_view sender_role, std::string_view declared_suite) const;
  // check_assurance accepts the levels the role lists; assurance_refused otherwise.
  status check_assurance(std::string_view sender_role, assurance level) const;
  // batch_limits_for returns the role's tpm-batch window; unknown_role if the
  // policy has no such role.
  result<batch_limits> batch_limits_for(std::string_view role) const;
  // check_batch_size accepts a tpm-batch proof of `leaf_count` leaves from a
  // `sender_role` agent when leaf_count <= the role's batch_max_leaves;
  // batch_too_large otherwise, unknown_role for a role the policy does not define.
  status check_batch_size(std::string_view sender_role, std::uint32_t leaf_count) const;

  // check_send: may a `sender_role` agent send directly to a `recipient_role` agent?
  status check_send(std::string_view sender_role, std::string_view recipient_role) const;
  // check_publish: may the role publish to `topic`? invalid_field unless it is a
  // concrete topic (is_concrete_topic), acl_denied unless a publish pattern matches it.
  // check_subscribe: may the role subscribe to `topic`, a concrete topic or a pattern?
  // invalid_field unless is_topic_pattern, acl_denied unless a subscribe pattern
  // covers it (pattern_covers).
  status check_publish(std::string_view role, std::string_view topic) const;
  status check_subscribe(std::string_view role, std::string_view topic) const;

  // find_pin returns the agent's pin or nullptr; is_revoked says whether the
  // policy lists the agent as revoked.
  const agent_pin* find_pin(std::string_view agent) const noexcept;
  // find_operator returns the operator whose key has this fingerprint, or nullptr.
  const operator_key* find_operator(std::string_view fingerprint) const noexcept;
  const std::vector<operator_key>& operators() const noexcept { return operators_; }
  const std::vector<agent_pin>& pins() const noexcept { return pins_; }
  const std::vector<operation_profile>& profiles() const noexcept { return profiles_; }
  const operation_profile* find_profile(std::string_view name) const noexcept;
  const std::vector<std::string>& revoked_agents() const noexcept { return revoked_; }
  const std::vector<std::string>& revoked_keys() const noexcept { return revoked_keys_; }
  const std::vector<ek_ca>& ek_cas() const noexcept { return ek_cas_; }
  bool is_revoked(std::string_view agent) const noexcept;
  // is_key_revoked says whether the policy's revoked_keys lists this fingerprint
  // (lower-case hex SHA-256 of the DER public key): refused under any name.
  bool is_key_revoked(std::string_view fingerprint) const noexcept;

  const std::vector<suite>& suites() const noexcept { return suites_; }
  const std::vector<role_policy>& roles() const noexcept { return roles_; }
  const std::string& source() const noexcept { return source_; }

 private:
  std::string source_;
  std::vector<suite> suites_;
  std::vector<role_policy> roles_;
  std::vector<operation_profile> profiles_;
  std::vector<agent_pin> pins_;
  std::vector<operator_key> operators_;
  std::vector<std::string> revoked_;
  std::vector<std::string> revoked_keys_;
  std::vector<ek_ca> ek_cas_;
};

}  // namespace agentbus

#pragma GCC visibility pop
