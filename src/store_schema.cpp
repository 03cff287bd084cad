#include "store_schema.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "store_advice.h"

namespace mmsearch::store_schema {
namespace fs = std::filesystem;
namespace {

// 'MMSE' in the database header: tells our store from any other SQLite file.
constexpr int kApplicationId = 0x4D4D5345;

// Schema version 1, the base of the ladder. Frozen: it is what stores written by the first
// releases hold, so it is never edited; every change is a migration step below. Design notes:
// * files: one row per (model, path). The same photo indexed by two models is two rows, so
//   each model's incremental state is independent and removing one model's index never
//   touches another's.
// * captions / vectors cascade from files, so removing a file removes everything it owned.
// * vectors.caption_index is -1 for per-image vectors; a real column (not NULL) so that the
//   primary key (file_id, caption_index, kind) really is unique.
// * data is raw little-endian float32, rows * cols * 4 bytes, checked on load.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE models (
  id       INTEGER PRIMARY KEY,
  model_id TEXT NOT NULL UNIQUE
);
CREATE TABLE files (
  id           INTEGER PRIMARY KEY,
  model        INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  path         TEXT NOT NULL,
  size         INTEGER NOT NULL,
  mtime_ns     INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  category     TEXT NOT NULL DEFAULT '',
  indexed_at   INTEGER NOT NULL,
  UNIQUE (model, path)
);
CREATE INDEX files_by_hash ON files (model, content_hash, size);
CREATE TABLE captions (
  file_id       INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
  caption_index INTEGER NOT NULL,
  caption       TEXT NOT NULL,
  caption_en    TEXT,
  PRIMARY KEY (file_id, caption_index)
) WITHOUT ROWID;
CREATE TABLE vectors (
  file_id       INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
  caption_index INTEGER NOT NULL,
  kind          TEXT NOT NULL,
  rows          INTEGER NOT NULL,
  cols          INTEGER NOT NULL,
  data          BLOB NOT NULL,
  PRIMARY KEY (file_id, kind, caption_index)
);
)sql";

// One rung of the ladder: the SQL that turns version to_version - 1 into to_version. Each runs
// in its own transaction together with the bump of meta.schema_version, so a crash leaves the
// store at one version or the next, never between.
struct MigrationStep {
  int to_version;
  const char* summary;
  const char* sql;
};

constexpr MigrationStep kMigrations[] = {
    // The translation cache (issue 6): English text per (translator, source text), keyed by
    // the translator's id (bundle name + weights hash), so another translator never reuses
    // entries. Not referenced by files: entries outlive the captions that needed them, which
    // lets a re-index after a caption edit-and-revert, or a second folder with the same
    // captions, skip the translator. Rows are small; nothing prunes them. IF NOT EXISTS:
    // builds before this ladder created the same table in version-1 stores, whose entries
    // are kept.
    {2, "add the translation cache", R"sql(
CREATE TABLE IF NOT EXISTS translations (
  translator_id TEXT NOT NULL,
  text          TEXT NOT NULL,
  translation   TEXT NOT NULL,
  PRIMARY KEY (translator_id, text)
) WITHOUT ROWID;
)sql"},
    // Vector segments (issue 10): vectors leave the `vectors` BLOB table for immutable,
    // memory-mapped, checksummed segment files beside the database (docs/STORE.md), so that
    // a query maps and scans only the arrays it scores. SQLite keeps the truth: a segment is
    // live only through its row here, and a file points at its (segment, row). The counts of
    // live files per segment are kept by triggers, inside the same transactions that change
    // files, so they can never drift: a segment whose count reaches 0 is deleted, one with
    // dead rows is rewritten by compaction. Existing BLOBs are moved into segments by the
    // first read-write open (IndexStore::Impl::move_inline_vectors); until then reads take
    // them from the old table.
    {3, "move vectors into segment files", R"sql(
CREATE TABLE segments (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  model       INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  file_name   TEXT NOT NULL UNIQUE,
  items       INTEGER NOT NULL,
  live_items  INTEGER NOT NULL DEFAULT 0,
  bytes       INTEGER NOT NULL,
  common_dir  TEXT NOT NULL,
  kinds       TEXT NOT NULL,
  encoding    TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE INDEX segments_by_model ON segments (model);
ALTER TABLE files ADD COLUMN segment_id INTEGER;
ALTER TABLE files ADD COLUMN segment_row INTEGER;
CREATE INDEX files_by_segment ON files (segment_id, segment_row);
CREATE TRIGGER files_segment_insert AFTER INSERT ON files WHEN new.segment_id IS NOT NULL
BEGIN
  UPDATE segments SET live_items = live_items + 1 WHERE id = new.segment_id;
END;
CREATE TRIGGER files_segment_delete AFTER DELETE ON files WHEN old.segment_id IS NOT NULL
BEGIN
  UPDATE segments SET live_items = live_items - 1 WHERE id = old.segment_id;
END;
CREATE TRIGGER files_segment_move AFTER UPDATE OF segment_id ON files
WHEN old.segment_id IS NOT new.segment_id
BEGIN
  UPDATE segments SET live_items = live_items - 1 WHERE id = old.segment_id;
  UPDATE segments SET live_items = live_items + 1 WHERE id = new.segment_id;
END;
)sql"},
    // Approximate search (docs/STORE.md): at most one FAISS IVF index per (model, kind), in a
    // file beside the segments. The file lists the segments it covers; a query scans every
    // other segment exactly, so the index is an accelerator, never the truth, and a missing or
    // stale one costs time, not results.
    {4, "approximate-search indexes", R"sql(
CREATE TABLE ann_indexes (
  model       INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  kind        TEXT NOT NULL,
  file_name   TEXT NOT NULL UNIQUE,
  entries     INTEGER NOT NULL,
  lists       INTEGER NOT NULL,
  bytes       INTEGER NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (model, kind)
);
)sql"},
};

constexpr bool ladder_is_complete() {
  int version = 1;
  for (const MigrationStep& step : kMigrations) {
    if (step.to_version != version + 1) return false;
    version = step.to_version;
  }
  return version == IndexStore::kSchemaVersion;
}
static_assert(ladder_is_complete(),
              "kMigrations must climb one version at a time from 1 to IndexStore::kSchemaVersion");

std::string version_text(int version) { return std::to_string(version); }

// meta.schema_version, or 0 when absent or not a positive number.
int read_schema_version(const sqlite::Database& db) {
  sqlite::Statement q(db, "SELECT value FROM meta WHERE key = 'schema_version'",
                      "read schema version");
  if (!q.step()) return 0;
  const std::string text = q.text(0);
  if (text.empty() || text.size() > 9 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return 0;
  }
  return std::stoi(text);
}

void apply_step(sqlite::Database& db, const MigrationStep& step) {
  const std::string what =
      "migrate schema to version " + version_text(step.to_version) + " (" + step.summary + ")";
  db.exec(step.sql, what);
  db.exec("UPDATE meta SET value = '" + version_text(step.to_version) +
              "' WHERE key = 'schema_version'",
          what);
}

// A new store is created as version 1 and climbed up the whole ladder in one transaction:
// one definition of the latest schema, and a crash never leaves a half-created store.
void create_schema(sqlite::Database& db) {
  sqlite::Transaction transaction(db, "create schema");
  db.exec(kSchemaV1, "create schema");
  db.exec("INSERT INTO meta (key, value) VALUES ('schema_version', '1')", "create schema");
  db.exec("PRAGMA application_id = " + std::to_string(kApplicationId), "create schema");
  for (const MigrationStep& step : kMigrations) apply_step(db, step);
  transaction.commit();
}

// Climbs from `version` to the latest, one transaction per step. Each step re-reads the
// version under the write lock: another process may have migrated while this one waited.
int migrate(sqlite::Database& db, int version) {
  for (const MigrationStep& step : kMigrations) {
    if (step.to_version <= version) continue;
    sqlite::Transaction transaction(db,
                                    "migrate schema to version " + version_text(step.to_version));
    version = read_schema_version(db);
    if (version >= step.to_version) continue;
    apply_step(db, step);
    transaction.commit();
    version = step.to_version;
  }
  return version;
}

void check_readable(const fs::path& path, int version) {
  if (version > IndexStore::kSchemaVersion) {
    throw Error(ErrorKind::kIndex,
                "index " + path.string() + " has schema version " + version_text(version) +
                    ", written by a newer mmsearch; this mmsearch reads versions 1 to " +
                    version_text(IndexStore::kSchemaVersion) + ". Upgrade mmsearch to use it");
  }
  if (version < 1) {
    throw Error(ErrorKind::kIndex,
                "index " + path.string() + " has no valid schema version; it is corrupt");
  }
}

bool table_exists(const sqlite::Database& db, const std::string& name) {
  sqlite::Statement q(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                      "open");
  q.bind(1, name);
  return q.step() && q.int64(0) > 0;
}

void prepare_location(const fs::path& path, bool read_only) {
  std::error_code ec;
  if (read_only) {
    if (!fs::exists(path, ec)) {
      throw Error(ErrorKind::kIndex, "no index at " + path.string() + " (nothing indexed yet)");
    }
  } else if (path.has_parent_path()) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      throw Error(ErrorKind::kIndex,
                  "cannot create " + path.parent_path().string() + ": " + ec.message());
    }
  }
}

// `PRAGMA journal_mode = WAL` needs the write lock, and SQLite does not wait for it: two first
// runs started together would fail with "database is locked". So it is skipped when the file
// is already in WAL mode (every store made by create_store_file is), and retried within the
// busy timeout otherwise.
void enable_wal(sqlite::Database& db, int busy_timeout_ms) {
  {
    // Scoped: a statement left active keeps a read transaction open, and SQLite refuses to
    // change the journal mode inside one ("cannot change into wal mode from within a
    // transaction"), which failed every read-write open of a store not yet in WAL mode.
    sqlite::Statement mode(db, "PRAGMA journal_mode", "read journal mode");
    if (mode.step() && mode.text(0) == "wal") return;
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
  for (;;) {
    std::int64_t ignored = 0;
    const int rc = db.try_query_int("PRAGMA journal_mode = WAL", ignored);
    if (rc == SQLITE_OK) return;
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) db.fail(rc, "enable WAL");
    if (std::chrono::steady_clock::now() >= deadline) db.fail(rc, "enable WAL");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Connection settings; `is_new` when the file holds no table yet.
void configure(sqlite::Database& db, bool read_only, bool is_new, int busy_timeout_ms) {
  if (!read_only) {
    // WAL: readers (a query) run while the indexer writes, and a crash can only lose the
    // uncommitted tail of the log. synchronous=FULL syncs the WAL at every commit, so a
    // committed batch survives power loss too, not only kill -9 (NORMAL would keep it
    // after kill -9 but not after power loss). One fsync per batch is cheap next to
    // embedding the batch.
    // 16 KiB pages (only takes effect on a new, empty database): vector blobs span fewer
    // overflow pages.
    if (is_new) db.exec("PRAGMA page_size = 16384", "set page size");
    enable_wal(db, busy_timeout_ms);
  }
  db.exec("PRAGMA synchronous = FULL", "set synchronous");
  // Loading a scope reads every vector blob (a BLIP-2 image_proj block is 32 KiB): a 64 MiB
  // page cache and memory-mapped reads cut that load time several-fold over 4 KiB read()s.
  db.exec("PRAGMA cache_size = -65536", "set cache size");
  db.exec("PRAGMA mmap_size = 1073741824", "set mmap size");
  db.exec("PRAGMA foreign_keys = ON", "enable foreign keys");
}

void sync_folder(const fs::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// A new store is built whole under a private name, then published with link(2), which never
// replaces an existing file. So a store is either absent or complete with its schema: a crash
// or a full disk during creation leaves no half-made store, and of two first runs started
// together one publishes and the other opens what it published.
void create_store_file(const fs::path& path, int busy_timeout_ms) {
  static std::atomic<int> counter{0};
  const fs::path staging =
      path.string() + ".new-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  auto remove_staging = [&] {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      fs::remove(staging.string() + suffix, ignored);
    }
  };
  try {
    {
      // A rollback journal while building: the commit lands in the file itself, or fails
      // (a full disk) before anything is published. WAL is switched on afterwards; the mode
      // is kept in the file's header.
      sqlite::Database db(staging, sqlite::Database::Access::kReadWriteCreate, busy_timeout_ms);
      db.exec("PRAGMA page_size = 16384", "set page size");
      db.exec("PRAGMA synchronous = FULL", "set synchronous");
      create_schema(db);
      sqlite::Statement mode(db, "PRAGMA journal_mode = WAL", "enable WAL");
      if (!mode.step() || mode.text(0) != "wal") {
        throw Error(ErrorKind::kIndex,
                    db.where("enable WAL") + ": SQLite kept journal mode '" + mode.text(0) + "'");
      }
    }
    // Published only once it reads back whole, with no log left beside it.
    sqlite::Database check(staging, sqlite::Database::Access::kReadOnly, busy_timeout_ms);
    sqlite::Statement quick(check, "PRAGMA quick_check", "check the new index");
    if (!quick.step() || quick.text(0) != "ok") {
      throw Error(ErrorKind::kIndex, check.where("check the new index") + ": " + quick.text(0));
    }
  } catch (const Error& e) {
    remove_staging();
    // The message names the store the user knows, not the private name it was built under.
    std::string message = e.what();
    for (std::size_t at; (at = message.find(staging.string())) != std::string::npos;) {
      message.replace(at, staging.string().size(), path.string());
    }
    throw Error(e.kind(), message);
  } catch (...) {
    remove_staging();
    throw;
  }
  if (::link(staging.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    const int link_errno = errno;
    remove_staging();
    throw Error(ErrorKind::kIndex,
                "cannot create index " + path.string() + ": " + std::strerror(link_errno));
  }
  remove_staging();
  sync_folder(path.has_parent_path() ? path.parent_path() : fs::path("."));
}

// Sets errno (EROFS, EACCES) when not.
bool folder_writable(const fs::path& path) {
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  return ::access(folder.c_str(), W_OK) == 0;
}

bool has_log_to_read(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path.string() + "-wal", ec);
  return !ec && size > 0;
}

// Says what is wrong with a store whose first read failed with `rc`. Damage reports go through
// quick_check in sqlite_db.cpp; the advice never deletes the file.
[[noreturn]] void refuse_unreadable(sqlite::Database& db, const fs::path& path, int rc) {
  if (rc == SQLITE_NOTADB) {
    throw Error(ErrorKind::kIndex,
                "index " + path.string() +
                    " is not an SQLite database (its header is not SQLite's), so it is not an "
                    "mmsearch index, or its first page was overwritten. mmsearch leaves it as "
                    "it is; set MMSEARCH_HOME to another folder to start a new index");
  }
  db.fail(rc, "open");
}

}  // namespace

OpenedDatabase open_database(const std::filesystem::path& path, bool read_only,
                             int busy_timeout_ms) {
  prepare_location(path, read_only);
  if (!read_only) {
    std::error_code ec;
    const bool present = fs::exists(path, ec);
    // An empty file (left by an older mmsearch whose first run stopped early) is set up in place
    // below.
    if (!present && !ec) create_store_file(path, busy_timeout_ms);
  }
  using Access = sqlite::Database::Access;
  OpenedDatabase opened{
      sqlite::Database(path, read_only ? Access::kReadOnly : Access::kReadWriteCreate,
                       busy_timeout_ms),
      0, false};

  // Reading the header first turns "file is not a database" into a clear error up front.
  std::int64_t application_id = 0, tables = 0;
  int rc = opened.db.try_query_int("PRAGMA application_id", application_id);
  if (rc == SQLITE_CANTOPEN && read_only && !folder_writable(path) && !has_log_to_read(path)) {
    // A store on a read-only disk or folder: SQLite cannot make the -shm file a WAL reader
    // needs. With no log to read, and nobody able to write there, it can be read as immutable.
    opened.db = sqlite::Database(path, Access::kReadOnlyImmutable, busy_timeout_ms);
    rc = opened.db.try_query_int("PRAGMA application_id", application_id);
  }
  if (rc == SQLITE_OK) {
    rc = opened.db.try_query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table'", tables);
  }
  sqlite::Database& db = opened.db;
  if (rc == SQLITE_CANTOPEN && read_only && !folder_writable(path)) {
    throw Error(ErrorKind::kIndex,
                "cannot read index " + path.string() +
                    ": its folder is read-only and its "
                    "write-ahead log " +
                    path.string() +
                    "-wal holds commits, which SQLite "
                    "can only read with a -shm file beside it. Make the folder writable "
                    "once (any mmsearch command then folds the log in), or copy the store "
                    "with its -wal file to a writable folder and set MMSEARCH_HOME there");
  }
  if ((rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY) && !read_only && !folder_writable(path)) {
    const int why = errno;
    throw Error(ErrorKind::kIndex, "cannot write index " + path.string() +
                                       ": its folder is not writable (" + std::strerror(why) +
                                       "); " +
                                       store_advice::not_writable(path.parent_path().string()));
  }
  if (rc != SQLITE_OK) refuse_unreadable(db, path, rc);
  if (tables > 0 && application_id != kApplicationId) {
    throw Error(ErrorKind::kIndex,
                "index " + path.string() +
                    " is an SQLite database but not an mmsearch index; refusing to touch it");
  }
  configure(db, read_only, tables == 0, busy_timeout_ms);

  if (tables == 0) {
    if (read_only) throw Error(ErrorKind::kIndex, "index " + path.string() + " is empty");
    create_schema(db);
    opened.schema_version = IndexStore::kSchemaVersion;
    opened.has_translations = true;
    return opened;
  }
  int version = read_schema_version(db);
  check_readable(path, version);
  if (!read_only) {
    version = migrate(db, version);
    check_readable(path, version);  // a newer mmsearch may have migrated it meanwhile
  }
  opened.schema_version = version;
  // Version 1 stores may hold the cache too: builds before the ladder created it there.
  opened.has_translations = version >= 2 || table_exists(db, "translations");
  return opened;
}

}  // namespace mmsearch::store_schema
