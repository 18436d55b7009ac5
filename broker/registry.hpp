// registry.hpp — the broker's persistent registry: enrolled agents and their pinned
// keys, revocations, trust edges (agent↔agent sessions) with traffic counters, and
// refusal counters, in one SQLite database (schemas/registry.md documents the file).
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. A committed
// change survives the process being killed (kill -9, a crash) at any point; a
// transaction in flight at that moment disappears entirely. An operating-system
// crash or power loss may lose the last transactions committed before it (never
// corrupting the file or splitting a transaction).
//
// Thread-safety: a registry is not thread-safe. Its member functions, const ones
// included, must not run concurrently; the broker and agentbus-trust each use theirs
// from one thread. Separate registry objects (in this or other processes) may use
// the same file at the same time: SQLite serialises writers (a writer waits up to
// kBusyTimeout for another), and WAL readers neither block the writer nor wait for it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace agentbus::broker {

// registry_error is thrown when the registry database cannot be opened, has a schema
// this build cannot use, or an SQLite call fails. what() names the file, the SQLite
// call and statement, and SQLite's message, e.g. "registry /var/lib/agentbus/
// registry.db: sqlite3_step(flush: traffic): FOREIGN KEY constraint failed (code 787)".
class registry_error : public std::runtime_error {
 public:
  using runtime_error::runtime_error;
};

// agent_record is one enrolled agent: its identity, the key pinned for it, and the
// operator's decisions about it (revocation, a changed key awaiting approval).
struct agent_record {
  std::string name, role, suite;
  std::string fingerprint;          // hex SHA-256 of the DER public key (the pinned key)
  std::string public_key_pem;
  std::string protection;           // "tpm" | "software"
  std::string tpm_manufacturer;     // "" for software
  bool tpm_simulator = false;
  std::int64_t enrolled_at = 0;     // Unix ms, first enrolment
  std::int64_t last_seen = 0;       // Unix ms
  bool revoked = false;
  std::string revoked_reason;
  std::int64_t revoked_at = 0;
  std::string pending_fingerprint;  // a changed key that proved possession and was refused, awaiting operator approval ("" if none)
  std::string pending_public_key_pem;
  std::int64_t pending_at = 0;      // Unix ms it was presented (0 if none)
  std::string pending_address;      // the connection's peer address ("" if unknown)
  std::string pending_evidence;     // what it claimed or proved about its protection, for the operator
  // Attestation of the pinned key (schemas/protocol.md §3.9): empty ek_ca = declared only.
  std::string ek_ca, ek_issuer, ek_fingerprint, ak_name;

  friend bool operator==(const agent_record&, const agent_record&) = default;
};

// edge_record is one trust edge: the agent↔agent pair that has established a session,
// one row per unordered pair whoever initiated. Traffic counters may create the row
// before any session is recorded (curve and mac empty, established_at 0).
struct edge_record {
  std::string a, b;                 // a < b (lexicographic, bytewise), whoever initiated
  std::string curve, mac;           // e.g. "P-384", "hmac-sha384" (of the latest session or rekey)
  std::int64_t established_at = 0;  // Unix ms of the pair's first session (0: none recorded yet)
  std::int64_t last_rekey_at = 0;   // Unix ms of the latest key establishment, handshake or rekey
  std::uint64_t rekeys = 0;         // rekeys over the edge's lifetime
  std::uint64_t messages_a_to_b = 0, messages_b_to_a = 0;

  friend bool operator==(const edge_record&, const edge_record&) = default;
};

// refusal_record counts the refusals of one kind for one agent name (the name need
// not be enrolled: refused enrolments count too).
struct refusal_record {
  std::string agent, reason;
  std::uint64_t count = 0;
  std::int64_t last_at = 0;         // Unix ms of the latest refusal
  std::string last_detail;          // its detail

  friend bool operator==(const refusal_record&, const refusal_record&) = default;
};

// pending_key is a changed key for a known name, recorded after its PROOF verified.
struct pending_key {
  std::string name, fingerprint, pem;
  std::int64_t at = 0;
  std::string address{}, evidence{};
};

// token_record is one enrolment token (schemas/registry.md §2.4). Only its SHA-256
// is stored; `id` (the hash's first 16 hex digits) is how operators name it.
struct token_record {
  std::string hash;                 // hex SHA-256 of the 32 token bytes
  std::string name, role;
  std::string fingerprint;          // the only key it admits ("" = any key)
  std::int64_t created_at = 0, expires_at = 0;  // Unix ms
  std::string created_by;           // operator name
  std::int64_t used_at = 0;         // 0 until consumed
  std::string used_by_fingerprint;
  std::string transport_key;        // hex CurveZMQ public key the token stands for ("" = none)
  std::string ek_fingerprint;       // the only TPM (its EK) whose attested key it admits ("" = any)

  std::string id() const { return hash.substr(0, 16); }
  friend bool operator==(const token_record&, const token_record&) = default;
};

// key_revocation is a key refused under any name and role.
struct key_revocation {
  std::string fingerprint, agent, reason;
  std::int64_t revoked_at = 0;

  friend bool operator==(const key_revocation&, const key_revocation&) = default;
};

// registry is an open registry database. Move-only; a moved-from registry may only be
// destroyed or assigned to. Every SQLite failure throws registry_error; a write that
// throws has changed nothing (each write is one transaction, rolled back on failure),
// and the registry stays usable.
class registry {
 public:
  // kSchemaVersion is the schema this build reads and writes (PRAGMA user_version).
  static constexpr int kSchemaVersion = 6;
  // kMaxTokens bounds the tokens kept (issued, used or expired): add_token refuses
  // beyond it once expired and used ones older than a day are purged.
  static constexpr std::size_t kMaxTokens = 10000;
  // kApplicationId marks the file as an agentbus registry (PRAGMA application_id, "ABRG").
  static constexpr std::int32_t kApplicationId = 0x41425247;
  // kBusyTimeout is how long a call waits for another connection's write lock.
  static constexpr std::chrono::milliseconds kBusyTimeout{5000};

  // registry opens `db_file` read-write, creating it if missing (not its directory),
  // sets WAL journal mode, synchronous=NORMAL, foreign_keys=ON and the busy timeout,
  // and migrates the schema up to kSchemaVersion in one transaction (all or nothing).
  // Throws registry_error naming the file if it cannot be opened, is not a SQLite
  // database, is another application's database, has a schema newer than
  // kSchemaVersion, or a migration fails.
  explicit registry(const std::filesystem::path& db_file);

  // open_readonly opens an existing registry read-only (SQLITE_OPEN_READONLY,
  // query_only) for agentbus-trust's offline mode: nothing is created or migrated, and
  // every write throws registry_error. It reads what other connections have committed,
  // and, the file being in WAL mode, never blocks a broker writing to it. Throws
  // registry_error if the file is missing, is not a registry, or its schema version is
  // not exactly kSchemaVersion (older: open it once with the broker, which migrates;
  // newer: this build is too old). The file's directory must be writable, or its -wal
  // and -shm files must already exist (SQLite's rule for read-only WAL databases).
  static registry open_readonly(const std::filesystem::path& db_file);

  ~registry();
  registry(registry&&) noexcept;
  registry& operator=(registry&&) noexcept;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // file is the path the registry was opened with.
  const std::filesystem::path& file() const noexcept;
  // schema_version is the file's current schema version (kSchemaVersion once open).
  int schema_version() const;
  // opened_at_version is the schema version the file had when this object opened it:
  // 0 for a new file, kSchemaVersion when no migration ran. Constant; no query.
  int opened_at_version() const noexcept;
  // read_only is true for a registry from open_readonly.
  bool read_only() const noexcept;

  // ---- agents

  // find_agent returns the agent named `name`, or nullopt.
  std::optional<agent_record> find_agent(std::string_view name) const;
  // agents returns every agent, ordered by name (bytewise).
  std::vector<agent_record> agents() const;
  // upsert_agent inserts `a`, or updates the agent named a.name with every field of `a`
  // except enrolled_at, the revocation (revoked, revoked_reason, revoked_at) and the
  // pending key (set_pending_key/approve_key own those; an update whose fingerprint
  // equals the pending one clears it). Note that it sets the pinned key: the caller
  // passes the key it accepted. Throws registry_error on a constraint violation (empty
  // name, protection other than "tpm"/"software").
  void upsert_agent(const agent_record& a);
  // set_pending_key records a changed key that proved possession for `k.name` and was
  // refused, for an operator to approve or reject. It never replaces a pending key
  // (the first stays until decided) nor records the pinned key. False if nothing was
  // recorded (unknown name, a key already pending, the pinned key).
  bool set_pending_key(const pending_key& k);
  // reject_key clears the pending key of `name` if it is `fingerprint`. False otherwise.
  bool reject_key(std::string_view name, std::string_view fingerprint);
  // approve_key makes the pending key of `name` its pinned key and clears the pending
  // one (and the old key's attestation), if `fingerprint` equals the pending
  // fingerprint exactly (no prefix, no case folding); the old key is revoked
  // (superseded). False, changing nothing, if the agent is unknown, has no pending key
  // or the fingerprint differs.
  bool approve_key(std::string_view name, std::string_view fingerprint);
  // revoke marks `name` revoked with `reason` at `at` (Unix ms), and its pinned and
  // pending keys revoked (revoked_keys; a key revoked before keeps its first record),
  // in one transaction; revoking again replaces reason and time. False if `name` is
  // unknown.
  bool revoke(std::string_view name, std::string_view reason, std::int64_t at);
  // unrevoke clears the revocation of `name` (true even if it was not revoked). False
  // if `name` is unknown.
  bool unrevoke(std::string_view name);

  // ---- enrolment authority (registry_enrolment.cpp)

  // enrol commits an accepted enrolment: upsert_agent(a) and, when `token_hash` is
  // given, consumes that token for a.fingerprint at a.last_seen, in one transaction; a
  // key the name leaves behind is revoked (superseded) in the same transaction.
  // False, changing nothing, if the token is no longer usable (used, expired, deleted,
  // or not for this name, role or key): another enrolment consumed it meanwhile.
  // `transport_key` (hex CurveZMQ public key of the connection it came over; "" over
  // ipc) becomes the key the ZAP handler admits for a.name; "" keeps the one it has
  // unless a.fingerprint is a new key for the name (then it is cleared, as
  // approve_key clears it).
  bool enrol(const agent_record& a, std::optional<std::string_view> token_hash, std::string_view transport_key = {});
  // transport_admission says why the ZAP handler admits the CurveZMQ client key
  // `key_hex` at now_ms: "token" (a usable token stands for it), "agent" (an enrolled,
  // unrevoked agent whose key is not revoked enrolled over it), or "" (unknown).
  std::string transport_admission(std::string_view key_hex, std::int64_t now_ms) const;
  // add_token stores a new token. False if kMaxTokens are kept even after purging
  // tokens that expired or were used more than a day before `t.created_at`.
  bool add_token(const token_record& t);
  // find_token returns the token whose hash is `hash`, or nullopt.
  std::optional<token_record> find_token(std::string_view hash) const;
  // usable_tokens: the unused tokens for `name` in `role` that have not expired at
  // now_ms, newest first, at most kMaxUsableTokensPerName (what a HELLO's token proof
  // is checked against: its cost per HELLO stays bounded).
  static constexpr std::size_t kMaxUsableTokensPerName = 8;
  std::vector<token_record> usable_tokens(std::string_view name, std::string_view role, std::int64_t now_ms) const;
  // tokens returns every token kept, newest first.
  std::vector<token_record> tokens() const;
  // delete_token removes the unused token whose id (hash prefix, 16 hex digits) is
  // `id`. False if there is none.
  bool delete_token(std::string_view id);

  // revoke_key refuses `fingerprint` under any name from now on. False if it was
  // revoked already (the first record is kept).
  bool revoke_key(const key_revocation& k);
  std::optional<key_revocation> find_revoked_key(std::string_view fingerprint) const;
  std::vector<key_revocation> revoked_keys() const;

  // ---- admin request nonces (schemas/admin.md §4)

  enum class nonce_outcome { recorded, seen, full };
  // record_admin_nonce records `nonce` (32 lower-case hex digits) of a signed request
  // timestamped `timestamp`, first forgetting nonces timestamped before
  // `forget_before` (their requests are stale anyway). seen: recorded before (a
  // replay); full: `max_kept` are kept (nothing recorded: fail closed).
  nonce_outcome record_admin_nonce(std::string_view nonce, std::int64_t timestamp, std::int64_t forget_before,
                                   std::size_t max_kept);

  // ---- trust edges

  // record_session records that `initiator` and `responder` established a session
  // (rekey = false) or rekeyed one (rekey = true) at `at` (Unix ms) with `curve` and
  // `mac`: creates the edge or updates curve, mac, last_rekey_at (never backwards),
  // established_at (if not yet set) and, for a rekey, rekeys. Both agents must be in
  // the registry (registry_error otherwise: the edge references them); initiator ==
  // responder throws std::invalid_argument.
  void record_session(std::string_view initiator, std::string_view responder, std::string_view curve,
                      std::string_view mac, std::int64_t at, bool rekey);
  // edges returns every edge, ordered by (a, b).
  std::vector<edge_record> edges() const;

  // ---- counters, flushed in batches

  // traffic_delta: `messages` more envelopes routed from `from` to `to`.
  struct traffic_delta { std::string from, to; std::uint64_t messages; };
  // refusal_delta: `count` more refusals of `agent` for `reason`, the latest at `at`
  // with `detail`.
  struct refusal_delta { std::string agent, reason, detail; std::uint64_t count; std::int64_t at; };
  // seen_delta: `agent` was seen at `at` (Unix ms).
  struct seen_delta { std::string agent; std::int64_t at; };

  // flush applies all deltas in ONE transaction, in order: traffic adds to the edge's
  // directional counter (creating the edge row if needed; both agents must be in the
  // registry; zero counts and from == to are skipped), refusals add to the (agent,
  // reason) counter (last_at/last_detail follow the latest `at`), and seen deltas move
  // the agent's last_seen forward (never backwards; unknown agents are ignored). On any
  // failure nothing is applied and registry_error is thrown; the caller still holds its
  // deltas. Each counter must be below 2^63 (std::invalid_argument otherwise). Empty
  // input does nothing.
  void flush(const std::vector<traffic_delta>& traffic, const std::vector<refusal_delta>& refusals,
             const std::vector<seen_delta>& seen);
  // refusals returns every refusal counter, ordered by (agent, reason).
  std::vector<refusal_record> refusals() const;
  // reset_refusals deletes the refusal counters of `agent`, or all of them (nullopt).
  void reset_refusals(std::optional<std::string_view> agent);

 private:
  // supersede_key revokes the key `name` holds if it is not `new_fingerprint` (inside
  // the caller's transaction).
  void supersede_key(std::string_view name, std::string_view new_fingerprint, std::int64_t at);
  struct impl;
  explicit registry(std::unique_ptr<impl> p) noexcept;
  impl& self() const;

  std::unique_ptr<impl> impl_;
};

}  // namespace agentbus::broker
