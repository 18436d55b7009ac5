// admin_protocol.cpp — JSON admin requests, operator signatures, result shapes.
#include "admin_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

#include "agentbus/bytes.hpp"
#include "agentbus/crypto.hpp"
#include "net/transport_key.hpp"

namespace agentbus::broker {
namespace {

using json = nlohmann::json;

json time_or_null(std::int64_t ms) { return ms == 0 ? json(nullptr) : json(ms); }
json string_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

// string_field returns obj[key] if it is a string; nullopt when missing or not a string.
std::optional<std::string> string_field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// fingerprint_field: obj["fingerprint"] in lower case when it is 64 hex digits (the
// full SHA-256 of a DER public key); nullopt when missing or malformed.
std::optional<std::string> fingerprint_field(const json& obj, const char* field = "fingerprint") {
  auto fp = string_field(obj, field);
  if (!fp || fp->size() != 64 || !is_hex(*fp)) return std::nullopt;
  return lower(*fp);
}

// A request names at most a short agent name; the caps keep a hostile request
// from filling logs or the registry's detail fields.
constexpr std::size_t kMaxNameBytes = 256;
constexpr std::size_t kMaxReasonBytes = 1024;

// reason_field: obj["reason"], non-empty and at most kMaxReasonBytes (`op` names the
// request in the error).
result<std::string> reason_field(const json& obj, const std::string& op) {
  auto reason = string_field(obj, "reason");
  if (!reason || reason->empty()) return status{status_code::malformed, op + " needs a non-empty string 'reason'"};
  if (reason->size() > kMaxReasonBytes) return status{status_code::too_large, "reason exceeds 1024 bytes"};
  return std::move(*reason);
}

// is_agent_name: schemas/envelope.md §6 (a token of at most 128 bytes): one or more of
// [A-Za-z0-9._-], the first alphanumeric.
bool is_agent_name(std::string_view s) {
  if (s.empty() || s.size() > 128 || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

const operator_key* operator_for(const policy& pol, const std::string& fingerprint) {
  if (const operator_key* op = pol.find_operator(fingerprint)) return op;
  // Policy files may spell the fingerprint in upper case; the key's is lower case.
  for (const auto& op : pol.operators())
    if (lower(op.fingerprint) == fingerprint) return &op;
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------- record JSON

nlohmann::json to_json(const agent_record& a) {
  return json{{"name", a.name},
              {"role", a.role},
              {"suite", a.suite},
              {"fingerprint", a.fingerprint},
              {"public_key_pem", a.public_key_pem},
              {"protection", a.protection},
              {"tpm_manufacturer", a.tpm_manufacturer},
              {"tpm_simulator", a.tpm_simulator},
              {"enrolled_at", time_or_null(a.enrolled_at)},
              {"last_seen", time_or_null(a.last_seen)},
              {"revoked", a.revoked},
              {"revoked_reason", string_or_null(a.revoked ? a.revoked_reason : std::string())},
              {"revoked_at", time_or_null(a.revoked ? a.revoked_at : 0)},
              {"pending_fingerprint", string_or_null(a.pending_fingerprint)},
              {"pending_public_key_pem", string_or_null(a.pending_public_key_pem)},
              {"pending_at", time_or_null(a.pending_fingerprint.empty() ? 0 : a.pending_at)},
              {"pending_address", string_or_null(a.pending_fingerprint.empty() ? std::string() : a.pending_address)},
              {"pending_evidence", string_or_null(a.pending_fingerprint.empty() ? std::string() : a.pending_evidence)},
              {"attestation", a.ek_ca.empty() ? json(nullptr)
                                              : json{{"ek_ca", a.ek_ca},
                                                     {"ek_issuer", a.ek_issuer},
                                                     {"ek_fingerprint", a.ek_fingerprint},
                                                     {"ak_name", a.ak_name}}}};
}

nlohmann::json to_json(const token_record& t) {
  return json{{"id", t.id()},
              {"agent", t.name},
              {"role", t.role},
              {"fingerprint", string_or_null(t.fingerprint)},
              {"created_at", time_or_null(t.created_at)},
              {"expires_at", time_or_null(t.expires_at)},
              {"created_by", t.created_by},
              {"used_at", time_or_null(t.used_at)},
              {"used_by_fingerprint", string_or_null(t.used_by_fingerprint)},
              {"ek_fingerprint", string_or_null(t.ek_fingerprint)}};
}

nlohmann::json to_json(const key_revocation& k) {
  return json{{"fingerprint", k.fingerprint},
              {"agent", string_or_null(k.agent)},
              {"reason", k.reason},
              {"revoked_at", time_or_null(k.revoked_at)}};
}

nlohmann::json to_json(const edge_record& e) {
  return json{{"a", e.a},
              {"b", e.b},
              {"curve", e.curve},
              {"mac", e.mac},
              {"established_at", time_or_null(e.established_at)},
              {"last_rekey_at", time_or_null(e.last_rekey_at)},
              {"rekeys", e.rekeys},
              {"messages_a_to_b", e.messages_a_to_b},
              {"messages_b_to_a", e.messages_b_to_a}};
}

nlohmann::json to_json(const refusal_record& r) {
  return json{{"agent", r.agent},
              {"reason", r.reason},
              {"count", r.count},
              {"last_at", time_or_null(r.last_at)},
              {"last_detail", r.last_detail}};
}

nlohmann::json agent_json(const agent_record& a, bool online) {
  json j = to_json(a);
  j["online"] = online;
  return j;
}

nlohmann::json edge_json(const edge_record& e, bool revoked) {
  json j = to_json(e);
  j["revoked"] = revoked;
  return j;
}

// ---------------------------------------------------------------- state defaults

status admin_state::revoke(const std::string&, const std::string&, const std::string&) {
  return {status_code::refused, "this admin endpoint is read-only"};
}
status admin_state::approve(const std::string&, const std::string&, const std::string&) {
  return {status_code::refused, "this admin endpoint is read-only"};
}
status admin_state::reset_counters(const std::string&, const std::string&) {
  return {status_code::refused, "this admin endpoint is read-only"};
}
status admin_state::reject(const std::string&, const std::string&, const std::string&) {
  return {status_code::refused, "this admin endpoint is read-only"};
}
status admin_state::create_token(const token_record&) {
  return {status_code::refused, "this admin endpoint is read-only"};
}
status admin_state::revoke_key(const key_revocation&, const std::string&) {
  return {status_code::refused, "this admin endpoint is read-only"};
}

registry_admin_state::registry_admin_state(registry& reg) : reg_(reg) {}

std::vector<agent_record> registry_admin_state::agents() { return reg_.agents(); }
std::optional<agent_record> registry_admin_state::find_agent(std::string_view name) { return reg_.find_agent(name); }
std::vector<edge_record> registry_admin_state::edges() { return reg_.edges(); }
std::vector<refusal_record> registry_admin_state::refusals() { return reg_.refusals(); }

status registry_admin_state::revoke(const std::string& agent, const std::string& reason, const std::string&) {
  if (!reg_.revoke(agent, reason, now_unix_ms())) return {status_code::unknown_agent, "no agent named '" + agent + "'"};
  return {};
}

status registry_admin_state::approve(const std::string& agent, const std::string& fingerprint, const std::string&) {
  if (!reg_.approve_key(agent, fingerprint))
    return {status_code::key_changed, "the key awaiting approval for " + agent + " changed meanwhile"};
  return {};
}

std::vector<token_record> registry_admin_state::tokens() { return reg_.tokens(); }
std::vector<key_revocation> registry_admin_state::revoked_keys() { return reg_.revoked_keys(); }

status registry_admin_state::reject(const std::string& agent, const std::string& fingerprint, const std::string&) {
  if (!reg_.reject_key(agent, fingerprint))
    return {status_code::key_changed, "the key awaiting approval for " + agent + " changed meanwhile"};
  return {};
}

status registry_admin_state::create_token(const token_record& t) {
  if (!reg_.add_token(t))
    return {status_code::overloaded, "the registry holds " + std::to_string(registry::kMaxTokens) + " tokens already"};
  return {};
}

status registry_admin_state::revoke_key(const key_revocation& k, const std::string&) {
  (void)reg_.revoke_key(k);  // revoked before: the first record stays, which is what the operator wants
  return {};
}

status registry_admin_state::reset_counters(const std::string& agent, const std::string&) {
  if (agent.empty()) reg_.reset_refusals(std::nullopt);
  else reg_.reset_refusals(std::string_view(agent));
  return {};
}

// ---------------------------------------------------------------- signed requests

std::int64_t now_unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_state_changing_op(std::string_view op) noexcept {
  return op == "revoke" || op == "approve" || op == "reject" || op == "reset_counters" || op == "token_create" ||
         op == "revoke_key";
}

std::string make_signed_request(const nlohmann::json& inner, identity_key& operator_key,
                                const std::string& operator_name, const std::string& broker_fingerprint) {
  json signed_part = inner;
  signed_part["operator"] = operator_name;
  signed_part["broker"] = lower(broker_fingerprint);
  signed_part["timestamp"] = now_unix_ms();
  signed_part["nonce"] = to_hex(crypto::random_bytes(16));
  signed_part["hash"] = std::string(hash_name(operator_key.key_suite().envelope_hash));
  std::string text = signed_part.dump();
  auto sig = operator_key.sign_message(as_bytes(text));
  if (!sig) throw identity_error("signing the admin request failed: " + sig.error().to_string());
  return json{{"signed", text}, {"public_key", operator_key.public_key().pem()}, {"signature", to_hex(*sig)}}.dump();
}

status memory_nonce_ledger::record(const std::string& nonce, std::int64_t timestamp, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  while (!order_.empty() && order_.front().first < now_ms - kAdminMaxSkewMs) {
    nonces_.erase(order_.front().second);
    order_.pop_front();
  }
  if (nonces_.count(nonce) != 0) return status{status_code::replayed, "nonce already used"};
  if (nonces_.size() >= kAdminMaxNonces) return status{status_code::overloaded, "too many recent admin requests"};
  nonces_.insert(nonce);
  // Arrival order approximates timestamp order; an entry is dropped only once its
  // own timestamp (not a later one's) is outside the window, so order errors only
  // keep nonces longer.
  order_.emplace_back(timestamp, nonce);
  return status{};
}

namespace {
// registry_nonce_ledger keeps the nonces in the registry (admin_nonces), so that a
// restarted broker still knows what it carried out (issue 12, case 8).
class registry_nonce_ledger final : public nonce_ledger {
 public:
  explicit registry_nonce_ledger(registry& reg) : reg_(reg) {}
  status record(const std::string& nonce, std::int64_t timestamp, std::int64_t now_ms) override {
    switch (reg_.record_admin_nonce(nonce, timestamp, now_ms - kAdminMaxSkewMs, kAdminMaxNonces)) {
      case registry::nonce_outcome::recorded: return status{};
      case registry::nonce_outcome::seen: return status{status_code::replayed, "nonce already used"};
      case registry::nonce_outcome::full: break;
    }
    return status{status_code::overloaded, "too many recent admin requests"};
  }

 private:
  registry& reg_;
};
}  // namespace

std::shared_ptr<nonce_ledger> admin_state::nonces() { return std::make_shared<memory_nonce_ledger>(); }
std::shared_ptr<nonce_ledger> registry_admin_state::nonces() { return std::make_shared<registry_nonce_ledger>(reg_); }

admin_verifier::admin_verifier(std::shared_ptr<const policy> pol, std::string broker_fingerprint,
                               std::shared_ptr<nonce_ledger> ledger)
    : pol_(std::move(pol)), broker_fingerprint_(lower(broker_fingerprint)), ledger_(std::move(ledger)) {}

result<verified_request> admin_verifier::verify(std::string_view outer_json, std::int64_t now_ms) {
  // 1. Size and the outer structure.
  if (outer_json.size() > kAdminMaxRequestBytes) return status{status_code::too_large, "request exceeds 64 KiB"};
  json outer = json::parse(outer_json, nullptr, /*allow_exceptions=*/false);
  if (outer.is_discarded() || !outer.is_object()) return status{status_code::malformed, "request is not a JSON object"};
  auto signed_text = string_field(outer, "signed");
  auto pem = string_field(outer, "public_key");
  auto sig_hex = string_field(outer, "signature");
  if (!signed_text || !pem || !sig_hex)
    return status{status_code::malformed, "a signed request has string fields 'signed', 'public_key' and 'signature'"};

  // 2. The signer must be an operator: cheap, and nothing else is looked at for strangers.
  auto key = crypto::public_key::from_pem(*pem);
  if (!key) return status{status_code::malformed, "public_key: " + key.error().detail()};
  const std::string fingerprint = key->fingerprint_hex();
  const operator_key* op = operator_for(*pol_, fingerprint);
  if (op == nullptr)
    return status{status_code::acl_denied, "key sha256:" + fingerprint.substr(0, 16) + "... is not an operator in the policy"};

  // 3. The inner request's structure (parsed before the signature check because it
  //    names the hash; nothing in it is acted on until the signature verifies).
  json inner = json::parse(*signed_text, nullptr, false);
  if (inner.is_discarded() || !inner.is_object()) return status{status_code::malformed, "'signed' is not a JSON object"};
  auto op_name = string_field(inner, "op");
  auto nonce = string_field(inner, "nonce");
  auto hash_text = string_field(inner, "hash");
  auto addressee = string_field(inner, "broker");
  auto ts = inner.find("timestamp");
  if (!op_name || !nonce || !hash_text || !addressee || ts == inner.end() || !ts->is_number_integer())
    return status{status_code::malformed, "the signed request needs 'op', 'broker', 'timestamp', 'nonce' and 'hash'"};
  if (!is_state_changing_op(*op_name))
    return status{status_code::invalid_field, "op '" + op_name->substr(0, 32) + "' is not a signed operation"};
  if (nonce->size() != 32 || !is_hex(*nonce)) return status{status_code::invalid_field, "nonce must be 32 hex digits"};
  if (addressee->size() != 64 || !is_hex(*addressee))
    return status{status_code::invalid_field, "broker must be the 64 hex digits of the broker's fingerprint"};
  auto claimed = string_field(inner, "operator");
  if (claimed && !claimed->empty() && *claimed != op->name)
    return status{status_code::acl_denied, "signed as operator '" + claimed->substr(0, 64) + "' with the key of '" + op->name + "'"};

  // 4. The hash must be one a suite of the policy pairs with this key type: no
  //    weaker digest than the operator's key was made for.
  auto h = parse_hash(*hash_text);
  if (!h) return status{status_code::invalid_field, "unknown hash '" + hash_text->substr(0, 16) + "'"};
  const bool paired = std::any_of(pol_->suites().begin(), pol_->suites().end(),
                                  [&](const suite& s) { return s.key == key->type() && s.envelope_hash == *h; });
  if (!paired)
    return status{status_code::suite_mismatch,
                  "no suite of the policy signs with " + key->type().describe() + " over " + std::string(hash_name(*h))};

  // 5. The signature over the exact inner bytes.
  bool hex_ok = false;
  bytes sig = from_hex(*sig_hex, &hex_ok);
  if (!hex_ok || sig.empty()) return status{status_code::bad_signature, "signature does not verify"};
  if (status st = crypto::verify_digest(*key, key->type(), *h, crypto::digest(*h, as_bytes(*signed_text)), sig); !st)
    return status{status_code::bad_signature, "signature does not verify"};

  // 6. Meant for this broker: a request carried out by one broker is refused by any
  //    other that trusts the same operator.
  if (broker_fingerprint_.empty())
    return status{status_code::acl_denied, "this endpoint has no broker identity: it carries out no signed request"};
  if (lower(*addressee) != broker_fingerprint_)
    return status{status_code::acl_denied, "the request is addressed to broker sha256:" + lower(*addressee).substr(0, 16) +
                                               "..., this is sha256:" + broker_fingerprint_.substr(0, 16) + "..."};

  // 7. Freshness, then the nonce (recorded only now that everything else passed).
  const std::int64_t t = ts->get<std::int64_t>();
  if (t < now_ms - kAdminMaxSkewMs || t > now_ms + kAdminMaxSkewMs)
    return status{status_code::stale, "timestamp is more than 5 minutes from the broker's clock"};
  if (status st = ledger_->record(lower(*nonce), t, now_ms); !st) return st;
  return verified_request{std::move(inner), op->name};
}

// ---------------------------------------------------------------- handler

nlohmann::json ok_reply(nlohmann::json result) { return json{{"ok", true}, {"result", std::move(result)}}; }

nlohmann::json error_reply(const status& st) {
  return json{{"ok", false}, {"error", {{"code", std::string(status_code_name(st.code()))}, {"message", st.detail()}}}};
}

namespace {
std::string broker_fingerprint_of(const nlohmann::json& identity) {
  if (!identity.is_object()) return {};
  auto f = identity.find("fingerprint");
  return f != identity.end() && f->is_string() ? f->get<std::string>() : std::string();
}
}  // namespace

admin_handler::admin_handler(std::shared_ptr<const policy> pol, admin_state& state)
    : pol_(pol), state_(state), verifier_(std::move(pol), broker_fingerprint_of(state.broker_identity()), state.nonces()) {}

std::string admin_handler::handle(std::string_view request, std::int64_t now_ms) {
  // Agent names and details are arbitrary bytes; replace invalid UTF-8 rather than throw.
  return handle_json(request, now_ms).dump(-1, ' ', false, json::error_handler_t::replace);
}

nlohmann::json admin_handler::handle_json(std::string_view request, std::int64_t now_ms) {
  try {
    if (request.size() > kAdminMaxRequestBytes) return error_reply({status_code::too_large, "request exceeds 64 KiB"});
    json req = json::parse(request, nullptr, false);
    if (req.is_discarded() || !req.is_object())
      return error_reply({status_code::malformed, "a request is a JSON object (or the text 'metrics' or 'stats')"});
    if (req.contains("signed")) {
      auto v = verifier_.verify(request, now_ms);
      if (!v) return error_reply(v.error());
      auto r = apply(*v);
      return r ? ok_reply(std::move(*r)) : error_reply(r.error());
    }
    auto op = string_field(req, "op");
    if (!op) return error_reply({status_code::malformed, "request has no string 'op'"});
    if (is_state_changing_op(*op))
      return error_reply({status_code::acl_denied, "'" + *op + "' changes state: it must be signed by an operator key"});
    auto r = read_only(*op, req);
    return r ? ok_reply(std::move(*r)) : error_reply(r.error());
  } catch (const std::exception& e) {
    // The registry failing is the environment's fault, not the request's: report it
    // and keep serving.
    return error_reply({status_code::internal, e.what()});
  }
}

result<nlohmann::json> admin_handler::read_only(const std::string& op, const nlohmann::json& req) {
  auto agents_by_name = [this] {
    std::map<std::string, agent_record, std::less<>> m;
    for (auto& a : state_.agents()) m.emplace(a.name, std::move(a));
    return m;
  };
  auto edges_json = [this](const std::map<std::string, agent_record, std::less<>>& agents, std::string_view only) {
    json out = json::array();
    for (const auto& e : state_.edges()) {
      if (!only.empty() && e.a != only && e.b != only) continue;
      auto revoked = [&](const std::string& n) {
        auto it = agents.find(n);
        return it != agents.end() && it->second.revoked;
      };
      out.push_back(edge_json(e, revoked(e.a) || revoked(e.b)));
    }
    return out;
  };
  auto refusals_json = [this](std::string_view only) {
    json out = json::array();
    for (const auto& r : state_.refusals())
      if (only.empty() || r.agent == only) out.push_back(to_json(r));
    return out;
  };
  auto agents_json = [this](const std::map<std::string, agent_record, std::less<>>& agents) {
    json out = json::array();
    for (const auto& [name, a] : agents) out.push_back(agent_json(a, state_.online(name)));
    return out;
  };

  if (op == "agents") return agents_json(agents_by_name());
  if (op == "edges") return edges_json(agents_by_name(), "");
  if (op == "violations") return refusals_json("");
  if (op == "stats") return state_.stats();
  if (op == "broker") return state_.broker_identity();
  if (op == "profiles") return policy_profiles(*pol_);
  if (op == "federation") return state_.federation();
  if (op == "tokens") {
    json out = json::array();
    for (const auto& t : state_.tokens()) out.push_back(to_json(t));
    return out;
  }
  if (op == "revoked_keys") {
    json out = json::array();
    for (const auto& k : state_.revoked_keys()) out.push_back(to_json(k));
    return out;
  }
  if (op == "graph") {
    auto agents = agents_by_name();
    return json{{"agents", agents_json(agents)},
                {"edges", edges_json(agents, "")},
                {"policy_edges", policy_edges(*pol_)},
                {"refusals", refusals_json("")}};
  }
  if (op == "show") {
    auto name = string_field(req, "agent");
    if (!name || name->empty()) return status{status_code::malformed, "show needs a string 'agent'"};
    if (name->size() > kMaxNameBytes) return status{status_code::too_large, "agent name exceeds 256 bytes"};
    auto a = state_.find_agent(*name);
    if (!a) return status{status_code::unknown_agent, "no agent named '" + *name + "' in the registry"};
    auto agents = agents_by_name();
    return json{{"agent", agent_json(*a, state_.online(a->name))},
                {"edges", edges_json(agents, a->name)},
                {"refusals", refusals_json(a->name)}};
  }
  return status{status_code::invalid_field,
                "unknown op '" + op.substr(0, 32) +
                    "' (agents, show, edges, violations, graph, stats, broker, profiles, tokens, revoked_keys, revoke, approve, "
                    "reject, reset_counters, token_create, revoke_key)"};
}

result<nlohmann::json> admin_handler::apply(const verified_request& req) {
  const std::string op = req.inner.at("op").get<std::string>();
  if (op == "token_create") return create_token(req);
  if (op == "revoke_key") return revoke_key(req);
  auto agent = string_field(req.inner, "agent").value_or("");
  if (agent.size() > kMaxNameBytes) return status{status_code::too_large, "agent name exceeds 256 bytes"};
  if (agent.empty() && op != "reset_counters") return status{status_code::malformed, op + " needs a string 'agent'"};

  std::optional<agent_record> before;
  // Refusals are counted for names that never enrolled too: reset_counters takes any name.
  if (op != "reset_counters") {
    before = state_.find_agent(agent);
    if (!before) return status{status_code::unknown_agent, "no agent named '" + agent + "' in the registry"};
  }
  status st;
  if (op == "revoke") {
    auto reason = reason_field(req.inner, op);
    if (!reason) return reason.error();
    st = state_.revoke(agent, *reason, req.operator_name);
  } else if (op == "approve") {
    auto fp = fingerprint_field(req.inner);
    if (!fp)
      return status{status_code::malformed, "approve needs 'fingerprint': 64 hex digits (SHA-256 of the DER public key)"};
    if (before->pending_fingerprint.empty())
      return status{status_code::invalid_field, agent + " has no changed key awaiting approval"};
    if (*fp != lower(before->pending_fingerprint))
      return status{status_code::key_changed, "fingerprint does not match the key awaiting approval for " + agent +
                                                  " (sha256:" + before->pending_fingerprint.substr(0, 16) + "...)"};
    st = state_.approve(agent, before->pending_fingerprint, req.operator_name);
  } else if (op == "reject") {
    auto fp = fingerprint_field(req.inner);
    if (!fp)
      return status{status_code::malformed, "reject needs 'fingerprint': 64 hex digits (SHA-256 of the DER public key)"};
    if (before->pending_fingerprint.empty() || *fp != lower(before->pending_fingerprint))
      return status{status_code::invalid_field, agent + " has no such key awaiting approval"};
    st = state_.reject(agent, before->pending_fingerprint, req.operator_name);
  } else {
    st = state_.reset_counters(agent, req.operator_name);
  }
  if (!st) return st;

  json record = nullptr;
  if (!agent.empty())
    if (auto after = state_.find_agent(agent)) record = agent_json(*after, state_.online(agent));
  return json{{"op", op},
              {"agent", agent.empty() ? json(nullptr) : json(agent)},
              {"operator", req.operator_name},
              {"agent_record", record}};
}

result<nlohmann::json> admin_handler::create_token(const verified_request& req) {
  auto agent = string_field(req.inner, "agent");
  auto role = string_field(req.inner, "role");
  if (!agent || !role) return status{status_code::malformed, "token_create needs strings 'agent' and 'role'"};
  if (!is_agent_name(*agent)) return status{status_code::invalid_field, "'" + agent->substr(0, 64) + "' is not an agent name"};
  if (pol_->find_role(*role) == nullptr) return status{status_code::unknown_role, "role '" + role->substr(0, 64) + "' is not in the policy"};
  // Optional bindings; present, they must be strings (a number would bind nothing).
  for (const char* field : {"fingerprint", "ek_fingerprint"})
    if (auto it = req.inner.find(field); it != req.inner.end() && !it->is_string())
      return status{status_code::malformed, std::string(field) + ": 64 hex digits"};
  std::string fingerprint;  // optional: empty admits any key
  if (auto given = string_field(req.inner, "fingerprint"); given && !given->empty()) {
    auto fp = fingerprint_field(req.inner);
    if (!fp) return status{status_code::malformed, "fingerprint: 64 hex digits"};
    fingerprint = std::move(*fp);
  }
  std::string ek;  // optional: empty admits a key of any TPM (or none)
  if (auto given = string_field(req.inner, "ek_fingerprint"); given && !given->empty()) {
    auto fp = fingerprint_field(req.inner, "ek_fingerprint");
    if (!fp) return status{status_code::malformed, "ek_fingerprint: 64 hex digits"};
    ek = std::move(*fp);
  }
  std::int64_t ttl = kAdminDefaultTokenTtlSeconds;
  if (auto it = req.inner.find("ttl_seconds"); it != req.inner.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > kAdminMaxTokenTtlSeconds)
      return status{status_code::invalid_field, "ttl_seconds: 1.." + std::to_string(kAdminMaxTokenTtlSeconds)};
    ttl = it->get<std::int64_t>();
  }
  // The token exists in clear only in this reply: the registry keeps its hash.
  const bytes raw = crypto::random_bytes(32);
  token_record t;
  t.hash = to_hex(crypto::digest(hash_algorithm::sha256, raw));
  t.name = *agent;
  t.role = *role;
  t.fingerprint = fingerprint;
  t.ek_fingerprint = ek;
  t.created_at = now_unix_ms();
  t.expires_at = t.created_at + ttl * 1000;
  t.created_by = req.operator_name;
  // The CurveZMQ key the token stands for: the broker's ZAP handler admits it while
  // the token is usable, so the agent can make its first TCP connection.
  t.transport_key = to_hex(net::curve_from_token(raw).public_key);
  if (status st = state_.create_token(t); !st) return st;
  return json{{"op", "token_create"}, {"operator", req.operator_name}, {"token", to_hex(raw)},
              {"token_record", to_json(t)}, {"broker", state_.broker_identity()}};
}

result<nlohmann::json> admin_handler::revoke_key(const verified_request& req) {
  const auto fp = fingerprint_field(req.inner);
  if (!fp)
    return status{status_code::malformed, "revoke_key needs 'fingerprint': 64 hex digits (SHA-256 of the DER public key)"};
  auto reason = reason_field(req.inner, "revoke_key");
  if (!reason) return reason.error();
  const std::string& fingerprint = *fp;
  // Agents pinned to the key are revoked with it (their sessions torn down at once).
  json revoked_agents = json::array();
  for (const auto& a : state_.agents()) {
    // The key itself, or the TPM (EK) the agent's key was attested in.
    if ((a.fingerprint != fingerprint && a.ek_fingerprint != fingerprint) || a.revoked) continue;
    if (status st = state_.revoke(a.name, *reason, req.operator_name); !st) return st;
    revoked_agents.push_back(a.name);
  }
  if (status st = state_.revoke_key({fingerprint, "", *reason, now_unix_ms()}, req.operator_name); !st) return st;
  return json{{"op", "revoke_key"}, {"operator", req.operator_name}, {"fingerprint", fingerprint},
              {"revoked_agents", revoked_agents}};
}

}  // namespace agentbus::broker
