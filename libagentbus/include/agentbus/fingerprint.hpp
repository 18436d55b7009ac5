// fingerprint.hpp — the one way a key fingerprint is read.
//
// A fingerprint is the SHA-256 of a key's DER SubjectPublicKeyInfo. agentbus prints it
// as 64 hex digits, `agentbus-key` with "sha256:" in front; wherever a person writes one
// (the policy, enrolment bundles, agent_options, the tools' options) both forms are
// accepted, in either case, so that what one tool prints can be pasted into another.
// Wire formats stay strict: the admin protocol's JSON carries the 64 digits alone
// (schemas/admin.md), which agentbus-trust sends after reading either form.
#pragma once

#include <optional>
#include <string>
#include <string_view>

// Public API: exported from libagentbus.so, which hides everything else.
#pragma GCC visibility push(default)

namespace agentbus {

// parse_fingerprint returns the 64 lower-case hex digits of `text` ("sha256:" prefix
// optional, either case), or nullopt when it is not a SHA-256 fingerprint.
std::optional<std::string> parse_fingerprint(std::string_view text);

}  // namespace agentbus

#pragma GCC visibility pop
