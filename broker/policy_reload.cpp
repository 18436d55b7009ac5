#include "policy_reload.hpp"

#include <algorithm>
#include <map>

namespace agentbus::broker {
namespace {

std::string list_text(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

std::string assurance_text(const std::vector<assurance>& v) {
  std::vector<std::string> names;
  for (assurance a : v) names.emplace_back(assurance_name(a));
  return list_text(names);
}

// set_change adds "<what> +x" and "<what> -y" lines for a list that gained or lost entries.
void set_change(std::vector<std::string>& out, const std::string& what, std::vector<std::string> before,
                std::vector<std::string> after) {
  std::sort(before.begin(), before.end());
  std::sort(after.begin(), after.end());
  for (const auto& x : after)
    if (!std::binary_search(before.begin(), before.end(), x)) out.push_back(what + " +" + x);
  for (const auto& x : before)
    if (!std::binary_search(after.begin(), after.end(), x)) out.push_back(what + " -" + x);
}

void role_change(std::vector<std::string>& out, const role_policy& a, const role_policy& b) {
  const std::string head = "role " + a.name + ": ";
  auto field = [&](const char* name, const std::string& x, const std::string& y) {
    if (x != y) out.push_back(head + name + " " + x + " -> " + y);
  };
  field("profile", a.profile.empty() ? "(none)" : a.profile, b.profile.empty() ? "(none)" : b.profile);
  field("suite", a.suite, b.suite);
  field("accepted_assurance", assurance_text(a.accepted_assurance), assurance_text(b.accepted_assurance));
  field("allow_software", a.allow_software ? "true" : "false", b.allow_software ? "true" : "false");
  field("allow_simulator", a.allow_simulator ? "true" : "false", b.allow_simulator ? "true" : "false");
  field("enrolment", std::string(enrolment_mode_name(a.enrolment)), std::string(enrolment_mode_name(b.enrolment)));
  field("require_attestation", a.require_attestation ? "true" : "false", b.require_attestation ? "true" : "false");
  field("batch_max_leaves", std::to_string(a.batch.max_leaves), std::to_string(b.batch.max_leaves));
  field("batch_max_delay_ms", std::to_string(a.batch.max_delay.count()), std::to_string(b.batch.max_delay.count()));
  field("rekey_after_messages", std::to_string(a.rekey_after_messages), std::to_string(b.rekey_after_messages));
  field("rekey_after_seconds", std::to_string(a.rekey_after.count()), std::to_string(b.rekey_after.count()));
  field("send_to", list_text(a.send_to), list_text(b.send_to));
  field("publish", list_text(a.publish), list_text(b.publish));
  field("subscribe", list_text(a.subscribe), list_text(b.subscribe));
}

}  // namespace

std::vector<std::string> describe_policy_change(const policy& before, const policy& after) {
  std::vector<std::string> out;
  std::map<std::string, const role_policy*> old_roles, new_roles;
  for (const auto& r : before.roles()) old_roles[r.name] = &r;
  for (const auto& r : after.roles()) new_roles[r.name] = &r;
  for (const auto& [name, r] : new_roles) {
    auto it = old_roles.find(name);
    if (it == old_roles.end()) out.push_back("role " + name + " added");
    else role_change(out, *it->second, *r);
  }
  for (const auto& [name, r] : old_roles)
    if (!new_roles.count(name)) out.push_back("role " + name + " removed");

  std::map<std::string, std::string> old_suites, new_suites;
  for (const auto& s : before.suites()) old_suites[s.name] = s.describe();
  for (const auto& s : after.suites()) new_suites[s.name] = s.describe();
  for (const auto& [name, d] : new_suites) {
    auto it = old_suites.find(name);
    if (it == old_suites.end()) out.push_back("suite " + name + " added (" + d + ")");
    else if (it->second != d) out.push_back("suite " + name + ": " + it->second + " -> " + d);
  }
  for (const auto& [name, d] : old_suites)
    if (!new_suites.count(name)) out.push_back("suite " + name + " removed");

  set_change(out, "revoked agent", before.revoked_agents(), after.revoked_agents());
  set_change(out, "revoked key", before.revoked_keys(), after.revoked_keys());
  auto pins = [](const policy& p) {
    std::vector<std::string> v;
    for (const auto& pin : p.pins())
      v.push_back(pin.name + " (" + pin.role + (pin.fingerprint.empty() ? "" : ", " + pin.fingerprint.substr(0, 16)) + ")");
    return v;
  };
  set_change(out, "pin", pins(before), pins(after));
  auto operators = [](const policy& p) {
    std::vector<std::string> v;
    for (const auto& o : p.operators()) v.push_back(o.name + " (" + o.fingerprint.substr(0, 16) + ")");
    return v;
  };
  set_change(out, "operator", operators(before), operators(after));
  auto cas = [](const policy& p) {
    std::vector<std::string> v;
    for (const auto& ca : p.ek_cas()) v.push_back(ca.name + (ca.simulator ? " (simulator)" : ""));
    return v;
  };
  set_change(out, "EK CA", cas(before), cas(after));
  // A CA kept under its name with another certificate: the set above does not see it.
  for (const auto& ca : after.ek_cas())
    for (const auto& old : before.ek_cas())
      if (old.name == ca.name && (old.root_pem != ca.root_pem || old.intermediates_pem != ca.intermediates_pem))
        out.push_back("EK CA " + ca.name + ": certificates changed");
  return out;
}

config_change apply_live_config(broker_config& running, const broker_config& next) {
  config_change c;
  auto live = [&](const char* name, auto member) {
    if (running.*member == next.*member) return;
    running.*member = next.*member;
    c.applied.emplace_back(name);
  };
  live("logging.level", &broker_config::log_level);
  live("broker.policy", &broker_config::policy_file);
  live("limits.max_agents", &broker_config::max_agents);
  live("limits.max_subscriptions_per_agent", &broker_config::max_subscriptions_per_agent);
  live("limits.drop_stuck_consumer_seconds", &broker_config::drop_stuck_consumer_seconds);
  auto fixed = [&](const char* name, auto member) {
    if (!(running.*member == next.*member)) c.at_restart.emplace_back(name);
  };
  fixed("broker.name", &broker_config::name);
  fixed("broker.endpoints", &broker_config::endpoints);
  fixed("broker.state_dir", &broker_config::state_dir);
  fixed("broker.admin_endpoint", &broker_config::admin_endpoint);
  fixed("identity.key_dir", &broker_config::key_dir);
  fixed("identity.tcti", &broker_config::tcti);
  fixed("identity.allow_software", &broker_config::allow_software);
  fixed("identity.suite", &broker_config::suite);
  fixed("transport.curve", &broker_config::curve);
  fixed("transport.curve_key_file", &broker_config::curve_key_file);
  fixed("transport.admit_unknown_keys", &broker_config::admit_unknown_keys);
  fixed("transport.handshake_timeout_ms", &broker_config::handshake_timeout_ms);
  fixed("transport.max_unauthenticated_bytes", &broker_config::max_unauthenticated_bytes);
  fixed("limits.max_frame_bytes", &broker_config::max_frame_bytes);
  fixed("limits.send_hwm", &broker_config::send_hwm);
  fixed("limits.recv_hwm", &broker_config::recv_hwm);
  fixed("limits.max_queued_bytes_per_agent", &broker_config::max_queued_bytes_per_agent);
  fixed("limits.max_clock_skew_ms", &broker_config::max_clock_skew_ms);
  fixed("limits.heartbeat_interval_ms", &broker_config::heartbeat_interval_ms);
  fixed("forwarding.wire_batches", &broker_config::wire_batches);
  fixed("sessions.rekey_after_messages", &broker_config::rekey_after_messages);
  fixed("sessions.rekey_after_seconds", &broker_config::rekey_after_seconds);
  fixed("sessions.rekey_grace_seconds", &broker_config::rekey_grace_seconds);
  fixed("metrics.listen", &broker_config::metrics_listen);
  fixed("metrics.allow", &broker_config::metrics_allow);
  fixed("logging.format", &broker_config::log_format);
  fixed("federation.servers", &broker_config::federation_servers);
  fixed("federation.subject_prefix", &broker_config::federation_prefix);
  fixed("federation.bucket", &broker_config::federation_bucket);
  fixed("federation.replicas", &broker_config::federation_replicas);
  fixed("federation.nkey_seed_file", &broker_config::federation_nkey_seed_file);
  fixed("federation.tls_ca", &broker_config::federation_tls_ca);
  fixed("federation.tls_cert", &broker_config::federation_tls_cert);
  fixed("federation.tls_key", &broker_config::federation_tls_key);
  fixed("federation.insecure_no_auth", &broker_config::federation_insecure_no_auth);
  fixed("federation.brokers", &broker_config::federation_brokers);
  fixed("federation.stale_after_ms", &broker_config::federation_stale_after_ms);
  return c;
}

}  // namespace agentbus::broker
