// registry_sqlite.hpp — the SQLite handles the registry's files share (internal to
// the registry: registry.cpp, registry_enrolment.cpp). RAII for every SQLite handle;
// values are bound, never spliced into SQL.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "registry.hpp"

namespace agentbus::broker::sqlite {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- SQLite handles

// connection owns one sqlite3* (move-only; closing is the deleter, idempotent through
// unique_ptr) and the file name every error carries. check() is the one place that
// turns an SQLite result code into a registry_error.
class connection {
 public:
  connection(const fs::path& file, int flags) : file_(file.string()) {
    sqlite3* raw = nullptr;
    // Extended result codes from the start (SQLITE_OPEN_EXRESCODE), so that errors
    // say which constraint failed, not only "constraint failed".
    const int rc = sqlite3_open_v2(file_.c_str(), &raw, flags | SQLITE_OPEN_EXRESCODE, nullptr);
    db_.reset(raw);  // sqlite3_open_v2 may return a handle even when it fails; it must be closed
    check(rc, "sqlite3_open_v2");
    check(sqlite3_busy_timeout(db_.get(), static_cast<int>(registry::kBusyTimeout.count())), "sqlite3_busy_timeout");
  }

  sqlite3* get() const noexcept { return db_.get(); }
  const std::string& file() const noexcept { return file_; }

  // check throws registry_error "registry FILE: CALL: MESSAGE (code N)" unless rc is OK.
  void check(int rc, std::string_view call) const {
    if (rc != SQLITE_OK) fail(rc, call);
  }

  [[noreturn]] void fail(int rc, std::string_view call) const {
    // sqlite3_errmsg describes the latest failed call on this connection (more
    // specific than sqlite3_errstr: it names the constraint or the missing table).
    const char* message = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
    throw registry_error("registry " + file_ + ": " + std::string(call) + ": " + message + " (code " +
                         std::to_string(rc) + ")");
  }

  [[noreturn]] void refuse(const std::string& problem) const { throw registry_error("registry " + file_ + ": " + problem); }

  // exec runs constant SQL (pragmas, BEGIN/COMMIT, migration scripts). Never values:
  // those are bound to prepared statements.
  void exec(const std::string& sql, std::string_view label) const {
    check(sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr), "sqlite3_exec(" + std::string(label) + ")");
  }

 private:
  struct closer {
    // sqlite3_close_v2 never fails for want of finalised statements: it defers the close
    // until the last one is finalised. Every statement here is RAII-owned anyway.
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
  };
  std::string file_;
  std::unique_ptr<sqlite3, closer> db_;
};

// statement owns one prepared sqlite3_stmt*. Parameters are bound, never spliced into
// SQL. Text is bound SQLITE_STATIC: the caller's strings outlive the step that uses them.
class statement {
 public:
  statement(const connection& c, const char* sql, std::string_view label) : conn_(&c), label_(label) {
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    const int rc = sqlite3_prepare_v2(c.get(), sql, -1, &raw, &tail);
    stmt_.reset(raw);
    c.check(rc, call("sqlite3_prepare_v2"));
    if (tail != nullptr && *tail != '\0') std::abort();  // one statement per string: an invariant of this file
  }

  statement& bind_text(int index, std::string_view v) {
    // An empty string_view may have a null data(), which SQLite would bind as NULL.
    const char* data = v.data() != nullptr ? v.data() : "";
    conn_->check(sqlite3_bind_text64(stmt_.get(), index, data, v.size(), SQLITE_STATIC, SQLITE_UTF8), call("sqlite3_bind_text64"));
    return *this;
  }
  statement& bind_int(int index, std::int64_t v) {
    conn_->check(sqlite3_bind_int64(stmt_.get(), index, v), call("sqlite3_bind_int64"));
    return *this;
  }

  // step returns true for a row, false when done; throws on failure.
  bool step() {
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    conn_->fail(rc, call("sqlite3_step"));
  }
  // run steps a statement that returns no rows and returns the rows it changed.
  int run() {
    while (step()) {
    }
    return sqlite3_changes(conn_->get());
  }
  // reset makes the statement ready to bind and run again. The result of the previous
  // step (already reported by step) is not repeated.
  void reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }

  std::string text(int column) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), column));
    // sqlite3_column_bytes after sqlite3_column_text: the length of the UTF-8 form.
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), column))) : std::string();
  }
  std::int64_t int64(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  std::uint64_t count(int column) const { return static_cast<std::uint64_t>(int64(column)); }  // CHECK (>= 0) in the schema
  bool boolean(int column) const { return int64(column) != 0; }

 private:
  std::string call(std::string_view fn) const { return std::string(fn) + "(" + label_ + ")"; }

  struct finalizer {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
  };
  const connection* conn_;
  std::string label_;
  std::unique_ptr<sqlite3_stmt, finalizer> stmt_;
};

// transaction is a write transaction: BEGIN IMMEDIATE takes the write lock up front
// (waiting up to the busy timeout), so a transaction never fails half-way for want of
// a lock. It rolls back unless commit() succeeded.
class transaction {
 public:
  // label names the operation in errors ("begin: revoke").
  transaction(const connection& c, std::string_view label) : conn_(c) {
    conn_.exec("BEGIN IMMEDIATE", "begin: " + std::string(label));
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  void commit() {
    conn_.exec("COMMIT", "commit");
    committed_ = true;
  }

  ~transaction() {
    // Some errors (SQLITE_FULL, IOERR, NOMEM) already rolled the transaction back;
    // then the connection is in autocommit mode and there is nothing to undo.
    if (!committed_ && sqlite3_get_autocommit(conn_.get()) == 0) sqlite3_exec(conn_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  const connection& conn_;
  bool committed_ = false;
};


}  // namespace agentbus::broker::sqlite

namespace agentbus::broker {

struct registry::impl {
  sqlite::connection conn;
  std::filesystem::path file;
  int opened_at_version = 0;
  bool read_only = false;
};

}  // namespace agentbus::broker
