#include "client/peer_directory.hpp"

#include "attestation/evidence.hpp"

namespace agentbus::client {

peer_directory::check_result peer_directory::check(std::string_view name) {
  std::lock_guard lock(mu_);
  if (auto it = peers_.find(name); it != peers_.end()) return {it->second, std::nullopt};
  if (auto failed = failures_.find(name); failed != failures_.end()) {
    if (steady::now() - failed->second.at < kFailureTtl) return {nullptr, failed->second.why};
    failures_.erase(failed);  // not forever: ask again
    if (auto a = asked_.find(name); a != asked_.end()) asked_.erase(a);
  }
  return {};
}

status peer_directory::ask(const std::string& name) {
  {
    std::lock_guard lock(mu_);
    if (auto a = asked_.find(name); a != asked_.end() && steady::now() - a->second < kAskAgain) return {};
  }
  status st = send_(session::control::peer_lookup{name});
  // Counted as asked only once it left: a lookup the queue refused is asked again.
  if (st) {
    std::lock_guard lock(mu_);
    asked_[name] = steady::now();
  }
  return st;
}

result<std::shared_ptr<const peer_info>> peer_directory::resolve(const std::string& name) {
  {
    std::lock_guard lock(mu_);
    if (auto it = peers_.find(name); it != peers_.end()) return it->second;
    // A fresh send asks again, unless the broker announced a revocation.
    if (auto failed = failures_.find(name); failed != failures_.end() && failed->second.at <= steady::now())
      failures_.erase(failed);
    asked_.erase(name);
  }
  if (status st = ask(name); !st) return st;
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, opts_.session_timeout,
               [&] { return stopping_ || peers_.count(name) > 0 || failures_.count(name) > 0; });
  if (auto it = peers_.find(name); it != peers_.end()) return it->second;
  if (auto it = failures_.find(name); it != failures_.end()) return it->second.why;
  return status{status_code::timeout, stopping_ ? "agent stopping" : "no answer about peer " + name};
}

std::shared_ptr<const peer_info> peer_directory::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = peers_.find(name);
  return it == peers_.end() ? nullptr : it->second;
}

void peer_directory::fail(const std::string& name, status why, steady::time_point at) {
  failures_[name] = {std::move(why), at};
}

void peer_directory::on_answer(const session::control::peer_answer& a) {
  using session::control::peer_state;
  const std::string& name = a.name;
  std::lock_guard lock(mu_);
  asked_.erase(name);
  const auto now = steady::now();
  if (a.state == peer_state::revoked) {
    fail(name, {status_code::revoked_agent, name + " is revoked"}, now);
    peers_.erase(name);
  } else if (a.state == peer_state::unknown) {
    fail(name, {status_code::unknown_agent, "broker knows no agent " + name}, now);
  } else {
    auto key = crypto::public_key::from_der(a.identity_der);
    auto s = pol_.suite_for(a.role);
    status problem;
    std::optional<peer_endorsement> endorsement;
    if (!key || !s) problem = status(status_code::unknown_agent, "broker sent unusable information about " + name);
    else if (key->type() != s->key)
      problem = status(status_code::wrong_key, "broker's key for " + name + " is " + key->type().describe() +
                                                   ", its role needs " + s->key.describe());
    else if (const agent_pin* pin = pol_.find_pin(name);
             pin && (pin->role != a.role || (!pin->fingerprint.empty() && pin->fingerprint != key->fingerprint_hex())))
      problem = status(status_code::key_changed, "broker's key or role for " + name + " contradicts the policy pin");
    else if (pol_.is_revoked(name))
      problem = status(status_code::revoked_agent, name + " is revoked by the policy");
    else if (pol_.is_key_revoked(key->fingerprint_hex()))
      problem = status(status_code::revoked_key, name + "'s key is revoked by the policy");
    else if (const role_policy* r = pol_.find_role(a.role); r != nullptr && r->require_attestation) {
      // Our own policy, not the broker's word: the evidence must chain to a CA *we*
      // trust and certify this very key (schemas/protocol.md §6).
      if (a.evidence.empty())
        problem = status(status_code::not_attested, name + "'s role requires attestation and the broker gave no evidence");
      else if (auto checked = attestation::check_peer_evidence(pol_, a.evidence, *key); !checked)
        problem = status(status_code::not_attested, name + ": " + checked.error().detail());
      else if (pol_.is_key_revoked(checked->ek_fingerprint))
        problem = status(status_code::revoked_key, name + "'s TPM (its EK) is revoked by the policy");
      else if (checked->simulator && !r->allow_simulator)
        problem = status(status_code::simulator_refused, name + "'s TPM is a simulator (EK CA " + checked->ek_ca + ")");
      else
        endorsement = peer_endorsement{*checked->ek, checked->ak_tpm_name};
    }
    if (!problem.ok()) {
      fail(name, std::move(problem), now);
    } else {
      peer_info p;
      p.name = name;
      p.role = a.role;
      p.peer_suite = *s;
      p.key = std::move(key).value();
      p.key_id = p.key->fingerprint();
      p.key_protection = a.key_protection;
      p.endorsement = std::move(endorsement);
      p.attestation_id = p.key_id;
      if (p.endorsement)
        p.attestation_id.insert(p.attestation_id.end(), p.endorsement->ak_name.begin(), p.endorsement->ak_name.end());
      if (auto existing = peers_.find(name); existing != peers_.end() && existing->second->key_id != p.key_id)
        fail(name, {status_code::key_changed, name + " presented another key than the one pinned"}, now);
      else
        peers_[name] = std::make_shared<const peer_info>(std::move(p));
    }
  }
  cv_.notify_all();
}

void peer_directory::revoked(const std::string& name) {
  std::lock_guard lock(mu_);
  peers_.erase(name);
  // Not forgotten after kFailureTtl: only a broker answer can change it.
  fail(name, {status_code::revoked_agent, name + " was revoked by an operator"}, steady::now() + std::chrono::hours(24 * 365));
  cv_.notify_all();
}

void peer_directory::forget(const std::string& name) {
  std::lock_guard lock(mu_);
  peers_.erase(name);
  failures_.erase(name);
  cv_.notify_all();
}

void peer_directory::stop() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  cv_.notify_all();
}

}  // namespace agentbus::client
