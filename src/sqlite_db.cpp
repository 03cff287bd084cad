#include "sqlite_db.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "mmsearch/error.h"
#include "store_advice.h"

namespace mmsearch::sqlite {
namespace {

// Raw calls: the check's own failure is SQLite's reason, not another wrapped message.
std::string run_quick_check(sqlite3* db) {
  std::string report;
  sqlite3_stmt* check = nullptr;
  int step = sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &check, nullptr);
  while (step == SQLITE_OK || step == SQLITE_ROW) {
    step = sqlite3_step(check);
    if (step != SQLITE_ROW) break;
    const auto* line = reinterpret_cast<const char*>(sqlite3_column_text(check, 0));
    report += (report.empty() ? "" : "; ") + std::string(line ? line : "");
  }
  if (step != SQLITE_DONE) report = sqlite3_errmsg(db);
  sqlite3_finalize(check);
  return report;
}

// What to say when SQLite reports damage: only what its own check confirms is called damage,
// and the advice never deletes the store.
std::string damage_report(sqlite3* db) {
  const std::string report = run_quick_check(db);
  if (report == "ok") {
    return "yet PRAGMA quick_check finds no damage, so it was most likely a read error of the "
           "disk; try again, and check the disk if it repeats";
  }
  return "the store is damaged (PRAGMA quick_check: " + report +
         "). Nothing was changed: keep the file for recovery (sqlite3 FILE .recover) and "
         "re-index into a new store (MMSEARCH_HOME=NEW_FOLDER mmsearch index DIR)";
}

// Which folder a disk-full message should name: the store's.
std::string folder_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path().string() : std::string(".");
}

std::string error_message(sqlite3* db, int rc, const std::filesystem::path& path,
                          const std::string& where) {
  const int os_errno = db ? sqlite3_system_errno(db) : 0;
  if (rc == SQLITE_FULL || os_errno == ENOSPC || os_errno == EDQUOT) {
    return where + ": disk full (" + std::strerror(os_errno ? os_errno : ENOSPC) + ") in " +
           folder_of(path) + "; " + store_advice::kDiskFull;
  }
  std::string message = where + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (os_errno != 0 &&
      (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY || rc == SQLITE_PERM)) {
    message += std::string(" (") + std::strerror(os_errno) + ")";
  }
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    message += " (the index is locked by another mmsearch process; try again when it ends)";
  } else if (rc == SQLITE_READONLY || os_errno == EROFS || os_errno == EACCES) {
    message += "; the index is not writable here: " + store_advice::not_writable(folder_of(path));
  } else if (rc == SQLITE_CORRUPT && db) {
    message += "; " + damage_report(db);
  }
  return message;
}

// SQLite's URI syntax for a path: every byte that could start a query or escape, percent-coded.
std::string file_uri(const std::filesystem::path& path, const char* parameters) {
  static const char* hex = "0123456789ABCDEF";
  std::string uri = "file:";
  for (const unsigned char c : path.string()) {
    if (c == '%' || c == '?' || c == '#' || c < 0x21 || c >= 0x7f) {
      uri += '%';
      uri += hex[c >> 4];
      uri += hex[c & 15];
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri + "?" + parameters;
}

}  // namespace

Database::Database(const std::filesystem::path& path, Access access, int busy_timeout_ms)
    : path_(path) {
  int flags = SQLITE_OPEN_NOMUTEX;
  std::string name = path.string();
  switch (access) {
    case Access::kReadOnly:
      flags |= SQLITE_OPEN_READONLY;
      break;
    case Access::kReadOnlyImmutable:
      flags |= SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
      name = file_uri(path, "immutable=1");
      break;
    case Access::kReadWriteCreate:
      flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
      break;
  }
  const int rc = sqlite3_open_v2(name.c_str(), &db_, flags, nullptr);
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

int Database::try_query_int(const std::string& sql, std::int64_t& value) const noexcept {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    value = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  sqlite3_finalize(stmt);
  return rc;
}

std::int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

std::int64_t Database::changes() const { return sqlite3_changes(db_); }

void Database::fail(int rc, const std::string& what) const {
  throw Error(ErrorKind::kIndex, error_message(db_, rc, path_, where(what)));
}

int Database::last_error() const { return sqlite3_errcode(db_); }

int Database::last_system_errno() const { return sqlite3_system_errno(db_); }

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
  const std::string message = error_message(db_.handle(), rc, db_.path(), db_.where(what_));
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
