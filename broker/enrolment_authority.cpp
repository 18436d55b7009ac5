#include "enrolment_authority.hpp"

#include <spdlog/spdlog.h>

#include "agentbus/crypto.hpp"
#include "session/handshake.hpp"

namespace agentbus::broker {

namespace {
std::string short_fp(const std::string& fp) { return fp.substr(0, 16); }
}  // namespace

std::string enrolment_authority::token_hash(byte_view token) {
  return to_hex(crypto::digest(hash_algorithm::sha256, token));
}

status role_admits(const policy& pol, std::string_view role_name, const suite& agent_suite, protection key_protection,
                   bool simulator, bool attested) {
  const role_policy* role = pol.find_role(role_name);
  if (role == nullptr) return {status_code::unknown_role, "role '" + std::string(role_name) + "' is not in the policy"};
  if (status st = pol.check_declared_suite(role_name, agent_suite.name); !st) return st;
  const suite* now = pol.find_suite(agent_suite.name);
  if (now == nullptr || now->describe() != agent_suite.describe())
    return {status_code::suite_mismatch, "suite " + agent_suite.name + " is now " + (now ? now->describe() : "gone")};
  if (key_protection == protection::software && !role->allow_software)
    return {status_code::software_key_refused, "role " + role->name + " requires a TPM key"};
  if (key_protection == protection::tpm && simulator && !role->allow_simulator)
    return {status_code::simulator_refused, "role " + role->name + " refuses simulated TPMs"};
  if (role->require_attestation && !attested)
    return {status_code::not_attested, "role " + role->name + " requires attested TPM keys"};
  return {};
}

status enrolment_authority::screen(const candidate& c, const std::optional<agent_record>& rec) const {
  if (pol_.is_revoked(c.name)) return {status_code::revoked_agent, c.name + " is revoked"};
  if (pol_.is_key_revoked(c.fingerprint))
    return {status_code::revoked_key, "key " + short_fp(c.fingerprint) + " is revoked (policy)"};
  if (auto k = reg_.find_revoked_key(c.fingerprint))
    return {status_code::revoked_key, "key " + short_fp(c.fingerprint) + " is revoked: " + k->reason};
  const role_policy* role = pol_.find_role(c.role);
  if (role == nullptr) return {status_code::unknown_role, "role '" + c.role + "' is not in the policy"};
  const agent_pin* pin = pol_.find_pin(c.name);
  if (pin != nullptr && pin->role != c.role) return {status_code::refused, c.name + " is pinned to role " + pin->role};
  if (pin != nullptr && !pin->fingerprint.empty() && pin->fingerprint != c.fingerprint)
    return {status_code::key_changed, "key " + short_fp(c.fingerprint) + " is not the key pinned in the policy"};
  if (role->enrolment == enrolment_mode::pinned && (pin == nullptr || pin->fingerprint.empty()))
    return {status_code::not_authorised, "role " + c.role + " enrols by pin and the policy pins no key for " + c.name};
  if (rec) {
    if (rec->revoked) return {status_code::revoked_agent, c.name + " is revoked: " + rec->revoked_reason};
    if (rec->role != c.role) return {status_code::refused, c.name + " was enrolled as " + rec->role};
  }
  return {};
}

status enrolment_authority::screen_endorsement(const std::string& ek_fingerprint) const {
  if (pol_.is_key_revoked(ek_fingerprint))
    return {status_code::revoked_key, "the TPM's endorsement key " + short_fp(ek_fingerprint) + " is revoked (policy)"};
  if (auto k = reg_.find_revoked_key(ek_fingerprint))
    return {status_code::revoked_key, "the TPM's endorsement key " + short_fp(ek_fingerprint) + " is revoked: " + k->reason};
  return {};
}

status enrolment_authority::screen_attestation(const candidate& c, const std::optional<agent_record>& rec) const {
  if (!c.ek_fingerprint.empty())
    if (status st = screen_endorsement(c.ek_fingerprint); !st) return st;
  if (rec && rec->fingerprint == c.fingerprint && !rec->ek_fingerprint.empty()) {
    if (status st = screen_endorsement(rec->ek_fingerprint); !st) return st;
    if (c.ek_fingerprint.empty())
      return {status_code::not_attested, c.name + "'s key was attested (EK CA " + rec->ek_ca +
                                             "): it enrols with its TPM evidence or not at all"};
  }
  return {};
}

bool enrolment_authority::proven_token(const candidate& c, byte_view proof, byte_view hello_unsigned,
                                       std::int64_t now_ms) const {
  if (proof.empty()) return false;
  for (const token_record& t : reg_.usable_tokens(c.name, c.role, now_ms)) {
    if (!t.fingerprint.empty() && t.fingerprint != c.fingerprint) continue;
    // A token bound to a TPM (ek_fingerprint) is checked at PROOF (authorise): at HELLO
    // the evidence is not yet checked, so the candidate's EK is not known.
    bool hex_ok = false;
    const bytes key = from_hex(t.hash, &hex_ok);
    if (hex_ok && crypto::constant_time_equal(session::hello_token_proof(key, hello_unsigned), proof)) return true;
  }
  return false;
}

result<admission> enrolment_authority::admit(const candidate& c, const std::optional<agent_record>& rec,
                                             bool token_proven, bool token_presented) const {
  if (const agent_pin* pin = pol_.find_pin(c.name); pin != nullptr && !pin->fingerprint.empty())
    return admission::credentialed;  // screen() refused any other key
  const role_policy& role = *pol_.find_role(c.role);
  if (token_proven) return admission::credentialed;
  // In an open role anyone can get a key registered (first use): the registry's word
  // is no credential there.
  if (role.enrolment == enrolment_mode::open) return admission::open;
  if (rec && rec->fingerprint == c.fingerprint) return admission::credentialed;
  if (token_presented)
    return status{status_code::not_authorised, "the HELLO's token proof matches no usable enrolment token for " + c.name +
                                                   " in " + c.role + " (unknown, used, expired, or for another key)"};
  if (rec)
    return status{status_code::key_changed, "key " + short_fp(c.fingerprint) + " differs from the key " + c.name +
                                                " enrolled with; an operator must approve it or issue a token"};
  return status{status_code::not_authorised, "role " + c.role + " needs an enrolment token for a new name (" + c.name + ")"};
}

result<authorisation> enrolment_authority::authorise(const candidate& c, const std::optional<secret_bytes>& token,
                                                     std::int64_t now_ms) {
  // One read of the name's row for every check below (and for the caller's commit).
  const auto rec = reg_.find_agent(c.name);
  if (status st = screen(c, rec); !st) return st;
  if (status st = screen_attestation(c, rec); !st) return st;
  const role_policy& role = *pol_.find_role(c.role);
  // A valid token presented for this name, role and key is spent whatever else
  // authorises the enrolment, so that it cannot serve a second key later.
  std::optional<std::string> spend;
  status token_refusal;
  if (token) {
    const std::string hash = token_hash(token->view());
    auto t = reg_.find_token(hash);
    if (!t) token_refusal = {status_code::not_authorised, "the enrolment token is not known to this broker"};
    else if (t->used_at != 0) token_refusal = {status_code::not_authorised, "enrolment token " + t->id() + " was already used"};
    else if (t->expires_at <= now_ms) token_refusal = {status_code::not_authorised, "enrolment token " + t->id() + " has expired"};
    else if (t->name != c.name || t->role != c.role)
      token_refusal = {status_code::not_authorised, "enrolment token " + t->id() + " is for another name or role"};
    else if (!t->fingerprint.empty() && t->fingerprint != c.fingerprint)
      token_refusal = {status_code::not_authorised, "enrolment token " + t->id() + " is for another key"};
    else if (!t->ek_fingerprint.empty() && (!c.ek_activated || t->ek_fingerprint != c.ek_fingerprint))
      token_refusal = {status_code::not_authorised,
                       "enrolment token " + t->id() + " is for a key attested by another TPM (EK " +
                           t->ek_fingerprint.substr(0, 16) + ")" + (c.ek_fingerprint.empty() ? ": this key is not attested" : "")};
    else
      spend = hash;
  }
  // The policy's own pin names this key (screen() refused any other): the operator's
  // word, whatever the registry remembers.
  if (const agent_pin* pin = pol_.find_pin(c.name); pin != nullptr && !pin->fingerprint.empty())
    return authorisation{spend, "policy pin", rec};
  if (rec && rec->fingerprint == c.fingerprint) return authorisation{spend, "pinned key", rec};

  status refusal;
  if (role.enrolment == enrolment_mode::open && !rec) return authorisation{spend, "open role (first use)", rec};
  if (role.enrolment == enrolment_mode::token && token) {
    if (spend) return authorisation{spend, "token " + spend->substr(0, 16), rec};
    refusal = token_refusal;
  } else if (rec) {
    refusal = {status_code::key_changed, "key " + short_fp(c.fingerprint) + " differs from the key " + c.name +
                                             " enrolled with; an operator must approve it or issue a token"};
  } else {
    refusal = {status_code::not_authorised, "role " + c.role + " needs an enrolment token for a new name (" + c.name + ")"};
  }
  // A changed key that proved possession is kept for an operator to decide on (the
  // first one only: later ones cannot push it out).
  if (rec && rec->fingerprint != c.fingerprint && role.enrolment == enrolment_mode::open) {
    if (reg_.set_pending_key({c.name, c.fingerprint, c.public_key_pem, now_ms, c.address, c.evidence}))
      spdlog::warn("recorded key {} presented for {} from {} as pending operator approval", short_fp(c.fingerprint),
                   c.name, c.address.empty() ? "an unknown address" : c.address);
  }
  return refusal;
}

}  // namespace agentbus::broker
