// registry_test.cpp — the broker's SQLite registry (broker/registry.hpp): round trips
// for every method, schema migrations, read-only access beside a writer (WAL), the
// one-transaction flush, and durability of committed state across SIGKILL.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "registry.hpp"

namespace agentbus::broker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- helpers

// raw_db is a plain SQLite connection the tests use to prepare files (foreign
// databases, version numbers, triggers) and to look at them behind the registry's back.
class raw_db {
 public:
  explicit raw_db(const fs::path& file, int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    if (sqlite3_open_v2(file.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      std::string message = sqlite3_errmsg(db_);
      sqlite3_close_v2(db_);
      throw std::runtime_error("raw_db: " + message);
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~raw_db() { sqlite3_close_v2(db_); }
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;

  void exec(const std::string& sql) {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
      throw std::runtime_error("raw_db: " + sql + ": " + sqlite3_errmsg(db_));
  }
  std::vector<std::string> column(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      throw std::runtime_error("raw_db: " + sql + ": " + sqlite3_errmsg(db_));
    std::vector<std::string> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      out.emplace_back(p != nullptr ? p : "");
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) throw std::runtime_error("raw_db: " + sql + ": " + sqlite3_errmsg(db_));
    return out;
  }
  std::string value(const std::string& sql) {
    auto rows = column(sql);
    return rows.empty() ? std::string() : rows.front();
  }
  std::int64_t integer(const std::string& sql) { return std::stoll(value(sql)); }

 private:
  sqlite3* db_ = nullptr;
};

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "agentbus-registry-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    db_ = dir_ / "registry.db";
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  std::vector<std::string> tables(const fs::path& file) {
    raw_db raw(file, SQLITE_OPEN_READONLY);
    return raw.column("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  }

  fs::path dir_;
  fs::path db_;
};

agent_record sample_agent(const std::string& name, const std::string& fingerprint = "") {
  agent_record a;
  a.name = name;
  a.role = "MONITOR";
  a.suite = "ecdsa-p256-sha256";
  a.fingerprint = fingerprint.empty() ? std::string(64, 'a') : fingerprint;
  a.public_key_pem = "-----BEGIN PUBLIC KEY-----\nMFkw" + name + "\n-----END PUBLIC KEY-----\n";
  a.protection = "tpm";
  a.tpm_manufacturer = "IBM";
  a.tpm_simulator = true;
  a.enrolled_at = 1'700'000'000'000;
  a.last_seen = 1'700'000'000'500;
  return a;
}

void add_agents(registry& r, std::initializer_list<const char*> names) {
  for (const char* n : names) r.upsert_agent(sample_agent(n));
}

// expect_error runs f and checks that it throws registry_error whose message contains
// every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no registry_error thrown";
  } catch (const registry_error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

// ---------------------------------------------------------------- opening and migrations

TEST_F(RegistryTest, NewFileIsCreatedMigratedAndInWalMode) {
  {
    registry r(db_);
    EXPECT_EQ(r.opened_at_version(), 0);
    EXPECT_EQ(r.schema_version(), registry::kSchemaVersion);
    EXPECT_FALSE(r.read_only());
    EXPECT_EQ(r.file(), db_);
    EXPECT_TRUE(r.agents().empty());
    EXPECT_TRUE(r.edges().empty());
    EXPECT_TRUE(r.refusals().empty());
  }
  raw_db raw(db_);
  EXPECT_EQ(raw.value("PRAGMA journal_mode"), "wal");  // a property of the file
  EXPECT_EQ(raw.integer("PRAGMA user_version"), registry::kSchemaVersion);
  EXPECT_EQ(raw.integer("PRAGMA application_id"), registry::kApplicationId);
  EXPECT_EQ(tables(db_), (std::vector<std::string>{"admin_nonces", "agents", "edges", "refusals", "revoked_keys", "tokens"}));
  EXPECT_EQ(raw.column("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"),
            (std::vector<std::string>{"admin_nonces_by_timestamp", "agents_by_fingerprint", "agents_by_transport_key",
                                      "edges_by_b", "refusals_by_reason", "tokens_by_name", "tokens_by_transport_key"}));
}

TEST_F(RegistryTest, EmptyFileAtVersionZeroMigratesToCurrent) {
  { std::ofstream(db_).flush(); }
  ASSERT_EQ(fs::file_size(db_), 0u);
  registry r(db_);
  EXPECT_EQ(r.opened_at_version(), 0);
  EXPECT_EQ(r.schema_version(), registry::kSchemaVersion);
  r.upsert_agent(sample_agent("monitor-1"));
  EXPECT_TRUE(r.find_agent("monitor-1"));
}

TEST_F(RegistryTest, ReopeningACurrentDatabaseRunsNoMigration) {
  { registry r(db_); r.upsert_agent(sample_agent("monitor-1")); }
  raw_db before(db_);
  const auto schema_before = before.column("SELECT sql FROM sqlite_master ORDER BY name");
  // Migration 1 creates its tables without IF NOT EXISTS: were it run again, the open
  // would fail. opened_at_version says so directly.
  registry r(db_);
  EXPECT_EQ(r.opened_at_version(), registry::kSchemaVersion);
  EXPECT_EQ(r.schema_version(), registry::kSchemaVersion);
  EXPECT_TRUE(r.find_agent("monitor-1"));
  EXPECT_EQ(before.column("SELECT sql FROM sqlite_master ORDER BY name"), schema_before);
}

TEST_F(RegistryTest, NewerSchemaIsRefusedAndLeftUntouched) {
  { registry r(db_); r.upsert_agent(sample_agent("monitor-1")); }
  const int newer = registry::kSchemaVersion + 1;
  const std::string newer_text = "schema version " + std::to_string(newer);
  { raw_db raw(db_); raw.exec("PRAGMA user_version = " + std::to_string(newer)); }
  expect_error([&] { registry r(db_); },
               {db_.string(), newer_text, "newer than this build understands (" + std::to_string(registry::kSchemaVersion) + ")"});
  expect_error([&] { (void)registry::open_readonly(db_); }, {db_.string(), newer_text, "newer"});
  raw_db raw(db_);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), newer);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM agents"), 1);
}

// A version 1 file (before tokens, revoked keys and pending provenance) is migrated
// in place, its rows kept.
TEST_F(RegistryTest, SchemaOneIsMigratedKeepingItsRows) {
  { registry r(db_); r.upsert_agent(sample_agent("monitor-1")); }
  {
    raw_db raw(db_);
    raw.exec("DROP TABLE tokens");
    raw.exec("DROP TABLE revoked_keys");
    raw.exec("DROP TABLE admin_nonces");
    raw.exec("DROP INDEX agents_by_transport_key");
    for (const char* c : {"transport_key", "pending_at", "pending_address", "pending_evidence", "ek_ca", "ek_issuer", "ek_fingerprint", "ak_name"})
      raw.exec(std::string("ALTER TABLE agents DROP COLUMN ") + c);
    raw.exec("PRAGMA user_version = 1");
  }
  expect_error([&] { (void)registry::open_readonly(db_); }, {"schema version 1", "older than this build reads"});
  registry r(db_);
  EXPECT_EQ(r.opened_at_version(), 1);
  EXPECT_EQ(r.schema_version(), registry::kSchemaVersion);
  ASSERT_TRUE(r.find_agent("monitor-1"));
  EXPECT_EQ(r.find_agent("monitor-1")->pending_at, 0);
  EXPECT_TRUE(r.tokens().empty());
  EXPECT_TRUE(r.revoked_keys().empty());
}

token_record sample_token(std::string hash, std::string name = "monitor-1", std::string role = "MONITOR") {
  token_record t;
  t.hash = std::move(hash);
  t.name = std::move(name);
  t.role = std::move(role);
  t.created_at = 1'700'000'000'000;
  t.expires_at = t.created_at + 3'600'000;
  t.created_by = "alice";
  return t;
}

// The transport gate admits a token's CurveZMQ key while the token is usable, and an
// agent's once it enrolled over it, until the agent or its key is revoked; one key
// belongs to one agent.
TEST_F(RegistryTest, TransportAdmissionFollowsTokensEnrolmentsAndRevocations) {
  registry r(db_);
  const std::int64_t now = 1'700'000'000'100;
  const std::string h(64, '1'), tk(64, 'a'), other_key(64, 'b');
  token_record t = sample_token(h);
  t.transport_key = tk;
  ASSERT_TRUE(r.add_token(t));
  EXPECT_EQ(r.find_token(h)->transport_key, tk);
  EXPECT_EQ(r.transport_admission(tk, now), "token");
  EXPECT_EQ(r.transport_admission(tk, t.expires_at), "") << "expired";
  EXPECT_EQ(r.transport_admission(other_key, now), "");
  EXPECT_EQ(r.transport_admission("", now), "");

  agent_record a = sample_agent("monitor-1");
  a.last_seen = now;
  ASSERT_TRUE(r.enrol(a, std::string_view(h), tk));
  EXPECT_EQ(r.transport_admission(tk, now), "agent") << "the token is spent; the agent enrolled over its key";
  EXPECT_EQ(r.transport_admission(tk, now + 86'400'000'000), "agent") << "no expiry for an agent's key";

  // Enrolling over ipc (no transport key) keeps the key; another agent taking the key
  // takes it from monitor-1.
  ASSERT_TRUE(r.enrol(a, std::nullopt, ""));
  EXPECT_EQ(r.transport_admission(tk, now), "agent");
  // A new key for monitor-1 over ipc: the old key's transport key goes with it.
  {
    agent_record rekeyed = sample_agent("monitor-1", std::string(64, '9'));
    rekeyed.last_seen = now;
    ASSERT_TRUE(r.enrol(rekeyed, std::nullopt, ""));
    EXPECT_EQ(r.transport_admission(tk, now), "") << "a new key does not inherit the old transport key";
    ASSERT_TRUE(r.enrol(rekeyed, std::nullopt, tk));
    EXPECT_EQ(r.transport_admission(tk, now), "agent");
  }
  agent_record b = sample_agent("monitor-2", std::string(64, 'e'));
  b.last_seen = now;
  ASSERT_TRUE(r.enrol(b, std::nullopt, tk));
  raw_db raw(db_);
  EXPECT_EQ(raw.value("SELECT transport_key FROM agents WHERE name = 'monitor-1'"), "");
  EXPECT_EQ(raw.value("SELECT transport_key FROM agents WHERE name = 'monitor-2'"), tk);

  ASSERT_TRUE(r.revoke("monitor-2", "compromised", now + 1));
  EXPECT_EQ(r.transport_admission(tk, now + 2), "") << "revoked agent";
  ASSERT_TRUE(r.unrevoke("monitor-2"));
  EXPECT_EQ(r.transport_admission(tk, now + 3), "") << "its key stays revoked";
  agent_record c = sample_agent("monitor-3", std::string(64, 'c'));
  c.last_seen = now;
  ASSERT_TRUE(r.enrol(c, std::nullopt, other_key));
  EXPECT_EQ(r.transport_admission(other_key, now + 4), "agent");
  ASSERT_TRUE(r.revoke_key({c.fingerprint, "monitor-3", "compromised", now + 5}));
  EXPECT_EQ(r.transport_admission(other_key, now + 6), "") << "revoked key";
}

// A token is consumed with the enrolment it authorises, once, in one transaction;
// an enrolment whose token cannot be consumed writes nothing.
TEST_F(RegistryTest, EnrolConsumesItsTokenOnceAndAtomically) {
  registry r(db_);
  const std::string h(64, '1');
  ASSERT_TRUE(r.add_token(sample_token(h)));
  expect_error([&] { (void)r.add_token(sample_token(h)); }, {"UNIQUE constraint failed: tokens.hash"});
  agent_record a = sample_agent("monitor-1");
  a.last_seen = 1'700'000'000'500;
  ASSERT_TRUE(r.enrol(a, std::string_view(h)));
  auto t = r.find_token(h);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->used_at, a.last_seen);
  EXPECT_EQ(t->used_by_fingerprint, a.fingerprint);
  EXPECT_EQ(t->id(), h.substr(0, 16));

  agent_record other = sample_agent("monitor-1", std::string(64, 'e'));
  other.last_seen = a.last_seen + 1;
  EXPECT_FALSE(r.enrol(other, std::string_view(h))) << "already used";
  EXPECT_EQ(r.find_agent("monitor-1")->fingerprint, a.fingerprint) << "nothing written";

  const std::string expired(64, '2'), for_other_name(64, '3'), for_other_role(64, '4'), for_key(64, '5');
  token_record e = sample_token(expired);
  e.expires_at = e.created_at + 1;
  ASSERT_TRUE(r.add_token(e));
  ASSERT_TRUE(r.add_token(sample_token(for_other_name, "monitor-2")));
  ASSERT_TRUE(r.add_token(sample_token(for_other_role, "monitor-1", "DIRECTOR")));
  token_record k = sample_token(for_key);
  k.fingerprint = std::string(64, 'f');
  ASSERT_TRUE(r.add_token(k));
  agent_record b = sample_agent("monitor-1", std::string(64, 'e'));
  b.last_seen = 1'700'000'001'000;
  for (const std::string& h2 : {expired, for_other_name, for_other_role, for_key})
    EXPECT_FALSE(r.enrol(b, std::string_view(h2))) << h2.substr(0, 1);
  EXPECT_EQ(r.find_agent("monitor-1")->fingerprint, a.fingerprint);
  b.fingerprint = std::string(64, 'f');
  EXPECT_TRUE(r.enrol(b, std::string_view(for_key))) << "the key it was bound to";
  EXPECT_EQ(r.find_agent("monitor-1")->fingerprint, std::string(64, 'f'));
  auto superseded = r.find_revoked_key(a.fingerprint);
  ASSERT_TRUE(superseded) << "the key the name left behind is revoked";
  EXPECT_EQ(superseded->reason, "superseded by " + std::string(16, 'f'));

  EXPECT_FALSE(r.delete_token(for_key.substr(0, 16))) << "used tokens stay as a record";
  EXPECT_TRUE(r.delete_token(for_other_name.substr(0, 16)));
  EXPECT_FALSE(r.find_token(for_other_name));
}

TEST_F(RegistryTest, TokensAreBoundedAndOldOnesPurged) {
  registry r(db_);
  for (std::size_t i = 0; i < registry::kMaxTokens; ++i) {
    char hex[65];
    std::snprintf(hex, sizeof hex, "%064zx", i);
    ASSERT_TRUE(r.add_token(sample_token(hex)));
  }
  EXPECT_FALSE(r.add_token(sample_token(std::string(64, 'a')))) << "at the bound";
  // Two days later every one of them has expired for more than a day: purged.
  token_record later = sample_token(std::string(64, 'a'));
  later.created_at += 2 * 24 * 3'600'000LL;
  later.expires_at = later.created_at + 3'600'000;
  EXPECT_TRUE(r.add_token(later));
  EXPECT_EQ(r.tokens().size(), 1u);
}

// Revoking a name revokes its key under any name; a key revoked twice keeps its
// first record.
TEST_F(RegistryTest, RevokingAnAgentRevokesItsKeys) {
  registry r(db_);
  r.upsert_agent(sample_agent("monitor-1", std::string(64, 'a')));
  ASSERT_TRUE(r.set_pending_key({"monitor-1", std::string(64, 'b'), "pem b"}));
  ASSERT_TRUE(r.revoke("monitor-1", "compromised", 1'700'000'000'000));
  auto k = r.find_revoked_key(std::string(64, 'a'));
  ASSERT_TRUE(k);
  EXPECT_EQ(k->agent, "monitor-1");
  EXPECT_EQ(k->reason, "compromised");
  EXPECT_TRUE(r.find_revoked_key(std::string(64, 'b'))) << "the pending key was presented for it too";
  EXPECT_FALSE(r.revoke_key({std::string(64, 'a'), "x", "again", 1}));
  EXPECT_EQ(r.find_revoked_key(std::string(64, 'a'))->reason, "compromised");
  EXPECT_TRUE(r.revoke_key({std::string(64, 'c'), "", "lost laptop", 5}));
  EXPECT_EQ(r.revoked_keys().size(), 3u);
  EXPECT_FALSE(r.find_revoked_key(std::string(64, 'd')));
}

TEST_F(RegistryTest, FailedMigrationLeavesTheFileAsItWas) {
  // A registry-marked file at version 0 whose third CREATE TABLE collides: the first two
  // tables must not survive, nor the version bump.
  {
    raw_db raw(db_);
    raw.exec("PRAGMA application_id = " + std::to_string(registry::kApplicationId));
    raw.exec("CREATE TABLE refusals (x)");
  }
  expect_error([&] { registry r(db_); }, {db_.string(), "migration to schema version 1", "already exists"});
  raw_db raw(db_);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 0);
  EXPECT_EQ(tables(db_), std::vector<std::string>{"refusals"});
}

TEST_F(RegistryTest, ForeignSqliteDatabaseIsRefusedUnmodified) {
  { raw_db raw(db_); raw.exec("CREATE TABLE notes (t TEXT)"); }
  expect_error([&] { registry r(db_); }, {db_.string(), "not an agentbus registry"});
  expect_error([&] { (void)registry::open_readonly(db_); }, {"not an agentbus registry"});
  EXPECT_EQ(tables(db_), std::vector<std::string>{"notes"});
  raw_db raw(db_);
  EXPECT_EQ(raw.value("PRAGMA journal_mode"), "delete");
}

TEST_F(RegistryTest, OtherApplicationIdIsRefused) {
  { raw_db raw(db_); raw.exec("PRAGMA application_id = 42"); }
  expect_error([&] { registry r(db_); }, {"not an agentbus registry", "0x0000002a"});
}

TEST_F(RegistryTest, NonDatabaseFileIsRefusedNamingIt) {
  { std::ofstream(db_) << "this is not a database, just some text long enough to have a header........\n"; }
  expect_error([&] { registry r(db_); }, {db_.string(), "file is not a database"});
  expect_error([&] { (void)registry::open_readonly(db_); }, {db_.string(), "file is not a database"});
}

TEST_F(RegistryTest, UnopenablePathNamesTheFile) {
  const fs::path bad = dir_ / "no-such-dir" / "registry.db";
  expect_error([&] { registry r(bad); }, {bad.string(), "sqlite3_open_v2", "unable to open database file"});
}

TEST_F(RegistryTest, MoveKeepsTheConnection) {
  registry r(db_);
  r.upsert_agent(sample_agent("monitor-1"));
  registry moved(std::move(r));
  EXPECT_TRUE(moved.find_agent("monitor-1"));
  registry other(dir_ / "other.db");
  other = std::move(moved);
  EXPECT_EQ(other.file(), db_);
  EXPECT_TRUE(other.find_agent("monitor-1"));
}

// ---------------------------------------------------------------- agents

TEST_F(RegistryTest, UpsertAndFindRoundTripEveryField) {
  registry r(db_);
  agent_record a;
  a.name = "director-1";
  a.role = "DIRECTOR";
  a.suite = "rsa3072-pss-sha384";
  a.fingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  a.public_key_pem = "-----BEGIN PUBLIC KEY-----\nMIIBojAN\n-----END PUBLIC KEY-----\n";
  a.protection = "software";
  a.tpm_manufacturer = "";
  a.tpm_simulator = false;
  a.enrolled_at = 1'700'000'000'123;
  a.last_seen = 1'700'000'999'999;
  a.revoked = true;
  a.revoked_reason = "key stolen";
  a.revoked_at = 1'700'000'500'000;
  a.pending_fingerprint = std::string(64, 'f');
  a.pending_public_key_pem = "pending pem";
  r.upsert_agent(a);
  EXPECT_EQ(r.find_agent("director-1"), a);

  // Values are bound, never spliced: quotes and SQL in a name are just bytes.
  agent_record odd = sample_agent("x'); DROP TABLE agents; --");
  odd.role = "MONITOR \"quoted\" ünïcødé";
  odd.tpm_manufacturer = std::string("NUL\0inside", 10);
  r.upsert_agent(odd);
  EXPECT_EQ(r.find_agent(odd.name), odd);

  EXPECT_FALSE(r.find_agent("nobody"));
  EXPECT_FALSE(r.find_agent(""));
}

TEST_F(RegistryTest, AgentsAreOrderedByName) {
  registry r(db_);
  add_agents(r, {"monitor-2", "Zed", "architect-1", "monitor-10", "monitor-1"});
  std::vector<std::string> names;
  for (const auto& a : r.agents()) names.push_back(a.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Zed", "architect-1", "monitor-1", "monitor-10", "monitor-2"}));
}

TEST_F(RegistryTest, UpsertUpdatesAllButEnrolmentRevocationAndPendingKey) {
  registry r(db_);
  agent_record first = sample_agent("monitor-1");
  r.upsert_agent(first);
  ASSERT_TRUE(r.revoke("monitor-1", "compromised", 1'700'000'100'000));
  ASSERT_TRUE(r.set_pending_key({"monitor-1", std::string(64, 'b'), "new pem"}));

  agent_record second;
  second.name = "monitor-1";
  second.role = "OPTIMIZER";
  second.suite = "ecdsa-p256-sha3-256";
  second.fingerprint = std::string(64, 'c');
  second.public_key_pem = "second pem";
  second.protection = "software";
  second.tpm_manufacturer = "";
  second.tpm_simulator = false;
  second.enrolled_at = 1'800'000'000'000;  // ignored on update
  second.last_seen = 1'800'000'000'001;
  second.revoked = false;                   // ignored on update
  second.pending_fingerprint = "";          // ignored on update
  r.upsert_agent(second);

  auto got = r.find_agent("monitor-1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->role, "OPTIMIZER");
  EXPECT_EQ(got->suite, "ecdsa-p256-sha3-256");
  EXPECT_EQ(got->fingerprint, std::string(64, 'c'));
  EXPECT_EQ(got->public_key_pem, "second pem");
  EXPECT_EQ(got->protection, "software");
  EXPECT_EQ(got->tpm_manufacturer, "");
  EXPECT_FALSE(got->tpm_simulator);
  EXPECT_EQ(got->last_seen, 1'800'000'000'001);
  EXPECT_EQ(got->enrolled_at, first.enrolled_at);
  EXPECT_TRUE(got->revoked);
  EXPECT_EQ(got->revoked_reason, "compromised");
  EXPECT_EQ(got->revoked_at, 1'700'000'100'000);
  EXPECT_EQ(got->pending_fingerprint, std::string(64, 'b'));
  EXPECT_EQ(got->pending_public_key_pem, "new pem");
  EXPECT_EQ(r.agents().size(), 1u);
}

TEST_F(RegistryTest, UpsertPinningThePendingKeyClearsIt) {
  registry r(db_);
  r.upsert_agent(sample_agent("monitor-1", std::string(64, 'a')));
  ASSERT_TRUE(r.set_pending_key({"monitor-1", std::string(64, 'b'), "pem b"}));
  r.upsert_agent(sample_agent("monitor-1", std::string(64, 'b')));
  auto got = r.find_agent("monitor-1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->fingerprint, std::string(64, 'b'));
  EXPECT_EQ(got->pending_fingerprint, "");
  EXPECT_EQ(got->pending_public_key_pem, "");
}

TEST_F(RegistryTest, UpsertRejectsInvalidRecordsAndStaysUsable) {
  registry r(db_);
  agent_record bad = sample_agent("monitor-1");
  bad.protection = "hsm";
  expect_error([&] { r.upsert_agent(bad); }, {db_.string(), "sqlite3_step(upsert_agent)", "CHECK constraint failed"});
  expect_error([&] { r.upsert_agent(sample_agent("")); }, {"CHECK constraint failed"});
  agent_record no_key = sample_agent("monitor-1");
  no_key.fingerprint.clear();
  expect_error([&] { r.upsert_agent(no_key); }, {"CHECK constraint failed"});
  EXPECT_TRUE(r.agents().empty());
  r.upsert_agent(sample_agent("monitor-1"));
  EXPECT_EQ(r.agents().size(), 1u);
}

TEST_F(RegistryTest, ApproveKeyOnlyWithTheExactPendingFingerprint) {
  registry r(db_);
  const std::string pinned(64, 'a');
  const std::string pending = "3f5a0c1e9b7d2468ace013579bdf2468ace013579bdf2468ace013579bdf2468";
  r.upsert_agent(sample_agent("monitor-1", pinned));
  const agent_record before = *r.find_agent("monitor-1");

  EXPECT_FALSE(r.set_pending_key({"nobody", pending, "pem"}));
  EXPECT_FALSE(r.approve_key("monitor-1", pending)) << "nothing pending yet";
  EXPECT_FALSE(r.approve_key("monitor-1", "")) << "empty matches the empty pending column";

  ASSERT_TRUE(r.set_pending_key({"monitor-1", pending, "pending pem"}));
  for (const std::string& wrong : {pinned, pending.substr(0, 16), pending.substr(0, 63), pending + "0", std::string(""),
                                   std::string("3F5A0C1E9B7D2468ACE013579BDF2468ACE013579BDF2468ACE013579BDF2468")}) {
    SCOPED_TRACE(wrong);
    EXPECT_FALSE(r.approve_key("monitor-1", wrong));
  }
  EXPECT_FALSE(r.approve_key("nobody", pending));
  auto still = r.find_agent("monitor-1");
  ASSERT_TRUE(still);
  EXPECT_EQ(still->fingerprint, pinned);
  EXPECT_EQ(still->public_key_pem, before.public_key_pem);
  EXPECT_EQ(still->pending_fingerprint, pending);

  EXPECT_TRUE(r.approve_key("monitor-1", pending));
  auto approved = r.find_agent("monitor-1");
  ASSERT_TRUE(approved);
  EXPECT_EQ(approved->fingerprint, pending);
  EXPECT_EQ(approved->public_key_pem, "pending pem");
  EXPECT_EQ(approved->pending_fingerprint, "");
  EXPECT_EQ(approved->pending_public_key_pem, "");
  EXPECT_FALSE(r.approve_key("monitor-1", pending)) << "approving twice";
}

// The first pending key stays until an operator decides: a stream of other keys
// (the pending-key poisoning of issue 11) cannot push the one under review out.
TEST_F(RegistryTest, SetPendingKeyKeepsTheFirstUntilDecided) {
  registry r(db_);
  r.upsert_agent(sample_agent("monitor-1"));
  ASSERT_TRUE(r.set_pending_key({"monitor-1", std::string(64, 'b'), "pem b", 1'700'000'000'000, "tcp://10.0.0.7:4100",
                                 "declared tpm, manufacturer IBM"}));
  EXPECT_FALSE(r.set_pending_key({"monitor-1", std::string(64, 'c'), "pem c"}));
  EXPECT_FALSE(r.set_pending_key({"monitor-1", sample_agent("monitor-1").fingerprint, "pinned"})) << "the pinned key";
  auto got = r.find_agent("monitor-1");
  EXPECT_EQ(got->pending_fingerprint, std::string(64, 'b'));
  EXPECT_EQ(got->pending_at, 1'700'000'000'000);
  EXPECT_EQ(got->pending_address, "tcp://10.0.0.7:4100");
  EXPECT_EQ(got->pending_evidence, "declared tpm, manufacturer IBM");
  EXPECT_FALSE(r.reject_key("monitor-1", std::string(64, 'c')));
  EXPECT_TRUE(r.reject_key("monitor-1", std::string(64, 'b')));
  got = r.find_agent("monitor-1");
  EXPECT_EQ(got->pending_fingerprint, "");
  EXPECT_EQ(got->pending_at, 0);
  EXPECT_EQ(got->pending_address, "");
  ASSERT_TRUE(r.set_pending_key({"monitor-1", std::string(64, 'c'), "pem c"}));
  EXPECT_TRUE(r.approve_key("monitor-1", std::string(64, 'c')));
  EXPECT_EQ(r.find_agent("monitor-1")->public_key_pem, "pem c");
}

TEST_F(RegistryTest, RevokeAndUnrevoke) {
  registry r(db_);
  r.upsert_agent(sample_agent("monitor-1"));
  EXPECT_FALSE(r.revoke("nobody", "why", 1));
  EXPECT_FALSE(r.unrevoke("nobody"));

  EXPECT_TRUE(r.revoke("monitor-1", "lost laptop", 1'700'000'000'001));
  auto a = r.find_agent("monitor-1");
  EXPECT_TRUE(a->revoked);
  EXPECT_EQ(a->revoked_reason, "lost laptop");
  EXPECT_EQ(a->revoked_at, 1'700'000'000'001);

  EXPECT_TRUE(r.revoke("monitor-1", "confirmed stolen", 1'700'000'000'002));
  a = r.find_agent("monitor-1");
  EXPECT_EQ(a->revoked_reason, "confirmed stolen");
  EXPECT_EQ(a->revoked_at, 1'700'000'000'002);

  EXPECT_TRUE(r.unrevoke("monitor-1"));
  a = r.find_agent("monitor-1");
  EXPECT_FALSE(a->revoked);
  EXPECT_EQ(a->revoked_reason, "");
  EXPECT_EQ(a->revoked_at, 0);
  EXPECT_TRUE(r.unrevoke("monitor-1")) << "known agent, not revoked";
}

TEST_F(RegistryTest, RevocationAndApprovedKeyPersistAcrossReopen) {
  {
    registry r(db_);
    add_agents(r, {"monitor-1", "monitor-2"});
    ASSERT_TRUE(r.revoke("monitor-1", "compromised", 1'700'000'000'777));
    ASSERT_TRUE(r.set_pending_key({"monitor-2", std::string(64, 'd'), "pem d"}));
    ASSERT_TRUE(r.approve_key("monitor-2", std::string(64, 'd')));
  }
  registry r(db_);
  auto m1 = r.find_agent("monitor-1");
  ASSERT_TRUE(m1);
  EXPECT_TRUE(m1->revoked);
  EXPECT_EQ(m1->revoked_reason, "compromised");
  EXPECT_EQ(m1->revoked_at, 1'700'000'000'777);
  EXPECT_EQ(r.find_agent("monitor-2")->fingerprint, std::string(64, 'd'));
  auto ro = registry::open_readonly(db_);
  EXPECT_TRUE(ro.find_agent("monitor-1")->revoked);
}

// ---------------------------------------------------------------- trust edges

TEST_F(RegistryTest, OneEdgePerUnorderedPairWhoeverInitiates) {
  registry r(db_);
  add_agents(r, {"alpha", "zeta"});
  r.record_session("zeta", "alpha", "P-256", "hmac-sha256", 1000, false);
  auto e = r.edges();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], (edge_record{"alpha", "zeta", "P-256", "hmac-sha256", 1000, 1000, 0, 0, 0}));

  r.record_session("alpha", "zeta", "P-384", "hmac-sha384", 2000, false);  // a new session, other way round
  r.record_session("zeta", "alpha", "P-384", "hmac-sha384", 3000, true);   // rekeys
  r.record_session("alpha", "zeta", "P-384", "hmac-sha384", 4000, true);
  e = r.edges();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], (edge_record{"alpha", "zeta", "P-384", "hmac-sha384", 1000, 4000, 2, 0, 0}));

  r.record_session("alpha", "zeta", "P-384", "hmac-sha384", 3500, true);  // late report: time never goes back
  e = r.edges();
  EXPECT_EQ(e[0].last_rekey_at, 4000);
  EXPECT_EQ(e[0].rekeys, 3u);
}

TEST_F(RegistryTest, EdgesAreOrderedAndNeedKnownDistinctAgents) {
  registry r(db_);
  add_agents(r, {"a", "b", "c"});
  r.record_session("c", "b", "P-256", "hmac-sha256", 1, false);
  r.record_session("b", "a", "P-256", "hmac-sha256", 2, false);
  r.record_session("a", "c", "P-256", "hmac-sha256", 3, false);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& e : r.edges()) pairs.emplace_back(e.a, e.b);
  EXPECT_EQ(pairs, (std::vector<std::pair<std::string, std::string>>{{"a", "b"}, {"a", "c"}, {"b", "c"}}));

  expect_error([&] { r.record_session("a", "stranger", "P-256", "hmac-sha256", 4, false); },
               {"sqlite3_step(record_session)", "FOREIGN KEY constraint failed"});
  EXPECT_THROW(r.record_session("a", "a", "P-256", "hmac-sha256", 5, false), std::invalid_argument);
  EXPECT_EQ(r.edges().size(), 3u);
}

// ---------------------------------------------------------------- counters

TEST_F(RegistryTest, FlushAddsUpManyDeltas) {
  registry r(db_);
  const std::vector<std::string> names = {"a1", "a2", "a3", "a4"};
  for (const auto& n : names) r.upsert_agent(sample_agent(n));
  r.record_session("a2", "a1", "P-256", "hmac-sha256", 10, false);

  std::mt19937 rng(1234);
  std::map<std::pair<std::string, std::string>, std::uint64_t> directed;  // (from, to) → messages
  std::map<std::pair<std::string, std::string>, std::uint64_t> refused;   // (agent, reason) → count
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<registry::traffic_delta> traffic;
    std::vector<registry::refusal_delta> refusals;
    std::vector<registry::seen_delta> seen;
    for (int i = 0; i < 400; ++i) {
      const auto& from = names[rng() % names.size()];
      const auto& to = names[rng() % names.size()];
      const std::uint64_t n = rng() % 50;
      traffic.push_back({from, to, n});
      if (from != to) directed[{from, to}] += n;
    }
    for (int i = 0; i < 100; ++i) {
      const std::string agent = i % 3 == 0 ? "unenrolled-" + std::to_string(i % 2) : names[rng() % names.size()];
      const std::string reason = i % 2 == 0 ? "bad_mac" : "acl_denied";
      const std::uint64_t n = 1 + rng() % 5;
      refusals.push_back({agent, reason, "detail", n, 100 + batch * 1000 + i});
      refused[{agent, reason}] += n;
    }
    for (const auto& n : names) seen.push_back({n, 2'000'000'000'000 + batch});
    r.flush(traffic, refusals, seen);
  }

  std::map<std::pair<std::string, std::string>, std::uint64_t> got_directed;
  for (const auto& e : r.edges()) {
    EXPECT_LT(e.a, e.b);
    if (e.messages_a_to_b) got_directed[{e.a, e.b}] = e.messages_a_to_b;
    if (e.messages_b_to_a) got_directed[{e.b, e.a}] = e.messages_b_to_a;
    if (e.a == "a1" && e.b == "a2") {
      EXPECT_EQ(e.established_at, 10) << "traffic keeps the session facts";
      EXPECT_EQ(e.curve, "P-256");
    } else {
      EXPECT_EQ(e.established_at, 0) << "an edge created by traffic has no session yet";
      EXPECT_EQ(e.curve, "");
    }
  }
  std::erase_if(directed, [](const auto& kv) { return kv.second == 0; });
  EXPECT_EQ(got_directed, directed);

  std::map<std::pair<std::string, std::string>, std::uint64_t> got_refused;
  for (const auto& rr : r.refusals()) got_refused[{rr.agent, rr.reason}] = rr.count;
  EXPECT_EQ(got_refused, refused);
  for (const auto& a : r.agents()) EXPECT_EQ(a.last_seen, 2'000'000'000'004);

  // A session recorded after traffic created the edge keeps the counters.
  r.record_session("a3", "a4", "P-256", "hmac-sha256", 50, false);
  for (const auto& e : r.edges())
    if (e.a == "a3" && e.b == "a4") {
      EXPECT_EQ(e.established_at, 50);
      EXPECT_EQ(e.messages_a_to_b, (directed[{"a3", "a4"}]));
      EXPECT_EQ(e.messages_b_to_a, (directed[{"a4", "a3"}]));
    }
}

// commit_counter counts the commits of every connection opened while it is installed
// (an SQLite auto-extension adds a commit hook to each new connection).
std::atomic<int> g_commits{0};
int count_commit(void*) {
  ++g_commits;
  return 0;  // 0: let the commit proceed
}
int install_commit_counter(sqlite3* db, const char**, const sqlite3_api_routines*) {
  sqlite3_commit_hook(db, count_commit, nullptr);
  return SQLITE_OK;
}

TEST_F(RegistryTest, FlushIsOneCommitHoweverManyDeltas) {
  ASSERT_EQ(sqlite3_auto_extension(reinterpret_cast<void (*)()>(install_commit_counter)), SQLITE_OK);
  {
    registry r(db_);
    add_agents(r, {"a", "b", "c"});
    std::vector<registry::traffic_delta> traffic;
    std::vector<registry::refusal_delta> refusals;
    std::vector<registry::seen_delta> seen;
    for (int i = 0; i < 1000; ++i) {
      traffic.push_back({i % 2 ? "a" : "b", i % 3 ? "c" : "a", 1});
      refusals.push_back({"x" + std::to_string(i % 7), "bad_mac", "d", 1, i});
      seen.push_back({i % 2 ? "a" : "b", i});
    }
    const int before = g_commits.load();
    r.flush(traffic, refusals, seen);
    EXPECT_EQ(g_commits.load() - before, 1);
    r.flush({}, {}, {});
    EXPECT_EQ(g_commits.load() - before, 1) << "an empty flush writes nothing";
  }
  sqlite3_reset_auto_extension();
}

TEST_F(RegistryTest, FlushFailingMidwayLeavesThePreviousState) {
  registry r(db_);
  add_agents(r, {"a", "b", "c"});
  r.flush({{"a", "b", 5}}, {{"a", "bad_mac", "first", 2, 100}}, {{"a", 1'800'000'000'000}});
  const auto agents_before = r.agents();
  const auto edges_before = r.edges();
  const auto refusals_before = r.refusals();

  // A trigger fails the batch's last refusal, after its traffic and first refusal were
  // written inside the transaction.
  { raw_db raw(db_); raw.exec("CREATE TRIGGER poison BEFORE INSERT ON refusals WHEN NEW.reason = 'poison'"
                              " BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"); }
  const std::vector<registry::traffic_delta> traffic = {{"a", "b", 7}, {"b", "a", 3}, {"b", "c", 9}};
  const std::vector<registry::refusal_delta> refusals = {{"a", "bad_mac", "second", 1, 200}, {"c", "poison", "x", 1, 200}};
  const std::vector<registry::seen_delta> seen = {{"a", 1'900'000'000'000}, {"b", 1'900'000'000'000}};
  expect_error([&] { r.flush(traffic, refusals, seen); }, {db_.string(), "flush: refusals", "simulated failure"});
  EXPECT_EQ(r.agents(), agents_before);
  EXPECT_EQ(r.edges(), edges_before);
  EXPECT_EQ(r.refusals(), refusals_before);
  {
    registry other(db_);  // and what is on disk, through another connection
    EXPECT_EQ(other.edges(), edges_before);
    EXPECT_EQ(other.refusals(), refusals_before);
  }

  // The registry is still usable, and the same batch goes through once the fault is gone.
  { raw_db raw(db_); raw.exec("DROP TRIGGER poison"); }
  r.flush(traffic, refusals, seen);
  auto e = r.edges();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], (edge_record{"a", "b", "", "", 0, 0, 0, 12, 3}));
  EXPECT_EQ(e[1], (edge_record{"b", "c", "", "", 0, 0, 0, 9, 0}));
  auto rf = r.refusals();
  ASSERT_EQ(rf.size(), 2u);
  EXPECT_EQ(rf[0], (refusal_record{"a", "bad_mac", 3, 200, "second"}));
  EXPECT_EQ(rf[1], (refusal_record{"c", "poison", 1, 200, "x"}));
}

TEST_F(RegistryTest, FlushWithTrafficOfAnUnknownAgentAppliesNothing) {
  registry r(db_);
  add_agents(r, {"a", "b"});
  expect_error([&] { r.flush({{"a", "b", 1}, {"a", "ghost", 1}}, {{"a", "bad_mac", "", 1, 1}}, {{"a", 1'900'000'000'000}}); },
               {"flush: traffic", "FOREIGN KEY constraint failed"});
  EXPECT_TRUE(r.edges().empty());
  EXPECT_TRUE(r.refusals().empty());
  EXPECT_EQ(r.find_agent("a")->last_seen, sample_agent("a").last_seen);
}

TEST_F(RegistryTest, FlushSkipsSelfAndZeroTrafficAndOutOfRangeCounts) {
  registry r(db_);
  add_agents(r, {"a", "b"});
  r.flush({{"a", "a", 5}, {"a", "b", 0}}, {}, {});
  EXPECT_TRUE(r.edges().empty());
  EXPECT_THROW(r.flush({{"a", "b", std::uint64_t{1} << 63}}, {}, {}), std::invalid_argument);
  EXPECT_THROW(r.flush({}, {{"a", "r", "", std::uint64_t{1} << 63, 1}}, {}), std::invalid_argument);
  EXPECT_TRUE(r.edges().empty());
  EXPECT_TRUE(r.refusals().empty());
  r.flush({{"a", "b", (std::uint64_t{1} << 63) - 1}}, {}, {});
  EXPECT_EQ(r.edges().at(0).messages_a_to_b, (std::uint64_t{1} << 63) - 1);
}

TEST_F(RegistryTest, FlushSeenMovesForwardOnlyAndIgnoresUnknownAgents) {
  registry r(db_);
  add_agents(r, {"a"});
  r.flush({}, {}, {{"a", 2'000'000'000'000}, {"ghost", 2'000'000'000'000}});
  EXPECT_EQ(r.find_agent("a")->last_seen, 2'000'000'000'000);
  r.flush({}, {}, {{"a", 1'000}});
  EXPECT_EQ(r.find_agent("a")->last_seen, 2'000'000'000'000);
  EXPECT_FALSE(r.find_agent("ghost"));
}

TEST_F(RegistryTest, RefusalLastDetailFollowsTheLatestTime) {
  registry r(db_);
  r.flush({}, {{"m", "bad_mac", "at 500", 1, 500}, {"m", "bad_mac", "at 300", 1, 300}}, {});
  r.flush({}, {{"m", "bad_mac", "at 400", 2, 400}}, {});
  auto rf = r.refusals();
  ASSERT_EQ(rf.size(), 1u);
  EXPECT_EQ(rf[0], (refusal_record{"m", "bad_mac", 4, 500, "at 500"}));
  r.flush({}, {{"m", "bad_mac", "at 600", 1, 600}}, {});
  EXPECT_EQ(r.refusals()[0], (refusal_record{"m", "bad_mac", 5, 600, "at 600"}));
}

TEST_F(RegistryTest, RefusalsAreOrderedAndResetPerAgentOrAll) {
  registry r(db_);
  r.flush({}, {{"zed", "acl_denied", "", 1, 1}, {"amy", "replay", "", 2, 2}, {"amy", "bad_mac", "", 3, 3},
               {"bob", "revoked_agent", "", 4, 4}}, {});
  std::vector<std::pair<std::string, std::string>> keys;
  for (const auto& rr : r.refusals()) keys.emplace_back(rr.agent, rr.reason);
  EXPECT_EQ(keys, (std::vector<std::pair<std::string, std::string>>{
                      {"amy", "bad_mac"}, {"amy", "replay"}, {"bob", "revoked_agent"}, {"zed", "acl_denied"}}));
  r.reset_refusals("amy");
  ASSERT_EQ(r.refusals().size(), 2u);
  EXPECT_EQ(r.refusals()[0].agent, "bob");
  r.reset_refusals("nobody");
  EXPECT_EQ(r.refusals().size(), 2u);
  r.reset_refusals(std::nullopt);
  EXPECT_TRUE(r.refusals().empty());
}

// ---------------------------------------------------------------- read-only access

TEST_F(RegistryTest, ReadOnlyRefusesAMissingFileWithoutCreatingIt) {
  expect_error([&] { (void)registry::open_readonly(db_); }, {db_.string(), "does not exist"});
  EXPECT_FALSE(fs::exists(db_));
}

TEST_F(RegistryTest, ReadOnlyRefusesAnUnmigratedFile) {
  { std::ofstream(db_).flush(); }
  expect_error([&] { (void)registry::open_readonly(db_); }, {db_.string(), "schema version 0", "older", "migrate"});
  EXPECT_EQ(fs::file_size(db_), 0u);
}

TEST_F(RegistryTest, ReadOnlyCannotWrite) {
  {
    registry w(db_);
    add_agents(w, {"a", "b"});
    w.flush({{"a", "b", 3}}, {{"a", "bad_mac", "", 1, 1}}, {});
  }
  auto ro = registry::open_readonly(db_);
  EXPECT_TRUE(ro.read_only());
  EXPECT_EQ(ro.schema_version(), registry::kSchemaVersion);
  const auto agents = ro.agents();
  const auto edges = ro.edges();
  const auto refusals = ro.refusals();
  ASSERT_EQ(agents.size(), 2u);

  expect_error([&] { ro.upsert_agent(sample_agent("c")); }, {db_.string(), "upsert_agent"});
  expect_error([&] { ro.set_pending_key({"a", "f", "p"}); }, {"set_pending_key"});
  expect_error([&] { ro.approve_key("a", "f"); }, {"approve_key"});
  expect_error([&] { ro.revoke("a", "r", 1); }, {"revoke"});
  expect_error([&] { ro.unrevoke("a"); }, {"unrevoke"});
  expect_error([&] { ro.record_session("a", "b", "P-256", "hmac-sha256", 1, false); }, {"record_session"});
  expect_error([&] { ro.flush({{"a", "b", 1}}, {}, {}); }, {db_.string()});
  expect_error([&] { ro.reset_refusals(std::nullopt); }, {"reset_refusals"});

  EXPECT_EQ(ro.agents(), agents);
  EXPECT_EQ(ro.edges(), edges);
  EXPECT_EQ(ro.refusals(), refusals);
  registry w(db_);
  EXPECT_EQ(w.agents(), agents);
  EXPECT_EQ(w.refusals(), refusals);
}

TEST_F(RegistryTest, ReadOnlySeesWhatTheOpenWriterCommits) {
  registry w(db_);
  add_agents(w, {"a"});
  auto ro = registry::open_readonly(db_);
  EXPECT_EQ(ro.agents().size(), 1u);

  add_agents(w, {"b"});
  w.revoke("a", "compromised", 5);
  w.flush({{"a", "b", 4}}, {{"b", "replay", "seq 9", 1, 6}}, {});
  auto a = ro.find_agent("a");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->revoked);
  EXPECT_EQ(ro.agents().size(), 2u);
  ASSERT_EQ(ro.edges().size(), 1u);
  EXPECT_EQ(ro.edges()[0].messages_a_to_b, 4u);
  EXPECT_EQ(ro.refusals(), w.refusals());
}

TEST_F(RegistryTest, WalReaderNeitherBlocksNorSeesTheWriterMidRead) {
  registry w(db_);
  add_agents(w, {"a", "b"});
  raw_db reader(db_, SQLITE_OPEN_READONLY);
  reader.exec("BEGIN");
  EXPECT_EQ(reader.integer("SELECT count(*) FROM agents"), 2);  // the read transaction now holds a snapshot

  const auto start = std::chrono::steady_clock::now();
  add_agents(w, {"c"});
  w.flush({{"a", "b", 1}}, {}, {});
  EXPECT_LT(std::chrono::steady_clock::now() - start, registry::kBusyTimeout / 2) << "the writer waited for the reader";

  EXPECT_EQ(reader.integer("SELECT count(*) FROM agents"), 2) << "a snapshot does not change under a reader";
  reader.exec("COMMIT");
  EXPECT_EQ(reader.integer("SELECT count(*) FROM agents"), 3);
}

TEST_F(RegistryTest, TwoWritersShareTheFile) {
  registry w1(db_);
  registry w2(db_);
  EXPECT_EQ(w2.opened_at_version(), registry::kSchemaVersion);
  add_agents(w1, {"a", "b"});
  w2.flush({{"a", "b", 2}}, {}, {});
  w1.flush({{"b", "a", 3}}, {}, {});
  EXPECT_EQ(w2.edges(), w1.edges());
  EXPECT_EQ(w1.edges().at(0).messages_a_to_b, 2u);
  EXPECT_EQ(w1.edges().at(0).messages_b_to_a, 3u);
}

// ---------------------------------------------------------------- crash durability

// In the child of CommittedStateSurvivesSigkill: a SQL function that kills the process,
// called by a trigger from inside the registry's own flush transaction, and a cache
// small enough that the uncommitted transaction spills pages into the WAL file first.
void crash_now(sqlite3_context*, int, sqlite3_value**) { ::kill(::getpid(), SIGKILL); }
int install_crash_hooks(sqlite3* db, const char**, const sqlite3_api_routines*) {
  sqlite3_create_function(db, "agentbus_test_crash", 0, SQLITE_UTF8, nullptr, crash_now, nullptr, nullptr);
  sqlite3_exec(db, "PRAGMA cache_size = 8", nullptr, nullptr, nullptr);
  return SQLITE_OK;
}

std::uintmax_t wal_size(const fs::path& db) {
  std::error_code ec;
  const auto n = fs::file_size(fs::path(db.string() + "-wal"), ec);
  return ec ? 0 : n;
}

TEST_F(RegistryTest, CommittedStateSurvivesSigkillMidTransaction) {
  constexpr int kAgents = 200;
  { registry r(db_); }  // created and migrated; the trigger needs the table
  {
    raw_db raw(db_);
    raw.exec("CREATE TRIGGER crash BEFORE INSERT ON refusals WHEN NEW.reason = 'crash'"
             " BEGIN SELECT agentbus_test_crash(); END");
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    try {
      sqlite3_auto_extension(reinterpret_cast<void (*)()>(install_crash_hooks));
      registry r(db_);
      for (int i = 0; i < kAgents; ++i) r.upsert_agent(sample_agent("agent-" + std::to_string(i)));
      // Those are now in the database file; what follows is committed to the WAL only,
      // which starts empty, so that its growth below is the second transaction's.
      { raw_db raw(db_); raw.exec("PRAGMA wal_checkpoint(TRUNCATE)"); }
      r.record_session("agent-0", "agent-1", "P-384", "hmac-sha384", 77, false);
      r.flush({{"agent-0", "agent-1", 10}}, {{"agent-0", "bad_mac", "committed", 1, 88}}, {});
      const std::uintmax_t committed_wal = wal_size(db_);
      if (::write(fds[1], &committed_wal, sizeof committed_wal) != static_cast<ssize_t>(sizeof committed_wal)) ::_exit(2);

      // The second transaction: thousands of edge rows (spilled to the WAL), then the
      // trigger kills the process before COMMIT.
      std::vector<registry::traffic_delta> traffic;
      for (int i = 0; i < kAgents; ++i)
        for (int j = i + 1; j < kAgents; j += 7) traffic.push_back({"agent-" + std::to_string(i), "agent-" + std::to_string(j), 1});
      r.flush(traffic, {{"agent-0", "bad_mac", "x", 1, 99}, {"agent-0", "crash", "x", 1, 99}}, {{"agent-0", 99}});
      ::_exit(3);  // not reached: the trigger killed us
    } catch (...) {
      ::_exit(4);
    }
  }
  ::close(fds[1]);
  std::uintmax_t committed_wal = 0;
  const auto got = ::read(fds[0], &committed_wal, sizeof committed_wal);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof committed_wal));
  // The uncommitted transaction did reach the WAL file: recovery has to ignore frames
  // without a commit record, which is what this test is about.
  EXPECT_GT(wal_size(db_), committed_wal);

  registry r(db_);
  const auto agents = r.agents();
  ASSERT_EQ(agents.size(), static_cast<std::size_t>(kAgents));
  EXPECT_EQ(r.find_agent("agent-0")->last_seen, sample_agent("agent-0").last_seen);
  EXPECT_EQ(r.edges(), (std::vector<edge_record>{{"agent-0", "agent-1", "P-384", "hmac-sha384", 77, 77, 0, 10, 0}}));
  EXPECT_EQ(r.refusals(), (std::vector<refusal_record>{{"agent-0", "bad_mac", 1, 88, "committed"}}));
  raw_db raw(db_);
  EXPECT_EQ(raw.value("PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace agentbus::broker
