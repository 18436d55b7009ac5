// metrics_catalogue.hpp — every metric the broker exports, in one table: name, kind,
// HELP text, label name and the label values known in advance.
//
// metrics' constructor describes each entry and creates its series for each known
// label value (an unlabelled metric: its one series), so that a scrape of a broker that
// has just started already shows every family at 0: a rate() or an alert on a series
// that appears only with its first increment misses that increment. metric_name
// checks a name written in the broker's code against this table at compile time.
//
// Conventions (https://prometheus.io/docs/practices/naming/): exported with the prefix
// "agentbus_"; counters end in _total; durations are histograms in seconds named
// *_seconds; label values come from fixed sets (status code names, operation names),
// never from what a peer sends, so that no peer can add series.
#pragma once

#include <array>
#include <span>
#include <string_view>

namespace agentbus::broker {

enum class metric_kind { counter, gauge, histogram };

struct catalogue_entry {
  std::string_view name;  // without the "agentbus_" prefix
  metric_kind kind;
  std::string_view help;
  std::string_view label_name;                // empty: unlabelled
  std::span<const std::string_view> preload;  // label values whose series exist from start
};

namespace catalogue_values {
inline constexpr std::string_view accepted[] = {"accepted"};
inline constexpr std::string_view send_failures[] = {"overloaded", "not_deliverable"};
inline constexpr std::string_view cookies[] = {"issued", "renewed"};
inline constexpr std::string_view admitted_by[] = {"token", "agent", "unknown"};
inline constexpr std::string_view transport_refusals[] = {"unknown_key", "malformed", "error"};
inline constexpr std::string_view reload_outcomes[] = {"applied", "refused"};
inline constexpr std::string_view federation_kinds[] = {"direct", "topic", "nack"};
inline constexpr std::string_view directory_kinds[] = {"agent", "broker", "revoked", "deleted"};
}  // namespace catalogue_values

inline constexpr catalogue_entry kMetricCatalogue[] = {
    {"envelopes_total", metric_kind::counter, "Envelopes received at publish, by outcome (accepted or the rejection code).", "outcome", catalogue_values::accepted},
    {"enrolments_total", metric_kind::counter, "Enrolment handshakes, by outcome (accepted or the refusal code).", "outcome", catalogue_values::accepted},
    {"subscriptions_total", metric_kind::counter, "Subscription requests, by outcome.", "outcome", catalogue_values::accepted},
    {"frames_refused_total", metric_kind::counter, "Frames refused before routing, by reason.", "reason", {}},
    {"frames_malformed_total", metric_kind::counter, "ZeroMQ messages that were not an agentbus frame.", {}, {}},
    {"control_total", metric_kind::counter, "Control messages from agents, by operation.", "op", {}},
    {"control_refused_total", metric_kind::counter, "Control messages from agents refused (nack), by reason.", "reason", {}},
    {"control_send_failures_total", metric_kind::counter, "Control messages that could not be sent, by reason (overloaded: the agent's queue is full; not_deliverable: its connection is gone).", "reason", catalogue_values::send_failures},
    {"internal_errors_total", metric_kind::counter, "Unexpected exceptions caught by the event loop or the admin endpoint.", {}, {}},
    {"registry_errors_total", metric_kind::counter, "Registry (SQLite) writes that failed; what they would have recorded is logged.", {}, {}},
    {"wire_batches_total", metric_kind::counter, "Wire batches received (several envelopes under one hop MAC; each envelope is also counted in envelopes_total).", {}, {}},
    {"wire_batches_sent_total", metric_kind::counter, "Wire batches sent: the envelopes of one received wire batch for one recipient, under one hop MAC.", {}, {}},
    {"agents_online", metric_kind::gauge, "Agents currently enrolled and connected.", {}, {}},
    {"agents_known", metric_kind::gauge, "Agent records held in memory: online agents and, at most max_agents, agents gone offline.", {}, {}},
    {"hello_cookies_total", metric_kind::counter, "COOKIE answers to HELLOs without a valid cookie (issued: none; renewed: expired, or for another connection, name or key).", "outcome", catalogue_values::cookies},
    {"recipient_queue_full_total", metric_kind::counter, "Sends that found a recipient's queue full (max_queued_bytes_per_agent or send_hwm): the sender was told overloaded.", {}, {}},
    {"consumers_dropped_total", metric_kind::counter, "Connections closed because nothing was written out to them for drop_stuck_consumer_seconds while bytes waited.", {}, {}},
    {"transport_admitted_total", metric_kind::counter, "TCP connections the ZAP handler admitted after their CurveZMQ handshake, by what admitted the client key (token, agent, unknown: admit_unknown_keys).", "by", catalogue_values::admitted_by},
    {"transport_refused_total", metric_kind::counter, "TCP connections the ZAP handler refused, by reason (unknown_key; malformed: a request it could not read; error: the registry could not be read).", "reason", catalogue_values::transport_refusals},
    {"unauthenticated_connections", metric_kind::gauge, "TCP connections no agent has enrolled over (at the latest sweep).", {}, {}},
    {"unauthenticated_bytes", metric_kind::gauge, "What those connections may make the broker hold: bytes received on them plus a fixed cost each (bounded by max_unauthenticated_bytes).", {}, {}},
    {"unauthenticated_connections_closed_total", metric_kind::counter, "Unauthenticated TCP connections closed because together they held more than 3/8 of max_unauthenticated_bytes (the largest first).", {}, {}},
    {"key_changes_total", metric_kind::counter, "Enrolments of a known name with a new key (a token, the policy pin or an operator approval authorised it); online agents are told.", {}, {}},
    {"static_ecdh_failures_total", metric_kind::counter, "Handshakes that went without the broker's static TPM ECDH share (the key could be neither loaded nor created), by curve.", "curve", {}},
    {"reloads_total", metric_kind::counter, "Reloads of the configuration and policy (SIGHUP), by outcome (refused: the running policy was kept).", "outcome", catalogue_values::reload_outcomes},
    {"reload_agents_closed_total", metric_kind::counter, "Connections closed by a reload because the new policy no longer admits the agent (revoked, role gone, suite no longer allowed).", {}, {}},
    {"reload_subscriptions_withdrawn_total", metric_kind::counter, "Subscriptions removed by a reload because the new policy no longer lets the agent's role follow the topic.", {}, {}},
    {"policy_loaded_timestamp_seconds", metric_kind::gauge, "When the running policy was loaded (Unix time).", {}, {}},
    {"federation_connected", metric_kind::gauge, "1 while the broker is connected to the federation's NATS cluster (absent: not federated).", {}, {}},
    {"federation_brokers_live", metric_kind::gauge, "Other brokers of the federation whose directory heartbeat arrived within stale_after_ms.", {}, {}},
    {"federation_sent_total", metric_kind::counter, "Messages published to other brokers, by kind (direct, topic: envelopes; nack: refusals relayed to a sender's broker).", "kind", catalogue_values::federation_kinds},
    {"federation_received_total", metric_kind::counter, "Messages received from other brokers, by kind.", "kind", catalogue_values::federation_kinds},
    {"federation_publish_failures_total", metric_kind::counter, "Publishes to NATS that failed (connection closed, buffer full): the sender was told.", {}, {}},
    {"federation_inbound_dropped_total", metric_kind::counter, "Messages from other brokers dropped because this broker's inbound queue was full (slow consumer).", {}, {}},
    {"federation_malformed_total", metric_kind::counter, "Messages from other brokers that did not decode, named no broker of the federation, or named a sender not homed there.", {}, {}},
    {"federation_directory_updates_total", metric_kind::counter, "Directory records applied (signature verified), by kind.", "kind", catalogue_values::directory_kinds},
    {"federation_directory_rejected_total", metric_kind::counter, "Directory records ignored: undecodable, from a broker not in [federation] brokers, a key that does not match its fingerprint, or a signature that does not verify.", {}, {}},
    {"federation_directory_write_failures_total", metric_kind::counter, "Directory writes that failed and will be retried (NATS unreachable, JetStream error).", {}, {}},
    {"federation_unconfirmed_total", metric_kind::counter, "Envelopes forwarded to another broker whose receipt did not come within 3 s: each sender was told timeout (may not have been delivered).", {}, {}},
    {"federation_claims_lost_total", metric_kind::counter, "Local agents disconnected because another broker holds their name (enrolled there at the same time, or there after a partition).", {}, {}},
    {"publish_check_seconds", metric_kind::histogram, "Time to check one envelope at publish, by outcome.", "outcome", catalogue_values::accepted},
};

// The TPM's metrics are read from the tpm object at each scrape (metrics::set_tpm_source)
// rather than kept in the registry; their names and HELP live here with the rest.
inline constexpr std::string_view kTpmDurationName = "tpm_operation_duration_seconds";
inline constexpr std::string_view kTpmDurationHelp =
    "Time the broker's TPM took per operation (sign, ecdh_zgen, create, key_load, key_flush, ...), failures included.";
inline constexpr std::string_view kTpmFailuresName = "tpm_operation_failures_total";
inline constexpr std::string_view kTpmFailuresHelp = "TPM operations that failed (an error answer or a missed deadline), by operation.";
inline constexpr std::string_view kBuildInfoName = "build_info";
inline constexpr std::string_view kBuildInfoHelp = "Always 1; the broker's version as a label.";

constexpr bool in_catalogue(std::string_view name) {
  for (const catalogue_entry& e : kMetricCatalogue)
    if (e.name == name) return true;
  return false;
}

// metric_name is a metric's name as the broker's code writes it: a string literal is
// checked against kMetricCatalogue at compile time (a typo or an undescribed metric
// does not build). described() takes a name at run time, for metrics given to
// metrics::describe (tests); using an undescribed one throws std::logic_error.
class metric_name {
 public:
  consteval metric_name(const char* literal) : name_(literal) {  // NOLINT: implicit from a literal on purpose
    if (!in_catalogue(name_)) throw "metric name not in kMetricCatalogue (metrics_catalogue.hpp)";
  }
  static metric_name described(std::string_view name) { return metric_name(name, 0); }
  constexpr std::string_view view() const noexcept { return name_; }

 private:
  constexpr metric_name(std::string_view name, int) : name_(name) {}
  std::string_view name_;
};

}  // namespace agentbus::broker
