// registry_enrolment.cpp — the registry's enrolment authority: tokens, revoked keys,
// and the one transaction that commits an enrolment (schemas/registry.md §2.4-2.5).
#include "registry.hpp"
#include "registry_sqlite.hpp"

namespace agentbus::broker {

namespace {

using sqlite::statement;
using sqlite::transaction;

constexpr std::int64_t kDayMs = 24LL * 3600 * 1000;

#define AGENTBUS_TOKEN_COLUMNS \
  "hash, name, role, fingerprint, created_at, expires_at, created_by, used_at, used_by_fingerprint, transport_key, " \
  "ek_fingerprint"

token_record read_token(const statement& s) {
  token_record t;
  t.hash = s.text(0);
  t.name = s.text(1);
  t.role = s.text(2);
  t.fingerprint = s.text(3);
  t.created_at = s.int64(4);
  t.expires_at = s.int64(5);
  t.created_by = s.text(6);
  t.used_at = s.int64(7);
  t.used_by_fingerprint = s.text(8);
  t.transport_key = s.text(9);
  t.ek_fingerprint = s.text(10);
  return t;
}

}  // namespace

bool registry::enrol(const agent_record& a, std::optional<std::string_view> token_hash, std::string_view transport_key) {
  const sqlite::connection& c = self().conn;
  transaction t(c, "enrol");
  if (token_hash) {
    statement s(c,
                "UPDATE tokens SET used_at = ?2, used_by_fingerprint = ?3"
                " WHERE hash = ?1 AND used_at = 0 AND expires_at > ?2 AND name = ?4 AND role = ?5"
                "   AND (fingerprint = '' OR fingerprint = ?3) AND (ek_fingerprint = '' OR ek_fingerprint = ?6)",
                "enrol: consume token");
    s.bind_text(1, *token_hash).bind_int(2, a.last_seen).bind_text(3, a.fingerprint);
    s.bind_text(4, a.name).bind_text(5, a.role).bind_text(6, a.ek_fingerprint);
    if (s.run() != 1) return false;  // rolled back by the transaction's destructor
  }
  if (transport_key.empty()) {
    // A new key enrolling over ipc: the transport key the old key enrolled over (which
    // may be what was stolen with it) admits no one any more.
    statement clear(c, "UPDATE agents SET transport_key = '' WHERE name = ?1 AND fingerprint <> ?2",
                    "enrol: new key, no transport key");
    clear.bind_text(1, a.name).bind_text(2, a.fingerprint);
    clear.run();
  }
  supersede_key(a.name, a.fingerprint, a.last_seen);
  upsert_agent(a);
  if (!transport_key.empty()) {
    // One agent per transport key: a key another name enrolled over moves here.
    statement clear(c, "UPDATE agents SET transport_key = '' WHERE transport_key = ?1 AND name <> ?2",
                    "enrol: move transport key");
    clear.bind_text(1, transport_key).bind_text(2, a.name);
    clear.run();
    statement s(c, "UPDATE agents SET transport_key = ?2 WHERE name = ?1", "enrol: transport key");
    s.bind_text(1, a.name).bind_text(2, transport_key);
    s.run();
  }
  t.commit();
  return true;
}

bool registry::add_token(const token_record& tok) {
  const sqlite::connection& c = self().conn;
  transaction t(c, "add_token");
  {
    statement purge(c, "DELETE FROM tokens WHERE (used_at <> 0 AND used_at < ?1) OR expires_at < ?1", "add_token: purge");
    purge.bind_int(1, tok.created_at - kDayMs);
    purge.run();
  }
  {
    statement n(c, "SELECT count(*) FROM tokens", "add_token: count");
    if (n.step() && n.count(0) >= kMaxTokens) return false;
  }
  statement s(c, "INSERT INTO tokens (" AGENTBUS_TOKEN_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, '', ?8, ?9)",
              "add_token");
  s.bind_text(1, tok.hash).bind_text(2, tok.name).bind_text(3, tok.role).bind_text(4, tok.fingerprint);
  s.bind_int(5, tok.created_at).bind_int(6, tok.expires_at).bind_text(7, tok.created_by).bind_text(8, tok.transport_key);
  s.bind_text(9, tok.ek_fingerprint);
  s.run();
  t.commit();
  return true;
}

std::optional<token_record> registry::find_token(std::string_view hash) const {
  statement s(self().conn, "SELECT " AGENTBUS_TOKEN_COLUMNS " FROM tokens WHERE hash = ?1", "find_token");
  s.bind_text(1, hash);
  if (!s.step()) return std::nullopt;
  return read_token(s);
}

std::vector<token_record> registry::tokens() const {
  statement s(self().conn, "SELECT " AGENTBUS_TOKEN_COLUMNS " FROM tokens ORDER BY created_at DESC, hash", "tokens");
  std::vector<token_record> out;
  while (s.step()) out.push_back(read_token(s));
  return out;
}

std::vector<token_record> registry::usable_tokens(std::string_view name, std::string_view role, std::int64_t now_ms) const {
  statement s(self().conn,
              "SELECT " AGENTBUS_TOKEN_COLUMNS " FROM tokens WHERE name = ?1 AND role = ?2 AND used_at = 0 AND "
              "expires_at > ?3 ORDER BY created_at DESC, hash LIMIT ?4",
              "usable_tokens");
  s.bind_text(1, name).bind_text(2, role).bind_int(3, now_ms).bind_int(4, static_cast<std::int64_t>(kMaxUsableTokensPerName));
  std::vector<token_record> out;
  while (s.step()) out.push_back(read_token(s));
  return out;
}

std::string registry::transport_admission(std::string_view key_hex, std::int64_t now_ms) const {
  if (key_hex.empty()) return {};
  statement s(self().conn,
              "SELECT 'token' FROM tokens WHERE transport_key = ?1 AND used_at = 0 AND expires_at > ?2"
              " UNION ALL"
              " SELECT 'agent' FROM agents WHERE transport_key = ?1 AND revoked = 0"
              "   AND fingerprint NOT IN (SELECT fingerprint FROM revoked_keys)"
              " LIMIT 1",
              "transport_admission");
  s.bind_text(1, key_hex).bind_int(2, now_ms);
  return s.step() ? s.text(0) : std::string{};
}

bool registry::delete_token(std::string_view id) {
  if (id.size() != 16) return false;
  statement s(self().conn, "DELETE FROM tokens WHERE substr(hash, 1, 16) = ?1 AND used_at = 0", "delete_token");
  s.bind_text(1, id);
  return s.run() > 0;
}

bool registry::revoke_key(const key_revocation& k) {
  statement s(self().conn,
              "INSERT INTO revoked_keys (fingerprint, agent, reason, revoked_at) VALUES (?1, ?2, ?3, ?4)"
              " ON CONFLICT (fingerprint) DO NOTHING",
              "revoke_key");
  s.bind_text(1, k.fingerprint).bind_text(2, k.agent).bind_text(3, k.reason).bind_int(4, k.revoked_at);
  return s.run() > 0;
}

std::optional<key_revocation> registry::find_revoked_key(std::string_view fingerprint) const {
  statement s(self().conn, "SELECT fingerprint, agent, reason, revoked_at FROM revoked_keys WHERE fingerprint = ?1",
              "find_revoked_key");
  s.bind_text(1, fingerprint);
  if (!s.step()) return std::nullopt;
  return key_revocation{s.text(0), s.text(1), s.text(2), s.int64(3)};
}

std::vector<key_revocation> registry::revoked_keys() const {
  statement s(self().conn, "SELECT fingerprint, agent, reason, revoked_at FROM revoked_keys ORDER BY revoked_at, fingerprint",
              "revoked_keys");
  std::vector<key_revocation> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), s.text(2), s.int64(3)});
  return out;
}

registry::nonce_outcome registry::record_admin_nonce(std::string_view nonce, std::int64_t timestamp,
                                                     std::int64_t forget_before, std::size_t max_kept) {
  const sqlite::connection& c = self().conn;
  transaction t(c, "record_admin_nonce");
  {
    statement purge(c, "DELETE FROM admin_nonces WHERE timestamp < ?1", "record_admin_nonce: purge");
    purge.bind_int(1, forget_before);
    purge.run();
  }
  {
    statement seen(c, "SELECT 1 FROM admin_nonces WHERE nonce = ?1", "record_admin_nonce: find");
    seen.bind_text(1, nonce);
    if (seen.step()) {
      t.commit();  // the purge stands
      return nonce_outcome::seen;
    }
  }
  {
    statement n(c, "SELECT count(*) FROM admin_nonces", "record_admin_nonce: count");
    if (n.step() && n.count(0) >= max_kept) {
      t.commit();
      return nonce_outcome::full;
    }
  }
  statement s(c, "INSERT INTO admin_nonces (nonce, timestamp) VALUES (?1, ?2)", "record_admin_nonce");
  s.bind_text(1, nonce).bind_int(2, timestamp);
  s.run();
  t.commit();
  return nonce_outcome::recorded;
}

#undef AGENTBUS_TOKEN_COLUMNS

}  // namespace agentbus::broker
