// admin_protocol.hpp — the broker's admin endpoint: JSON requests and replies, the
// operator-signed state changes, and the result shapes agentbus-trust reads.
//
// The admin endpoint is a ZeroMQ REP socket: one request frame, one reply frame.
// The legacy plain-text requests `metrics` and `stats` are answered by the broker
// before anything here is called. Every other request is a JSON object; the
// reply is {"ok":true,"result":...} or {"ok":false,"error":{"code","message"}}
// with `code` a status_code name. schemas/admin.md is the normative description.
//
// Read-only requests ({"op":"agents"}, "show", "edges", "violations", "graph",
// "stats") are open to whoever can reach the socket (file permissions protect the
// default ipc endpoint). State-changing requests (revoke, approve, reset_counters)
// are accepted only when signed by an operator key listed in the policy, fresh,
// and not replayed (admin_verifier).
//
// The same admin_handler serves the broker (over its live registry) and
// agentbus-trust's offline mode (over a read-only database), so the JSON an
// operator sees is the same either way.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"
#include "registry.hpp"

namespace agentbus::broker {

// kAdminMaxRequestBytes bounds a request frame; larger requests are too_large.
inline constexpr std::size_t kAdminMaxRequestBytes = 64 * 1024;
// kAdminMaxSkewMs is how far a signed request's timestamp may be from the
// verifier's clock (either way) before it is stale.
inline constexpr std::int64_t kAdminMaxSkewMs = 5 * 60 * 1000;
// Enrolment tokens (token_create): valid this long unless the request says
// otherwise, and never longer than kAdminMaxTokenTtlSeconds.
inline constexpr std::int64_t kAdminDefaultTokenTtlSeconds = 3600;
inline constexpr std::int64_t kAdminMaxTokenTtlSeconds = 7 * 24 * 3600;
// kAdminMaxNonces bounds the replay cache. Nonces are forgotten once their
// timestamp is outside the skew window (a replay of such a request is stale
// anyway); if more than this many are still fresh, new requests are refused as
// overloaded rather than forgetting a nonce that could still be replayed.
inline constexpr std::size_t kAdminMaxNonces = 65536;

// ---------------------------------------------------------------- record JSON
// to_json renders a registry record with exactly the registry's field names.
// Times are integer Unix milliseconds (null when unset); `protection` is "tpm" or
// "software"; empty pending fields are null.
nlohmann::json to_json(const agent_record& a);
nlohmann::json to_json(const edge_record& e);
nlohmann::json to_json(const refusal_record& r);
// A token renders without its hash: "id" (the hash's first 16 hex digits) names it.
nlohmann::json to_json(const token_record& t);
nlohmann::json to_json(const key_revocation& k);

// agent_json is to_json(a) plus "online".
nlohmann::json agent_json(const agent_record& a, bool online);
// edge_json is to_json(e) plus "revoked": true when either end is revoked.
nlohmann::json edge_json(const edge_record& e, bool revoked);

// policy_edges lists the role pairs the policy allows to talk:
//   {"from_role","to_role","kind":"send","topic":null} when from_role may send to
//   to_role directly (send_to, "*" included), and
//   {"from_role","to_role","kind":"topic","topic":PATTERN} for every publish
//   pattern of from_role that overlaps a subscribe pattern of to_role; PATTERN is
//   the narrowest pattern covering exactly the topics both allow.
// Ordered by from_role, to_role, kind, topic; no duplicates.
nlohmann::json policy_edges(const policy& p);

// policy_profiles renders the policy's operation profiles and what each role got:
// {"profiles":[{"name","description","suite","assurance","batch_max_leaves",
// "batch_max_delay_ms","rekey":{"after_messages","after_seconds"},"roles":[...]}],
// "roles":[{"role","profile","suite","assurance","batch_max_leaves",
// "batch_max_delay_ms","rekey"}]}; a field a profile leaves unset is null.
nlohmann::json policy_profiles(const policy& p);

// topic_patterns_overlap says whether some concrete topic matches both patterns
// ("*" one segment, a final ">" one or more) and, if so, returns the narrowest
// pattern matching exactly the common topics ("metrics/>" ∩ ">" = "metrics/>").
std::optional<std::string> topic_patterns_overlap(std::string_view a, std::string_view b);

// ---------------------------------------------------------------- state
// admin_state is what the admin endpoint reads and changes. The broker implements
// it over its live registry and connection table; agentbus-trust implements the
// read side over a read-only database. Called only from the thread that calls
// admin_handler::handle.
class nonce_ledger;

class admin_state {
 public:
  virtual ~admin_state() = default;

  virtual std::vector<agent_record> agents() = 0;
  virtual std::optional<agent_record> find_agent(std::string_view name) = 0;
  virtual std::vector<edge_record> edges() = 0;
  virtual std::vector<refusal_record> refusals() = 0;
  // online says whether the agent has a live connection (false when unknown).
  virtual bool online(std::string_view agent) { (void)agent; return false; }
  // stats is the broker's metrics as JSON (metrics::to_json); null when none.
  virtual nlohmann::json stats() { return nullptr; }
  virtual std::vector<token_record> tokens() = 0;
  virtual std::vector<key_revocation> revoked_keys() = 0;
  // broker_identity is {"name","fingerprint","suite"} of the broker's identity key;
  // null when unknown (offline).
  virtual nlohmann::json broker_identity() { return nullptr; }
  // federation: the brokers of the federation and where agents live
  // ({"federated":false} for a broker alone; schemas/admin.md).
  virtual nlohmann::json federation() { return {{"federated", false}}; }
  // nonces: where the nonces of signed requests carried out are kept (default: in
  // memory; registry_admin_state: the registry, which outlives a restart).
  virtual std::shared_ptr<nonce_ledger> nonces();

  // The actions below default to `refused` ("read-only"), for read-only states.
  // revoke marks the agent revoked at once (tear down its sessions; its next
  // envelope is refused). The handler has checked that the agent exists.
  virtual status revoke(const std::string& agent, const std::string& reason, const std::string& operator_name);
  // approve pins the pending key: the handler has checked that the agent exists
  // and that `fingerprint` equals its pending_fingerprint.
  virtual status approve(const std::string& agent, const std::string& fingerprint, const std::string& operator_name);
  // reset_counters clears the refusal counters of one agent, or of all when
  // `agent` is empty.
  virtual status reset_counters(const std::string& agent, const std::string& operator_name);
  // reject clears the pending key (the handler checked it is `fingerprint`).
  virtual status reject(const std::string& agent, const std::string& fingerprint, const std::string& operator_name);
  // create_token stores a new token (its hash); overloaded when the registry holds
  // registry::kMaxTokens.
  virtual status create_token(const token_record& t);
  // revoke_key refuses a key under any name (agents pinned to it are revoked by the
  // handler through revoke()).
  virtual status revoke_key(const key_revocation& k, const std::string& operator_name);
};

// registry_admin_state implements admin_state over a registry it borrows (which
// must outlive it): reads come straight from the registry; revoke, approve and
// reset_counters write to it (registry_error, reported as `internal`, for a
// read-only one). online() and stats() keep the defaults. The broker derives from
// it to add online(), stats() and, in revoke(), tearing down the agent's sessions
// after calling registry_admin_state::revoke.
class registry_admin_state : public admin_state {
 public:
  explicit registry_admin_state(registry& reg);

  std::vector<agent_record> agents() override;
  std::optional<agent_record> find_agent(std::string_view name) override;
  std::vector<edge_record> edges() override;
  std::vector<refusal_record> refusals() override;
  status revoke(const std::string& agent, const std::string& reason, const std::string& operator_name) override;
  status approve(const std::string& agent, const std::string& fingerprint, const std::string& operator_name) override;
  status reset_counters(const std::string& agent, const std::string& operator_name) override;
  std::vector<token_record> tokens() override;
  std::vector<key_revocation> revoked_keys() override;
  status reject(const std::string& agent, const std::string& fingerprint, const std::string& operator_name) override;
  status create_token(const token_record& t) override;
  status revoke_key(const key_revocation& k, const std::string& operator_name) override;
  std::shared_ptr<nonce_ledger> nonces() override;

 protected:
  registry& reg_;
};

// ---------------------------------------------------------------- signed requests
// make_signed_request wraps a state-changing request for the admin endpoint. It
// copies `inner` (which holds "op" and its arguments), adds "operator", "broker"
// (`broker_fingerprint`: the broker it is meant for, 64 hex digits), "timestamp"
// (now, Unix ms), "nonce" (128 random bits, hex) and "hash" (the envelope hash of
// the key's suite), serialises it, signs those exact bytes with `operator_key`
// (sign_message) and returns the outer JSON text
// {"signed":INNER_TEXT,"public_key":PEM,"signature":HEX}. Throws identity_error
// when the key refuses to sign.
std::string make_signed_request(const nlohmann::json& inner, identity_key& operator_key,
                                const std::string& operator_name, const std::string& broker_fingerprint);

// verified_request is a state-changing request whose signature, signer, addressee,
// freshness and nonce have been checked. `operator_name` comes from the policy (the
// name listed for the signing key's fingerprint), not from the request.
struct verified_request {
  nlohmann::json inner;
  std::string operator_name;
};

// nonce_ledger remembers the nonces of signed requests carried out, for as long as
// their timestamps are fresh. record: ok when `nonce` is new (now recorded),
// replayed when it was recorded before, overloaded when kAdminMaxNonces fresh ones
// are kept (nothing forgotten early: fail closed).
class nonce_ledger {
 public:
  virtual ~nonce_ledger() = default;
  virtual status record(const std::string& nonce, std::int64_t timestamp, std::int64_t now_ms) = 0;
};

// memory_nonce_ledger: in memory, for a verifier that outlives nothing (tests, a
// stand-in endpoint). A broker uses its registry's (registry_admin_state), which a
// restart does not empty. Thread-safe.
class memory_nonce_ledger final : public nonce_ledger {
 public:
  status record(const std::string& nonce, std::int64_t timestamp, std::int64_t now_ms) override;

 private:
  std::mutex mu_;
  std::unordered_set<std::string> nonces_;
  std::deque<std::pair<std::int64_t, std::string>> order_;  // (timestamp, nonce) in arrival order
};

// admin_verifier checks signed admin requests against the policy's operators.
// In order, cheapest first: the outer JSON (malformed, too_large); the key's
// fingerprint is an operator's (acl_denied); the inner JSON and its fields
// (malformed, invalid_field); the hash is one a policy suite pairs with this key
// type (suite_mismatch); the signature (bad_signature); the request names this
// broker (acl_denied); the timestamp is within ±5 min of now_ms (stale); the nonce
// is new to `ledger` (replayed), which records it only after every check passed.
// An empty `broker_fingerprint` (an endpoint with no broker identity) refuses
// every signed request. Thread-safe if the ledger is.
class admin_verifier {
 public:
  admin_verifier(std::shared_ptr<const policy> pol, std::string broker_fingerprint,
                 std::shared_ptr<nonce_ledger> ledger = std::make_shared<memory_nonce_ledger>());

  result<verified_request> verify(std::string_view outer_json, std::int64_t now_ms);

 private:
  std::shared_ptr<const policy> pol_;
  std::string broker_fingerprint_;  // lower-case hex
  std::shared_ptr<nonce_ledger> ledger_;
};

// ---------------------------------------------------------------- handler
// admin_handler answers JSON admin requests (not the legacy `metrics`/`stats`
// text, which the broker answers itself). handle() never throws for bad input:
// every failure is an error reply. Results:
//   agents      [agent_json...] sorted by name
//   show        {"agent":agent_json,"edges":[edge_json...],"refusals":[refusal...]}
//   edges       [edge_json...]
//   violations  [refusal...] sorted by agent, reason
//   graph       {"agents":[...],"edges":[...],"policy_edges":[...],"refusals":[...]}
//   stats       admin_state::stats()
//   tokens      [token...] newest first (no hashes, no secrets)
//   revoked_keys [key_revocation...]
//   broker      admin_state::broker_identity()
//   profiles    policy_profiles(policy)
//   federation  admin_state::federation()
//   revoke / approve / reject / reset_counters (signed)
//               {"op","agent","operator","agent_record":agent_json|null}
//   token_create (signed) {"op","operator","token":HEX,"token_record":token,"broker":broker_identity}
//   revoke_key (signed) {"op","operator","fingerprint","revoked_agents":[name...]}
// Not thread-safe: one thread (the broker's socket thread) calls it.
class admin_handler {
 public:
  admin_handler(std::shared_ptr<const policy> pol, admin_state& state);

  // handle answers one request frame with one reply frame.
  std::string handle(std::string_view request, std::int64_t now_ms);
  // handle_json is handle() before serialisation (the whole reply object).
  nlohmann::json handle_json(std::string_view request, std::int64_t now_ms);

 private:
  result<nlohmann::json> read_only(const std::string& op, const nlohmann::json& req);
  result<nlohmann::json> apply(const verified_request& req);
  result<nlohmann::json> create_token(const verified_request& req);
  result<nlohmann::json> revoke_key(const verified_request& req);

  std::shared_ptr<const policy> pol_;
  admin_state& state_;
  admin_verifier verifier_;
};

// ok_reply / error_reply build the two reply shapes.
nlohmann::json ok_reply(nlohmann::json result);
nlohmann::json error_reply(const status& st);

// is_state_changing_op says whether `op` needs an operator signature.
bool is_state_changing_op(std::string_view op) noexcept;

// now_unix_ms is the wall clock in Unix milliseconds (what handle() expects).
std::int64_t now_unix_ms() noexcept;

}  // namespace agentbus::broker
