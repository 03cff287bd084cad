#include "sqlite_db.h"

#include <sqlite3.h>

#include <utility>

#include "mmsearch/error.h"

namespace mmsearch::sqlite {
namespace {

std::string error_message(sqlite3* db, int rc, const std::string& where) {
  std::string message = where + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    message += " (the index is locked by another mmsearch process; try again when it ends)";
  }
  return message;
}

}  // namespace

Database::Database(const std::filesystem::path& path, Access access, int busy_timeout_ms)
    : path_(path) {
  const int flags = (access == Access::kReadOnly ? SQLITE_OPEN_READONLY
                                                 : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorKind::kIndex, "cannot open index " + path.string() + ": " + message);
  }
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  // Primary codes only: SQLITE_BUSY_SNAPSHOT and friends must still read as "locked".
  sqlite3_extended_result_codes(db_, 0);
}

Database::~Database() { sqlite3_close(db_); }

Database::Database(Database&& other) noexcept
    : path_(std::move(other.path_)), db_(std::exchange(other.db_, nullptr)) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    sqlite3_close(db_);
    path_ = std::move(other.path_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

std::string Database::where(const std::string& what) const {
  return "index " + path_.string() + ": " + what;
}

void Database::exec(const std::string& sql, const std::string& what) {
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, what);
}

std::int64_t Database::query_int(const std::string& sql, const std::string& what) const {
  Statement query(*this, sql, what);
  return query.step() ? query.int64(0) : 0;
}

std::int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

std::int64_t Database::changes() const { return sqlite3_changes(db_); }

void Database::fail(int rc, const std::string& what) const {
  throw Error(ErrorKind::kIndex, error_message(db_, rc, where(what)));
}

Statement::Statement(const Database& db, const std::string& sql, const std::string& what)
    : db_(db), what_(what) {
  const int rc = sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &stmt_, nullptr);
  if (rc != SQLITE_OK) db.fail(rc, what);
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, std::int64_t value) {
  check(sqlite3_bind_int64(stmt_, index, value));
  return *this;
}

Statement& Statement::bind(int index, const std::string& value) {
  check(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                          SQLITE_TRANSIENT));
  return *this;
}

Statement& Statement::bind_blob(int index, const void* data, std::size_t size) {
  check(sqlite3_bind_blob64(stmt_, index, data, size, SQLITE_STATIC));
  return *this;
}

Statement& Statement::bind_null(int index) {
  check(sqlite3_bind_null(stmt_, index));
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(rc);
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t Statement::int64(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)))
           : std::string();
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

const void* Statement::blob(int column) const { return sqlite3_column_blob(stmt_, column); }

std::size_t Statement::bytes(int column) const {
  return static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column));
}

void Statement::check(int rc) {
  if (rc != SQLITE_OK) fail(rc);
}

void Statement::fail(int rc) {
  // The message first: resetting may replace SQLite's error text.
  const std::string message = error_message(db_.handle(), rc, db_.where(what_));
  sqlite3_reset(stmt_);
  throw Error(ErrorKind::kIndex, message);
}

Transaction::Transaction(Database& db, const std::string& what) : db_(db), what_(what) {
  db_.exec("BEGIN IMMEDIATE", what_);
}

Transaction::~Transaction() {
  // Also harmless when SQLite already rolled back by itself (e.g. after SQLITE_FULL).
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT", what_);
  open_ = false;
}

}  // namespace mmsearch::sqlite
