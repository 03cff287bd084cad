// Internal RAII wrapper over the SQLite C API for the index store: one connection, prepared
// statements, and a write-transaction guard. Every failure becomes Error(kIndex) whose message
// starts "index <store path>: <what was being done>: <SQLite's reason>", so callers only say
// what they were doing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace mmsearch::sqlite {

class Database {
 public:
  // kReadOnlyImmutable: read-only without locks or the -shm file, for a store whose folder
  // cannot be written and that has no write-ahead log to read (nobody can be writing it).
  enum class Access { kReadOnly, kReadOnlyImmutable, kReadWriteCreate };

  // Opens the file (creating it for kReadWriteCreate; never its parent folder). A writer that
  // finds the database locked waits up to busy_timeout_ms before failing.
  Database(const std::filesystem::path& path, Access access, int busy_timeout_ms);
  ~Database();
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_; }

  // "index <path>: <what>", the prefix of every message about this store.
  std::string where(const std::string& what) const;

  // Runs one or more statements that return no rows.
  void exec(const std::string& sql, const std::string& what);
  // The single integer the query returns (0 when it returns no row), e.g. a PRAGMA or count.
  std::int64_t query_int(const std::string& sql, const std::string& what) const;

  // As query_int, but returns SQLite's result code instead of throwing: for probing a file
  // that may not be a readable database at all.
  int try_query_int(const std::string& sql, std::int64_t& value) const noexcept;

  std::int64_t last_insert_rowid() const;
  // Rows changed by the latest statement, not counting those removed by ON DELETE CASCADE.
  std::int64_t changes() const;

  // Throws Error(kIndex) for SQLite's last error on this connection, saying when the cause is
  // another process holding the lock, a full disk, or damage (and what to do about each).
  [[noreturn]] void fail(int rc, const std::string& what) const;

  // SQLite's primary result code of the last failed call, and the OS errno behind it (0 when
  // there was none), for callers that react to the cause.
  int last_error() const;
  int last_system_errno() const;

 private:
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement(const Database& db, const std::string& sql, const std::string& what);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based, as in SQL's ?1.
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, const std::string& value);
  // The bytes must stay alive until the statement has run.
  Statement& bind_blob(int index, const void* data, std::size_t size);
  Statement& bind_null(int index);

  // Advances to the next row: true while there is one.
  bool step();
  // Steps through to the end, then resets for the next set of bindings.
  void run();
  void reset();

  std::int64_t int64(int column) const;
  std::string text(int column) const;  // "" for NULL
  bool is_null(int column) const;
  const void* blob(int column) const;
  std::size_t bytes(int column) const;

 private:
  void check(int rc);
  [[noreturn]] void fail(int rc);

  const Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string what_;
};

// BEGIN IMMEDIATE on construction; rolls back on destruction unless commit() ran. IMMEDIATE
// takes the write lock up front, so a concurrent writer waits (busy timeout) at the start
// instead of failing half-way through.
class Transaction {
 public:
  Transaction(Database& db, const std::string& what);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit();

 private:
  Database& db_;
  std::string what_;
  bool open_ = true;
};

}  // namespace mmsearch::sqlite
