// federation_directory.cpp — the federation's directory at this broker
// (schemas/federation.md §6): records from other brokers admitted by this broker's own
// policy and registry, liveness from heartbeats, presence of agents homed elsewhere,
// revocations. The rest of the part (forwarding, receipts, the inbox) is in
// federation.cpp.
#include <spdlog/spdlog.h>

#include "admin_protocol.hpp"  // now_unix_ms
#include "enrolment_authority.hpp"
#include "federation.hpp"
#include "util/overloaded.hpp"

namespace agentbus::broker {
namespace fw = federation_wire;
using steady = std::chrono::steady_clock;

namespace {
// adopt gives `a` the identity an agent record says it has.
void adopt(known_agent& a, const fw::agent_record& r, crypto::public_key key, const suite& s) {
  a.role = r.role;
  a.agent_suite = s;
  a.key_id = key.fingerprint();
  a.key = std::move(key);
  a.key_protection = r.key_protection;
  a.tpm_manufacturer = r.tpm_manufacturer;
  a.tpm_simulator = r.tpm_simulator;
  a.evidence = r.evidence;
}
}  // namespace

void federation::revoked_here(const std::string& name, const std::string& fingerprint, const std::string& reason) {
  fw::revocation_record r;
  r.name = name;
  r.fingerprint = fingerprint;
  r.reason = reason;
  revoked_.insert(name + "/" + fingerprint);
  // An agent homed elsewhere is cut off here at once too (the operator may revoke at
  // any broker): no forwards to it, none accepted from it.
  if (known_agent* a = agents_.find(name); a && a->remote()) forget_remote(*a);
  link_.write_revocation(std::move(r));
}

void federation::forget_remote(known_agent& a) {
  set_presence(a, false);
  a.remote_online = false;
  a.remote_subscriptions.clear();
  a.remote_queue_groups.clear();
  a.key.reset();  // unknown to peer lookups and to the sender check
  agents_.park(a);
}

void federation::on_directory(const nats_link::directory_update& u) {
  std::visit(util::overloaded{
                 [&](const std::monostate&) {
                   // Brokers never delete records, and a deletion carries no signature:
                   // it changes nothing here (a stale record is an offline one).
                   stats_.increment("federation_directory_updates_total", "deleted");
                   if (limiter_.allow("federation_delete"))
                     spdlog::warn("federation: directory key {} deleted or purged (unsigned): ignored", u.key);
                 },
                 [&](const fw::broker_record& b) {
                   stats_.increment("federation_directory_updates_total", "broker");
                   if (b.writer == cfg_.name) return;
                   // A heartbeat counts when it is newer than the last one (not a value
                   // put back) and recent by the writer's clock (the bucket's initial
                   // values hold the last heartbeat of a broker long dead).
                   std::uint64_t& last = heartbeat_written_[b.writer];
                   const auto now_ms = static_cast<std::uint64_t>(now_unix_ms());
                   const auto fresh = static_cast<std::uint64_t>(cfg_.federation_stale_after_ms) + kClockAllowanceMs;
                   if (b.written_ms <= last || b.written_ms + fresh < now_ms) return;
                   last = b.written_ms;
                   const bool was = live(b.writer);
                   heartbeats_.insert_or_assign(b.writer, steady::now());
                   if (!was) {
                     spdlog::info("federation: broker {} is live", b.writer);
                     // Its agents come back into member lists.
                     agents_.for_each_known([&](known_agent& a) {
                       if (a.home != b.writer || !a.key) return;
                       set_presence(a, a.remote_online);
                       if (a.remote_online) agents_.unpark(a);
                     });
                   }
                 },
                 [&](const fw::agent_record& r) {
                   stats_.increment("federation_directory_updates_total", "agent");
                   on_agent_record(r, u.revision);
                 },
                 [&](const fw::revocation_record& r) {
                   stats_.increment("federation_directory_updates_total", "revoked");
                   on_revocation(r);
                 }},
             u.record);
}

void federation::on_agent_record(const fw::agent_record& r, std::uint64_t) {
  // Records of a name only move forward in time: a value put back is ignored (while
  // this broker keeps a record of the name: what it forgot was absent anyway).
  known_agent* existing = agents_.find(r.name);
  if (existing != nullptr && r.written_ms < existing->directory_written_ms) {
    stats_.increment("federation_directory_rejected_total");
    if (limiter_.allow("federation_record"))
      spdlog::warn("federation: record of {} from broker {} is older than one seen before: ignored", r.name, r.writer);
    return;
  }
  const suite* s = pol_.find_suite(r.suite);
  auto key = crypto::public_key::from_der(r.identity_der);
  if (r.writer == cfg_.name) {
    // Our own record. One that says online for an agent not connected here is from
    // before a restart (kill -9): say it is offline.
    const known_agent* a = agents_.find(r.name);
    if (r.online && (a == nullptr || !a->online())) {
      known_agent& rec = agents_.remember(r.name);
      rec.directory_written_ms = r.written_ms;
      if (!rec.key) {
        if (!key || s == nullptr) return;
        adopt(rec, r, std::move(*key), *s);
      }
      agents_.park(rec);
      changed_.insert(r.name);
    }
    return;
  }
  // The home broker admitted it; this broker's policy and registry must too (what
  // HELLO would check here): the role and its suite, software keys, simulators,
  // attestation, revocations by name and by key, pins.
  status st = s == nullptr || !key ? status(status_code::invalid_field, "suite or key unusable")
                                   : role_admits(pol_, r.role, *s, r.key_protection, r.tpm_simulator, !r.evidence.empty());
  if (st) {
    candidate who;
    who.name = r.name;
    who.role = r.role;
    who.fingerprint = key->fingerprint_hex();
    st = enrolment_authority(pol_, reg_).screen(who, std::nullopt);
  }
  if (st && (revoked_.count(r.name + "/") || revoked_.count(r.name + "/" + key->fingerprint_hex())))
    st = status(status_code::revoked_agent, "revoked in the federation");
  if (!st) {
    stats_.increment("federation_directory_rejected_total");
    if (limiter_.allow("federation_record"))
      spdlog::warn("federation: {} at broker {} is not admitted by this broker's policy: {}", r.name, r.writer, st.to_string());
    // Whatever was known of it from an earlier record no longer holds.
    if (existing != nullptr && existing->remote()) forget_remote(*existing);
    return;
  }
  known_agent& a = existing != nullptr ? *existing : agents_.remember(r.name);
  a.directory_written_ms = r.written_ms;
  if (a.online()) {
    if (!r.online) return;  // an old record of the agent that has since come here
    // Another broker holds the name now: it won the directory's compare-and-set, or
    // took it over while this broker was unreachable.
    stats_.increment("federation_claims_lost_total");
    spdlog::warn("{} disconnected: broker {} holds the name now", r.name, r.writer);
    agents_.close(a);
  }
  const bool key_changed = a.key && a.key->der() != r.identity_der;
  set_presence(a, false);
  a.home = r.writer;
  adopt(a, r, std::move(*key), *s);
  a.remote_online = r.online;
  a.remote_subscriptions.clear();
  a.remote_queue_groups.clear();
  for (const auto& t : r.subscriptions)
    if (t.size() <= 128 && (is_concrete_topic(t) || is_topic_pattern(t)) && pol_.check_subscribe(r.role, t))
      a.remote_subscriptions.insert(t);
  for (const auto& [t, group] : r.queue_groups)
    if (a.remote_subscriptions.count(t) && is_queue_group_name(group)) a.remote_queue_groups[t] = group;
  const bool present = r.online && live(r.writer);
  set_presence(a, present);
  if (present) agents_.unpark(a);
  else agents_.park(a);
  if (key_changed) {
    if (limiter_.allow("federation_key_change"))
      spdlog::info("federation: {} (at broker {}) has a new key; local agents are told", r.name, r.writer);
    control_.announce_key_change(r.name);
  }
}

void federation::on_revocation(const fw::revocation_record& r) {
  // Each (name, key) once: the bucket's initial values repeat them at every start, and
  // this broker's own come back to it (applied when the operator revoked here).
  if (!revoked_.insert(r.name + "/" + r.fingerprint).second) return;
  if (limiter_.allow("federation_revocation"))
    spdlog::warn("federation: {} revoked at broker {}: {}", r.name, r.writer, r.reason);
  const std::int64_t at = static_cast<std::int64_t>(r.written_ms);
  try {
    // In this broker's registry too: the key is refused under any name here, and a
    // record of the name (if it ever enrolled here) is marked revoked.
    if (!r.fingerprint.empty()) reg_.revoke_key(key_revocation{r.fingerprint, r.name, "federation: " + r.reason, at});
    reg_.revoke(r.name, "federation: " + r.reason, at);
  } catch (const std::exception& e) {
    stats_.increment("registry_errors_total");
    spdlog::error("registry: cannot record the revocation of {}: {}", r.name, e.what());
  }
  if (known_agent* a = agents_.find(r.name)) {
    if (a->online()) agents_.close(*a);
    if (a->remote()) forget_remote(*a);
    a->key.reset();
  }
  control_.announce_revocation(r.name);
}

void federation::set_presence(known_agent& a, bool present) {
  if (!a.remote() || a.remote_present == present) return;
  a.remote_present = present;
  for (const auto& t : a.remote_subscriptions) {
    const auto g = a.remote_queue_groups.find(t);
    const std::string group = g == a.remote_queue_groups.end() ? std::string() : g->second;
    if (present) control_.add_remote(t, group, a.name);
    else control_.remove_remote(t, group, a.name);
  }
}

void federation::sweep(steady::time_point) {
  std::size_t live_count = 0;
  for (const auto& [name, at] : heartbeats_) {
    const bool now_live = live(name);
    live_count += now_live ? 1 : 0;
    bool& was = was_live_[name];
    if (was && !now_live) {
      spdlog::warn("federation: broker {} is silent for {} ms: presumed down; its agents are unreachable", name,
                   cfg_.federation_stale_after_ms);
      agents_.for_each_known([&](known_agent& a) {
        if (a.home != name) return;
        set_presence(a, false);
        agents_.park(a);
      });
    }
    was = now_live;
  }
  stats_.set_gauge("federation_brokers_live", {}, static_cast<double>(live_count));
  expire_unconfirmed(steady::now());
  flush();
}

}  // namespace agentbus::broker
