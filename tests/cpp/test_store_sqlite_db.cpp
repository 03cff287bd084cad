// The store's internal SQLite wrapper (src/sqlite_db.h): errors name the store, the
// transaction guard rolls back unless committed.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "../../src/sqlite_db.h"
#include "fresh_dir.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;
using mmsearch::Error;
using mmsearch::ErrorKind;
using mmsearch::sqlite::Database;
using mmsearch::sqlite::Statement;
using mmsearch::sqlite::Transaction;

namespace {

fs::path fresh_db(const std::string& name) {
  return fresh_test_dir("sqlite_db", name) / "test.sqlite3";
}

// The message of the Error(kIndex) that `body` throws; fails the test if it throws none.
template <typename Body>
std::string index_error(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIndex) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

}  // namespace

TEST(SqliteDb, StatementsBindStepAndRead) {
  Database db(fresh_db("statements"), Database::Access::kReadWriteCreate, 1000);
  db.exec("CREATE TABLE t (i INTEGER, s TEXT, b BLOB)", "create");
  Statement insert(db, "INSERT INTO t VALUES (?1, ?2, ?3)", "insert");
  const float values[] = {1.5f, -2.0f};
  insert.bind(1, std::int64_t{1} << 40).bind(2, std::string("a\0b", 3)).bind_blob(3, values, 8);
  insert.run();
  EXPECT_EQ(db.changes(), 1);
  EXPECT_EQ(db.last_insert_rowid(), 1);
  insert.bind(1, std::int64_t{2}).bind_null(2).bind_null(3).run();

  Statement q(db, "SELECT i, s, b FROM t ORDER BY rowid", "select");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.int64(0), std::int64_t{1} << 40);
  EXPECT_EQ(q.text(1), std::string("a\0b", 3));  // embedded NUL kept
  ASSERT_EQ(q.bytes(2), 8u);
  float read[2];
  std::memcpy(read, q.blob(2), 8);
  EXPECT_EQ(read[0], 1.5f);
  EXPECT_EQ(read[1], -2.0f);
  ASSERT_TRUE(q.step());
  EXPECT_TRUE(q.is_null(1));
  EXPECT_EQ(q.text(1), "");
  EXPECT_FALSE(q.step());
  EXPECT_EQ(db.query_int("SELECT count(*) FROM t", "count"), 2);
  EXPECT_EQ(db.query_int("SELECT i FROM t WHERE i < 0", "none"), 0);
}

TEST(SqliteDb, ErrorsNameTheStoreAndWhatWasBeingDone) {
  const fs::path path = fresh_db("errors");
  Database db(path, Database::Access::kReadWriteCreate, 1000);
  db.exec("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)", "create");
  std::string message = index_error([&] { Statement(db, "SELECT nope FROM t", "read the list"); });
  EXPECT_NE(message.find("index " + path.string() + ": read the list: "), std::string::npos)
      << message;
  EXPECT_NE(message.find("nope"), std::string::npos) << message;  // SQLite's reason

  db.exec("INSERT INTO t VALUES (1)", "insert");
  Statement insert(db, "INSERT INTO t VALUES (?1)", "add an entry");
  message = index_error([&] { insert.bind(1, std::int64_t{1}).run(); });
  EXPECT_NE(message.find("add an entry: "), std::string::npos) << message;
  EXPECT_NE(message.find("UNIQUE"), std::string::npos) << message;
  insert.bind(1, std::int64_t{2}).run();  // the statement is usable after a failure
  EXPECT_EQ(db.query_int("SELECT count(*) FROM t", "count"), 2);

  message = index_error([&] { db.exec("NOT SQL", "run a script"); });
  EXPECT_NE(message.find(path.string() + ": run a script: "), std::string::npos) << message;

  const fs::path missing = path.parent_path() / "absent" / "x.sqlite3";
  message = index_error([&] { Database(missing, Database::Access::kReadOnly, 0); });
  EXPECT_NE(message.find(missing.string()), std::string::npos) << message;
}

TEST(SqliteDb, TransactionRollsBackUnlessCommitted) {
  Database db(fresh_db("transactions"), Database::Access::kReadWriteCreate, 1000);
  db.exec("CREATE TABLE t (x)", "create");
  {
    Transaction transaction(db, "first");
    db.exec("INSERT INTO t VALUES (1)", "insert");
    transaction.commit();
  }
  try {
    Transaction transaction(db, "second");
    db.exec("INSERT INTO t VALUES (2)", "insert");
    throw std::runtime_error("interrupted");
  } catch (const std::runtime_error&) {
  }
  { Transaction abandoned(db, "third"); }
  EXPECT_EQ(db.query_int("SELECT count(*) FROM t", "count"), 1);
  EXPECT_EQ(db.query_int("SELECT sum(x) FROM t", "sum"), 1);
}

TEST(SqliteDb, ASecondWriterWaitsThenReportsTheLock) {
  const fs::path path = fresh_db("locked");
  Database first(path, Database::Access::kReadWriteCreate, 1000);
  first.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x)", "create");
  Transaction holding(first, "hold the lock");
  Database second(path, Database::Access::kReadWriteCreate, 50);
  const std::string message = index_error([&] { Transaction blocked(second, "write"); });
  EXPECT_NE(message.find("locked by another mmsearch process"), std::string::npos) << message;
  // Readers are not blocked by the writer.
  EXPECT_EQ(second.query_int("SELECT count(*) FROM t", "read"), 0);
}

TEST(SqliteDb, MovedDatabaseKeepsTheConnection) {
  const fs::path path = fresh_db("moved");
  Database db(path, Database::Access::kReadWriteCreate, 1000);
  db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (7)", "create");
  Database moved(std::move(db));
  EXPECT_EQ(moved.path(), path);
  EXPECT_EQ(moved.query_int("SELECT x FROM t", "read"), 7);
  Database other(fresh_db("moved_other"), Database::Access::kReadWriteCreate, 1000);
  other = std::move(moved);
  EXPECT_EQ(other.query_int("SELECT x FROM t", "read"), 7);
}
