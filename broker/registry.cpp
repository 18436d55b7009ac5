#include "registry.hpp"
#include "registry_sqlite.hpp"

#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

namespace agentbus::broker {

namespace {

namespace fs = std::filesystem;
using sqlite::connection;
using sqlite::statement;
using sqlite::transaction;

// ---------------------------------------------------------------- schema

// A migration takes the schema from version - 1 to version. They run in order, all in
// one transaction, and are never edited once released: a change is a new migration.
struct migration {
  int version;
  const char* sql;
};

constexpr migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE agents (
  name                   TEXT    NOT NULL PRIMARY KEY CHECK (name <> ''),
  role                   TEXT    NOT NULL,
  suite                  TEXT    NOT NULL,
  fingerprint            TEXT    NOT NULL CHECK (fingerprint <> ''),
  public_key_pem         TEXT    NOT NULL,
  protection             TEXT    NOT NULL CHECK (protection IN ('tpm', 'software')),
  tpm_manufacturer       TEXT    NOT NULL DEFAULT '',
  tpm_simulator          INTEGER NOT NULL DEFAULT 0 CHECK (tpm_simulator IN (0, 1)),
  enrolled_at            INTEGER NOT NULL,
  last_seen              INTEGER NOT NULL,
  revoked                INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
  revoked_reason         TEXT    NOT NULL DEFAULT '',
  revoked_at             INTEGER NOT NULL DEFAULT 0,
  pending_fingerprint    TEXT    NOT NULL DEFAULT '',
  pending_public_key_pem TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX agents_by_fingerprint ON agents (fingerprint);

CREATE TABLE edges (
  a               TEXT    NOT NULL REFERENCES agents (name) ON UPDATE CASCADE ON DELETE CASCADE,
  b               TEXT    NOT NULL REFERENCES agents (name) ON UPDATE CASCADE ON DELETE CASCADE,
  curve           TEXT    NOT NULL DEFAULT '',
  mac             TEXT    NOT NULL DEFAULT '',
  established_at  INTEGER NOT NULL DEFAULT 0,
  last_rekey_at   INTEGER NOT NULL DEFAULT 0,
  rekeys          INTEGER NOT NULL DEFAULT 0 CHECK (rekeys >= 0),
  messages_a_to_b INTEGER NOT NULL DEFAULT 0 CHECK (messages_a_to_b >= 0),
  messages_b_to_a INTEGER NOT NULL DEFAULT 0 CHECK (messages_b_to_a >= 0),
  PRIMARY KEY (a, b),
  CHECK (a < b)
) STRICT;
CREATE INDEX edges_by_b ON edges (b);

CREATE TABLE refusals (
  agent       TEXT    NOT NULL,
  reason      TEXT    NOT NULL,
  count       INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
  last_at     INTEGER NOT NULL DEFAULT 0,
  last_detail TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (agent, reason)
) STRICT;
CREATE INDEX refusals_by_reason ON refusals (reason);
)sql"},
    // 2: enrolment tokens, revoked keys, and where a pending key came from.
    {2, R"sql(
ALTER TABLE agents ADD COLUMN pending_at       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN pending_address  TEXT    NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN pending_evidence TEXT    NOT NULL DEFAULT '';

CREATE TABLE tokens (
  hash                TEXT    NOT NULL PRIMARY KEY CHECK (length(hash) = 64),
  name                TEXT    NOT NULL CHECK (name <> ''),
  role                TEXT    NOT NULL CHECK (role <> ''),
  fingerprint         TEXT    NOT NULL DEFAULT '',
  created_at          INTEGER NOT NULL,
  expires_at          INTEGER NOT NULL,
  created_by          TEXT    NOT NULL DEFAULT '',
  used_at             INTEGER NOT NULL DEFAULT 0,
  used_by_fingerprint TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX tokens_by_name ON tokens (name);

CREATE TABLE revoked_keys (
  fingerprint TEXT    NOT NULL PRIMARY KEY CHECK (fingerprint <> ''),
  agent       TEXT    NOT NULL DEFAULT '',
  reason      TEXT    NOT NULL DEFAULT '',
  revoked_at  INTEGER NOT NULL
) STRICT;
)sql"},
    // 3: the attestation of the pinned key.
    {3, R"sql(
ALTER TABLE agents ADD COLUMN ek_ca          TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN ek_issuer      TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN ek_fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN ak_name        TEXT NOT NULL DEFAULT '';
)sql"},
    // 4: the nonces of operator-signed admin requests, so that a restarted broker
    // still refuses a request it has already carried out.
    {4, R"sql(
CREATE TABLE admin_nonces (
  nonce     TEXT    NOT NULL PRIMARY KEY CHECK (length(nonce) = 32),
  timestamp INTEGER NOT NULL
) STRICT;
CREATE INDEX admin_nonces_by_timestamp ON admin_nonces (timestamp);
)sql"},
    // 5: CurveZMQ client keys the ZAP handler admits: a token's, an enrolled agent's.
    {5, R"sql(
ALTER TABLE tokens ADD COLUMN transport_key TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN transport_key TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_by_transport_key ON tokens (transport_key) WHERE transport_key <> '';
CREATE INDEX agents_by_transport_key ON agents (transport_key) WHERE transport_key <> '';
)sql"},
    // 6: a token bound to one TPM: the EK whose attested key alone it admits.
    {6, R"sql(
ALTER TABLE tokens ADD COLUMN ek_fingerprint TEXT NOT NULL DEFAULT '';
)sql"},
};

static_assert(std::size(kMigrations) == registry::kSchemaVersion, "one migration per schema version");
static_assert(kMigrations[std::size(kMigrations) - 1].version == registry::kSchemaVersion);

std::int64_t pragma_int(const connection& c, const char* sql, std::string_view label) {
  statement s(c, sql, label);
  return s.step() ? s.int64(0) : 0;
}

int user_version(const connection& c) { return static_cast<int>(pragma_int(c, "PRAGMA user_version", "user_version")); }

// check_identity refuses a file that is not an agentbus registry: a registry carries
// kApplicationId; a new (or empty) file carries nothing at all. Another application's
// database is never modified.
void check_identity(const connection& c, int version) {
  const auto app_id = static_cast<std::int32_t>(pragma_int(c, "PRAGMA application_id", "application_id"));
  if (app_id == registry::kApplicationId) return;
  const bool has_tables = pragma_int(c, "SELECT count(*) FROM sqlite_master", "schema") > 0;
  if (app_id != 0 || version != 0 || has_tables) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(app_id));
    c.refuse(std::string("is a SQLite database but not an agentbus registry (application_id ") + hex + ", user_version " +
             std::to_string(version) + (has_tables ? ", has tables" : "") + "); refusing to use it");
  }
}

[[noreturn]] void refuse_newer(const connection& c, int version) {
  c.refuse("has schema version " + std::to_string(version) + ", newer than this build understands (" +
           std::to_string(registry::kSchemaVersion) + "); use a newer agentbus");
}

// migrate brings the schema to kSchemaVersion and returns the version it found.
int migrate(const connection& c) {
  int found = user_version(c);
  if (found == registry::kSchemaVersion) return found;  // the common case: no write, no lock
  transaction t(c, "migrate");
  found = user_version(c);  // again, under the write lock: another process may have migrated meanwhile
  if (found > registry::kSchemaVersion) refuse_newer(c, found);
  for (const migration& m : kMigrations) {
    if (m.version <= found) continue;
    c.exec(m.sql, "migration to schema version " + std::to_string(m.version));
  }
  // PRAGMA takes no bound parameters; both values are this file's own constants.
  c.exec("PRAGMA application_id = " + std::to_string(registry::kApplicationId), "set application_id");
  c.exec("PRAGMA user_version = " + std::to_string(registry::kSchemaVersion), "set user_version");
  t.commit();
  return found;
}

constexpr std::uint64_t kMaxCount = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

agent_record read_agent(const statement& s) {
  agent_record a;
  a.name = s.text(0);
  a.role = s.text(1);
  a.suite = s.text(2);
  a.fingerprint = s.text(3);
  a.public_key_pem = s.text(4);
  a.protection = s.text(5);
  a.tpm_manufacturer = s.text(6);
  a.tpm_simulator = s.boolean(7);
  a.enrolled_at = s.int64(8);
  a.last_seen = s.int64(9);
  a.revoked = s.boolean(10);
  a.revoked_reason = s.text(11);
  a.revoked_at = s.int64(12);
  a.pending_fingerprint = s.text(13);
  a.pending_public_key_pem = s.text(14);
  a.pending_at = s.int64(15);
  a.pending_address = s.text(16);
  a.pending_evidence = s.text(17);
  a.ek_ca = s.text(18);
  a.ek_issuer = s.text(19);
  a.ek_fingerprint = s.text(20);
  a.ak_name = s.text(21);
  return a;
}

#define AGENTBUS_AGENT_COLUMNS                                                                                 \
  "name, role, suite, fingerprint, public_key_pem, protection, tpm_manufacturer, tpm_simulator, enrolled_at, " \
  "last_seen, revoked, revoked_reason, revoked_at, pending_fingerprint, pending_public_key_pem, pending_at, "      \
  "pending_address, pending_evidence, ek_ca, ek_issuer, ek_fingerprint, ak_name"

// ordered_pair puts two agent names in the edge's (a, b) order: bytewise, as SQLite's
// BINARY collation compares them in CHECK (a < b) and ORDER BY.
std::pair<std::string_view, std::string_view> ordered_pair(std::string_view x, std::string_view y) {
  return x < y ? std::pair{x, y} : std::pair{y, x};
}

}  // namespace

// ---------------------------------------------------------------- registry

registry::registry(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}

registry::registry(const fs::path& db_file) {
  // FULLMUTEX (serialized): a misuse from two threads cannot corrupt SQLite's state,
  // though it is still a misuse (see the class comment).
  auto p = std::unique_ptr<impl>(new impl{
      connection(db_file, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX), db_file, 0, false});
  const connection& c = p->conn;
  const int version = user_version(c);  // the first read: "file is not a database" surfaces here
  check_identity(c, version);
  if (version > kSchemaVersion) refuse_newer(c, version);

  // WAL is a property of the file (it persists); the other two are per connection.
  // WAL + synchronous=NORMAL: a commit is in the OS once COMMIT returns, so it survives
  // the process dying; fsync happens at checkpoints, so an OS crash may lose the latest
  // commits but never corrupts the database.
  {
    statement s(c, "PRAGMA journal_mode = WAL", "journal_mode");
    const std::string mode = s.step() ? s.text(0) : std::string();
    if (mode != "wal") c.refuse("cannot use WAL journal mode (journal_mode is '" + mode + "')");
  }
  c.exec("PRAGMA synchronous = NORMAL", "synchronous");
  c.exec("PRAGMA foreign_keys = ON", "foreign_keys");
  p->opened_at_version = migrate(c);
  impl_ = std::move(p);
}

registry registry::open_readonly(const fs::path& db_file) {
  std::error_code ec;
  if (!fs::exists(db_file, ec))
    throw registry_error("registry " + db_file.string() + ": does not exist" + (ec ? " (" + ec.message() + ")" : std::string()));
  auto p = std::unique_ptr<impl>(
      new impl{connection(db_file, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX), db_file, 0, true});
  const connection& c = p->conn;
  const int version = user_version(c);
  check_identity(c, version);
  if (version > kSchemaVersion) refuse_newer(c, version);
  if (version < kSchemaVersion)
    c.refuse("has schema version " + std::to_string(version) + ", older than this build reads (" +
             std::to_string(kSchemaVersion) + "); open it once read-write (start the broker) to migrate it");
  c.exec("PRAGMA query_only = ON", "query_only");
  p->opened_at_version = version;
  return registry(std::move(p));
}

registry::~registry() = default;
registry::registry(registry&&) noexcept = default;
registry& registry::operator=(registry&&) noexcept = default;

registry::impl& registry::self() const {
  if (!impl_) {
    std::fputs("agentbus::broker::registry used after move\n", stderr);
    std::abort();
  }
  return *impl_;
}

const fs::path& registry::file() const noexcept { return impl_->file; }
int registry::schema_version() const { return user_version(self().conn); }
int registry::opened_at_version() const noexcept { return impl_->opened_at_version; }
bool registry::read_only() const noexcept { return impl_->read_only; }

// ---- agents

std::optional<agent_record> registry::find_agent(std::string_view name) const {
  statement s(self().conn, "SELECT " AGENTBUS_AGENT_COLUMNS " FROM agents WHERE name = ?1", "find_agent");
  s.bind_text(1, name);
  if (!s.step()) return std::nullopt;
  return read_agent(s);
}

std::vector<agent_record> registry::agents() const {
  statement s(self().conn, "SELECT " AGENTBUS_AGENT_COLUMNS " FROM agents ORDER BY name", "agents");
  std::vector<agent_record> out;
  while (s.step()) out.push_back(read_agent(s));
  return out;
}

void registry::upsert_agent(const agent_record& a) {
  // In an UPDATE every right-hand side sees the row as it was, so both pending columns
  // test the old pending_fingerprint.
  statement s(self().conn,
              "INSERT INTO agents (" AGENTBUS_AGENT_COLUMNS ")"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
              " ON CONFLICT (name) DO UPDATE SET"
              "  role = excluded.role, suite = excluded.suite, fingerprint = excluded.fingerprint,"
              "  public_key_pem = excluded.public_key_pem, protection = excluded.protection,"
              "  tpm_manufacturer = excluded.tpm_manufacturer, tpm_simulator = excluded.tpm_simulator,"
              "  last_seen = excluded.last_seen, ek_ca = excluded.ek_ca, ek_issuer = excluded.ek_issuer,"
              "  ek_fingerprint = excluded.ek_fingerprint, ak_name = excluded.ak_name,"
              "  pending_fingerprint = CASE WHEN agents.pending_fingerprint = excluded.fingerprint"
              "                             THEN '' ELSE agents.pending_fingerprint END,"
              "  pending_public_key_pem = CASE WHEN agents.pending_fingerprint = excluded.fingerprint"
              "                                THEN '' ELSE agents.pending_public_key_pem END,"
              "  pending_at = CASE WHEN agents.pending_fingerprint = excluded.fingerprint"
              "                    THEN 0 ELSE agents.pending_at END,"
              "  pending_address = CASE WHEN agents.pending_fingerprint = excluded.fingerprint"
              "                         THEN '' ELSE agents.pending_address END,"
              "  pending_evidence = CASE WHEN agents.pending_fingerprint = excluded.fingerprint"
              "                          THEN '' ELSE agents.pending_evidence END",
              "upsert_agent");
  s.bind_text(1, a.name).bind_text(2, a.role).bind_text(3, a.suite).bind_text(4, a.fingerprint);
  s.bind_text(5, a.public_key_pem).bind_text(6, a.protection).bind_text(7, a.tpm_manufacturer);
  s.bind_int(8, a.tpm_simulator ? 1 : 0).bind_int(9, a.enrolled_at).bind_int(10, a.last_seen);
  s.bind_int(11, a.revoked ? 1 : 0).bind_text(12, a.revoked_reason).bind_int(13, a.revoked_at);
  s.bind_text(14, a.pending_fingerprint).bind_text(15, a.pending_public_key_pem).bind_int(16, a.pending_at);
  s.bind_text(17, a.pending_address).bind_text(18, a.pending_evidence);
  s.bind_text(19, a.ek_ca).bind_text(20, a.ek_issuer).bind_text(21, a.ek_fingerprint).bind_text(22, a.ak_name);
  s.run();
}

bool registry::set_pending_key(const pending_key& k) {
  // The first pending key stays until an operator approves or rejects it: a stream of
  // other keys (each with a verified PROOF) cannot replace the one being reviewed.
  statement s(self().conn,
              "UPDATE agents SET pending_fingerprint = ?2, pending_public_key_pem = ?3, pending_at = ?4,"
              "  pending_address = ?5, pending_evidence = ?6"
              " WHERE name = ?1 AND pending_fingerprint = '' AND fingerprint <> ?2",
              "set_pending_key");
  s.bind_text(1, k.name).bind_text(2, k.fingerprint).bind_text(3, k.pem).bind_int(4, k.at);
  s.bind_text(5, k.address).bind_text(6, k.evidence);
  return s.run() > 0;
}

bool registry::approve_key(std::string_view name, std::string_view fingerprint) {
  const connection& c = self().conn;
  transaction t(c, "approve_key");
  supersede_key(name, fingerprint,
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                    .count());
  statement s(c,
              "UPDATE agents SET fingerprint = pending_fingerprint, public_key_pem = pending_public_key_pem,"
              "  pending_fingerprint = '', pending_public_key_pem = '', pending_at = 0, pending_address = '',"
              "  pending_evidence = '', ek_ca = '', ek_issuer = '', ek_fingerprint = '', ak_name = '',"
              "  transport_key = ''"  // the old key's transport key admits no one any more
              " WHERE name = ?1 AND pending_fingerprint <> '' AND pending_fingerprint = ?2",
              "approve_key");
  s.bind_text(1, name).bind_text(2, fingerprint);
  if (s.run() == 0) return false;
  t.commit();
  return true;
}

void registry::supersede_key(std::string_view name, std::string_view new_fingerprint, std::int64_t at) {
  // The key a name leaves behind is refused from then on, under any name: a thief of
  // the old key cannot enrol it again (nor plant it as a pending change).
  statement k(self().conn,
              "INSERT INTO revoked_keys (fingerprint, agent, reason, revoked_at)"
              " SELECT fingerprint, name, 'superseded by ' || substr(?2, 1, 16), ?3 FROM agents"
              " WHERE name = ?1 AND fingerprint <> ?2"
              " ON CONFLICT (fingerprint) DO NOTHING",
              "supersede_key");
  k.bind_text(1, name).bind_text(2, new_fingerprint).bind_int(3, at);
  k.run();
}

bool registry::reject_key(std::string_view name, std::string_view fingerprint) {
  statement s(self().conn,
              "UPDATE agents SET pending_fingerprint = '', pending_public_key_pem = '', pending_at = 0,"
              "  pending_address = '', pending_evidence = ''"
              " WHERE name = ?1 AND pending_fingerprint <> '' AND pending_fingerprint = ?2",
              "reject_key");
  s.bind_text(1, name).bind_text(2, fingerprint);
  return s.run() > 0;
}

bool registry::revoke(std::string_view name, std::string_view reason, std::int64_t at) {
  const connection& c = self().conn;
  transaction t(c, "revoke");
  statement s(c, "UPDATE agents SET revoked = 1, revoked_reason = ?2, revoked_at = ?3 WHERE name = ?1", "revoke");
  s.bind_text(1, name).bind_text(2, reason).bind_int(3, at);
  if (s.run() == 0) return false;
  // The name's key is revoked with it, under any name (and a pending key too: it was
  // presented for this name).
  statement k(c,
              "INSERT INTO revoked_keys (fingerprint, agent, reason, revoked_at)"
              " SELECT fingerprint, name, ?2, ?3 FROM agents WHERE name = ?1"
              " UNION ALL SELECT pending_fingerprint, name, ?2, ?3 FROM agents WHERE name = ?1 AND pending_fingerprint <> ''"
              " ON CONFLICT (fingerprint) DO NOTHING",
              "revoke: keys");
  k.bind_text(1, name).bind_text(2, reason).bind_int(3, at);
  k.run();
  t.commit();
  return true;
}

bool registry::unrevoke(std::string_view name) {
  statement s(self().conn, "UPDATE agents SET revoked = 0, revoked_reason = '', revoked_at = 0 WHERE name = ?1", "unrevoke");
  s.bind_text(1, name);
  return s.run() > 0;
}

// ---- trust edges

void registry::record_session(std::string_view initiator, std::string_view responder, std::string_view curve,
                              std::string_view mac, std::int64_t at, bool rekey) {
  if (initiator == responder)
    throw std::invalid_argument("registry::record_session: an agent has no session with itself (" + std::string(initiator) + ")");
  const auto [a, b] = ordered_pair(initiator, responder);
  statement s(self().conn,
              "INSERT INTO edges (a, b, curve, mac, established_at, last_rekey_at, rekeys)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)"
              " ON CONFLICT (a, b) DO UPDATE SET"
              "  curve = excluded.curve, mac = excluded.mac,"
              "  established_at = CASE WHEN edges.established_at = 0 THEN excluded.established_at"
              "                        ELSE edges.established_at END,"
              "  last_rekey_at = max(edges.last_rekey_at, excluded.last_rekey_at),"
              "  rekeys = edges.rekeys + excluded.rekeys",
              "record_session");
  s.bind_text(1, a).bind_text(2, b).bind_text(3, curve).bind_text(4, mac).bind_int(5, at).bind_int(6, rekey ? 1 : 0);
  s.run();
}

std::vector<edge_record> registry::edges() const {
  statement s(self().conn,
              "SELECT a, b, curve, mac, established_at, last_rekey_at, rekeys, messages_a_to_b, messages_b_to_a"
              " FROM edges ORDER BY a, b",
              "edges");
  std::vector<edge_record> out;
  while (s.step()) {
    edge_record e;
    e.a = s.text(0);
    e.b = s.text(1);
    e.curve = s.text(2);
    e.mac = s.text(3);
    e.established_at = s.int64(4);
    e.last_rekey_at = s.int64(5);
    e.rekeys = s.count(6);
    e.messages_a_to_b = s.count(7);
    e.messages_b_to_a = s.count(8);
    out.push_back(std::move(e));
  }
  return out;
}

// ---- counters

void registry::flush(const std::vector<traffic_delta>& traffic, const std::vector<refusal_delta>& refusals,
                     const std::vector<seen_delta>& seen) {
  if (traffic.empty() && refusals.empty() && seen.empty()) return;
  // Counters are SQLite INTEGERs (signed 64-bit); refuse before anything is written.
  for (const auto& d : traffic)
    if (d.messages > kMaxCount) throw std::invalid_argument("registry::flush: traffic count out of range");
  for (const auto& d : refusals)
    if (d.count > kMaxCount) throw std::invalid_argument("registry::flush: refusal count out of range");

  const connection& c = self().conn;
  // One transaction for the whole batch: one WAL commit a second instead of one per
  // counter, and a failure anywhere leaves every counter as it was.
  transaction t(c, "flush");
  if (!traffic.empty()) {
    statement s(c,
                "INSERT INTO edges (a, b, messages_a_to_b, messages_b_to_a) VALUES (?1, ?2, ?3, ?4)"
                " ON CONFLICT (a, b) DO UPDATE SET"
                "  messages_a_to_b = edges.messages_a_to_b + excluded.messages_a_to_b,"
                "  messages_b_to_a = edges.messages_b_to_a + excluded.messages_b_to_a",
                "flush: traffic");
    for (const auto& d : traffic) {
      if (d.messages == 0 || d.from == d.to) continue;
      const bool forward = d.from < d.to;
      const auto n = static_cast<std::int64_t>(d.messages);
      s.bind_text(1, forward ? d.from : d.to).bind_text(2, forward ? d.to : d.from);
      s.bind_int(3, forward ? n : 0).bind_int(4, forward ? 0 : n);
      s.run();
      s.reset();
    }
  }
  if (!refusals.empty()) {
    statement s(c,
                "INSERT INTO refusals (agent, reason, count, last_at, last_detail) VALUES (?1, ?2, ?3, ?4, ?5)"
                " ON CONFLICT (agent, reason) DO UPDATE SET"
                "  count = refusals.count + excluded.count,"
                "  last_detail = CASE WHEN excluded.last_at >= refusals.last_at THEN excluded.last_detail"
                "                     ELSE refusals.last_detail END,"
                "  last_at = max(refusals.last_at, excluded.last_at)",
                "flush: refusals");
    for (const auto& d : refusals) {
      s.bind_text(1, d.agent).bind_text(2, d.reason).bind_int(3, static_cast<std::int64_t>(d.count));
      s.bind_int(4, d.at).bind_text(5, d.detail);
      s.run();
      s.reset();
    }
  }
  if (!seen.empty()) {
    statement s(c, "UPDATE agents SET last_seen = ?2 WHERE name = ?1 AND last_seen < ?2", "flush: seen");
    for (const auto& d : seen) {
      s.bind_text(1, d.agent).bind_int(2, d.at);
      s.run();
      s.reset();
    }
  }
  t.commit();
}

std::vector<refusal_record> registry::refusals() const {
  statement s(self().conn, "SELECT agent, reason, count, last_at, last_detail FROM refusals ORDER BY agent, reason",
              "refusals");
  std::vector<refusal_record> out;
  while (s.step()) {
    refusal_record r;
    r.agent = s.text(0);
    r.reason = s.text(1);
    r.count = s.count(2);
    r.last_at = s.int64(3);
    r.last_detail = s.text(4);
    out.push_back(std::move(r));
  }
  return out;
}

void registry::reset_refusals(std::optional<std::string_view> agent) {
  if (agent) {
    statement s(self().conn, "DELETE FROM refusals WHERE agent = ?1", "reset_refusals");
    s.bind_text(1, *agent);
    s.run();
  } else {
    statement s(self().conn, "DELETE FROM refusals", "reset_refusals");
    s.run();
  }
}

#undef AGENTBUS_AGENT_COLUMNS

}  // namespace agentbus::broker
