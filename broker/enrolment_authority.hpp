// enrolment_authority.hpp — who may enrol under a name, in a role, with a key
// (schemas/protocol.md §3.7-3.8): revocations by name and by key, the policy's pins,
// the registry's pinned keys, the role's enrolment mode and one-time tokens.
//
// Two questions, asked at two moments of the handshake:
//   at HELLO, before the broker spends a TPM signature: screen() refuses what no
//     PROOF could change (a revoked name or key, another role, a pinned role's
//     unlisted key);
//   at PROOF, once the key's possession is proven: authorise() decides, with the
//     token the agent sealed into PROOF, and records a changed key for an operator.
// The token is consumed when the enrolment is committed (registry::enrol), in the
// same transaction as the agent's row.
//
// No sockets, no TPM: unit-tested over a registry file. Owned by the broker's event
// loop (the registry is not thread-safe).
#pragma once

#include <optional>
#include <string>

#include "agentbus/bytes.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"
#include "registry.hpp"

namespace agentbus::broker {

// candidate: who asks, as HELLO said and the key proved.
struct candidate {
  std::string name, role, fingerprint, public_key_pem;
  std::string address;   // the connection's peer address ("" if unknown)
  std::string evidence;  // what HELLO claimed or proved about the key's protection
  std::string ek_fingerprint;  // the attested TPM's EK ("" when the key is not attested)
  bool ek_activated = false;   // and its TPM opened the broker's credential (PROOF)
};

// admission: how a HELLO that proved possession of its key may wait for the broker's
// TPM. credentialed: the key is the one the policy pins, or the one the registry holds
// for the name in a role that is not open, or the HELLO proved a usable token; open:
// anything else a role with enrolment = "open" admits (a registered key included:
// anyone can register one there).
// They wait in separate pools, credentialed first (schemas/protocol.md §3.7).
enum class admission { credentialed, open };

// authorisation: what allowed an enrolment. token_hash is set when a token did (to
// be consumed with the commit).
struct authorisation {
  std::optional<std::string> token_hash;
  std::string reason;  // "pinned key", "policy pin", "token <id>", "open role (first use)"
  std::optional<agent_record> existing;  // the name's registry row the decision read (none: a new name)
};

// role_admits applies what the policy says of a role to a key's facts: the role
// exists (unknown_role), the agent's suite is the role's by name and by definition
// (suite_mismatch: a reload may redefine a suite under its name), a software key only
// where allow_software (software_key_refused), a simulated TPM only where
// allow_simulator (simulator_refused), evidence where require_attestation
// (not_attested). HELLO checks these first; PROOF and a reload check them again
// against the policy then in force.
status role_admits(const policy& pol, std::string_view role, const suite& agent_suite, protection key_protection,
                   bool simulator, bool attested);

class enrolment_authority {
 public:
  enrolment_authority(const policy& pol, registry& reg) : pol_(pol), reg_(reg) {}

  // The checks below take the name's registry row (`rec`, read once by the caller for
  // all of them: registry::find_agent(c.name); nullopt for a new name).
  //
  // screen: revoked_agent, revoked_key, refused (another role), or for a role with
  // enrolment = "pinned": not_authorised (no pin) and key_changed (another key).
  status screen(const candidate& c, const std::optional<agent_record>& rec) const;
  // screen_endorsement: revoked_key when the TPM's EK (hex SHA-256 of its DER public
  // key) is revoked (policy revoked_keys, registry revoked_keys): every key that
  // presents that TPM's evidence is refused.
  status screen_endorsement(const std::string& ek_fingerprint) const;
  // screen_attestation (after the evidence was checked, and again at PROOF): the
  // TPM's EK (c.ek_fingerprint, or the one the registry recorded for this key) is not
  // revoked, and a key the registry knows as attested does not enrol without
  // evidence (not_attested: no downgrade to declared facts).
  status screen_attestation(const candidate& c, const std::optional<agent_record>& rec) const;
  // proven_token: `proof` (a HELLO's token proof over `hello_unsigned`) matches a token
  // usable at now_ms for c's name and role (and key, if the token names one).
  bool proven_token(const candidate& c, byte_view proof, byte_view hello_unsigned, std::int64_t now_ms) const;
  // admit (at HELLO, after screen): credentialed or open as above, else the refusal
  // the enrolment would meet at PROOF (not_authorised, key_changed), given before the
  // broker spends anything on it. `token_presented`: the HELLO carried a token proof
  // (that matched nothing, unless token_proven).
  result<admission> admit(const candidate& c, const std::optional<agent_record>& rec, bool token_proven,
                          bool token_presented) const;
  // authorise: screen() and screen_attestation() again (the registry may have
  // changed), then the mode. A token is looked up by its hash; a valid one is consumed
  // even when something else authorises the key (it is spent either way). A changed
  // key without authorisation is key_changed and, in open roles only, recorded as
  // pending (first one only) for an operator: in token roles a rotation takes a
  // token, in pinned roles a policy change, so nobody can squat the pending slot.
  result<authorisation> authorise(const candidate& c, const std::optional<secret_bytes>& token, std::int64_t now_ms);

  // token_hash is the registry's name for a token: hex SHA-256 of its 32 bytes.
  static std::string token_hash(byte_view token);

 private:
  const policy& pol_;
  registry& reg_;
};

}  // namespace agentbus::broker
