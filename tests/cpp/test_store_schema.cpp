// The store's schema versions and migration ladder (src/store_schema.cpp), checked against
// stores built here byte for byte as earlier releases wrote them.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fresh_dir.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"

namespace fs = std::filesystem;
using namespace mmsearch;

namespace {

// Schema version 1 exactly as the releases before the migration ladder created it. Kept here
// as a fixture of its own, not shared with src/store_schema.cpp: the test must catch an edit of
// the library's version-1 definition, which real stores on disk would not follow.
constexpr const char* kReleasedSchemaV1 = R"sql(
PRAGMA page_size = 16384;
PRAGMA journal_mode = WAL;
BEGIN IMMEDIATE;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, model_id TEXT NOT NULL UNIQUE);
CREATE TABLE files (
  id INTEGER PRIMARY KEY,
  model INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  content_hash TEXT NOT NULL, category TEXT NOT NULL DEFAULT '', indexed_at INTEGER NOT NULL,
  UNIQUE (model, path));
CREATE INDEX files_by_hash ON files (model, content_hash, size);
CREATE TABLE captions (
  file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
  caption_index INTEGER NOT NULL, caption TEXT NOT NULL, caption_en TEXT,
  PRIMARY KEY (file_id, caption_index)) WITHOUT ROWID;
CREATE TABLE vectors (
  file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
  caption_index INTEGER NOT NULL, kind TEXT NOT NULL, rows INTEGER NOT NULL,
  cols INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (file_id, kind, caption_index));
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
PRAGMA application_id = 1296913221;
COMMIT;
)sql";

// Builds between issue 6 and the ladder added this table to version-1 stores without a version
// step.
constexpr const char* kReleasedTranslationsInV1 = R"sql(
CREATE TABLE IF NOT EXISTS translations (
  translator_id TEXT NOT NULL, text TEXT NOT NULL, translation TEXT NOT NULL,
  PRIMARY KEY (translator_id, text)) WITHOUT ROWID;
INSERT INTO translations VALUES ('mt@1', 'ciao', 'hello');
)sql";

// Two files of one model: 3 captions, 7 vector blocks.
constexpr const char* kV1Rows = R"sql(
INSERT INTO models (id, model_id) VALUES (1, 'blip@1');
INSERT INTO files VALUES (1, 1, '/p/a.jpg', 10, 100, 'xxh64:00000000000000aa', 'pasta', 1700000000);
INSERT INTO files VALUES (2, 1, '/p/b.jpg', 20, 200, 'xxh64:00000000000000bb', '', 1700000001);
INSERT INTO captions VALUES (1, 0, 'lasagne', 'lasagna');
INSERT INTO captions VALUES (1, 1, 'ragù', NULL);
INSERT INTO captions VALUES (2, 0, 'pizza', NULL);
INSERT INTO vectors VALUES (1, -1, 'image_proj', 1, 2, x'0000803f00000040');
INSERT INTO vectors VALUES (2, -1, 'image_proj', 1, 2, x'0000404000008040');
INSERT INTO vectors VALUES (1, 0, 'text_proj', 1, 2, x'0000803f00000000');
INSERT INTO vectors VALUES (1, 1, 'text_proj', 1, 2, x'000000000000803f');
INSERT INTO vectors VALUES (2, 0, 'text_proj', 1, 2, x'0000803f0000803f');
INSERT INTO vectors VALUES (1, -1, 'image_embed', 1, 1, x'0000a040');
INSERT INTO vectors VALUES (2, -1, 'image_embed', 1, 1, x'0000c040');
)sql";

void exec(const fs::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  const std::string text = message ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << text;
}

std::string query_text(const fs::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  std::string value = "<no row>";
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) != SQLITE_OK) {
    value = std::string("<error: ") + sqlite3_errmsg(db) + ">";
  } else if (sqlite3_step(q) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    value = text ? text : "<null>";
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  return value;
}

std::string stored_version(const fs::path& path) {
  return query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'");
}

int count_rows(const fs::path& path, const std::string& table) {
  return std::stoi(query_text(path, "SELECT count(*) FROM " + table));
}

bool has_translations_table(const fs::path& path) {
  return query_text(path, "SELECT count(*) FROM sqlite_master WHERE name = 'translations'") == "1";
}

fs::path released_v1_store(const std::string& name, bool with_translations) {
  const fs::path path = fresh_test_dir("store_schema", name) / "index.sqlite3";
  exec(path, kReleasedSchemaV1);
  exec(path, kV1Rows);
  if (with_translations) exec(path, kReleasedTranslationsInV1);
  return path;
}

void expect_v1_rows_intact(const IndexStore& store) {
  const auto files = store.list_files("blip@1", "/p");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].state.path, "/p/a.jpg");
  EXPECT_EQ(files[0].state.size, 10);
  EXPECT_EQ(files[0].state.mtime_ns, 100);
  EXPECT_EQ(files[0].state.content_hash, "xxh64:00000000000000aa");
  EXPECT_EQ(files[0].category, "pasta");
  ASSERT_EQ(files[0].captions.size(), 2u);
  EXPECT_EQ(files[0].captions[0].text, "lasagne");
  EXPECT_EQ(files[0].captions[0].text_en, "lasagna");
  EXPECT_EQ(files[0].captions[1].text, "ragù");
  EXPECT_EQ(files[1].captions.size(), 1u);

  const LoadedVectors image = store.load_vectors("blip@1", "/p", VectorKind::kImageProj);
  ASSERT_EQ(image.embeddings.count, 2);
  EXPECT_EQ(image.embeddings.values, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(image.owners[0].caption, "lasagne");
  const LoadedVectors text = store.load_vectors("blip@1", "/p", VectorKind::kTextProj);
  ASSERT_EQ(text.embeddings.count, 3);
  EXPECT_EQ(text.owners[1].caption, "ragù");
  EXPECT_EQ(store.load_vectors("blip@1", "/p", VectorKind::kImageEmbed).embeddings.values,
            (std::vector<float>{5, 6}));
  EXPECT_EQ(store.model_usage().at(0).file_count, 2);
}

}  // namespace

TEST(StoreSchema, NewStoresAreTheLatestVersion) {
  const fs::path dir = fresh_test_dir("store_schema", "new");
  IndexStore store(dir / "index.sqlite3");
  EXPECT_EQ(store.schema_version(), IndexStore::kSchemaVersion);
  EXPECT_EQ(stored_version(dir / "index.sqlite3"), std::to_string(IndexStore::kSchemaVersion));
  EXPECT_TRUE(has_translations_table(dir / "index.sqlite3"));
}

TEST(StoreSchema, ReadWriteOpenMigratesAReleasedV1Store) {
  const fs::path path = released_v1_store("migrate", false);
  ASSERT_EQ(stored_version(path), "1");
  {
    IndexStore store(path);
    EXPECT_EQ(store.schema_version(), IndexStore::kSchemaVersion);
    EXPECT_EQ(stored_version(path), std::to_string(IndexStore::kSchemaVersion));
    expect_v1_rows_intact(store);
    // Version 3 moved the vectors out of the BLOB table into segment files, exactly.
    EXPECT_EQ(count_rows(path, "vectors"), 0);
    EXPECT_EQ(count_rows(path, "segments"), 1);
    EXPECT_TRUE(store.find_translations("mt@1", {"ciao"}).empty());
    store.put_translations("mt@1", {{"ciao", "hello"}});
    EXPECT_EQ(store.find_translations("mt@1", {"ciao"}).at("ciao"), "hello");
    // The migrated store takes writes like a new one.
    IndexedFile file;
    file.state = {"/p/c.jpg", 30, 300, "xxh64:00000000000000cc"};
    store.upsert_batch("blip@1", {file});
    EXPECT_EQ(store.list_files("blip@1", "/p").size(), 3u);
    EXPECT_EQ(store.integrity_check(), "ok");
  }
  // Opening again finds nothing to do, and keeps what the first open wrote.
  IndexStore again(path);
  EXPECT_EQ(again.schema_version(), IndexStore::kSchemaVersion);
  EXPECT_EQ(again.find_translations("mt@1", {"ciao"}).at("ciao"), "hello");
  const IndexStore reader(path, IndexStore::Mode::kReadOnly);
  EXPECT_EQ(reader.schema_version(), IndexStore::kSchemaVersion);
}

TEST(StoreSchema, MigrationKeepsTranslationsThatAV1StoreAlreadyHeld) {
  const fs::path path = released_v1_store("migrate_cached", true);
  IndexStore store(path);
  EXPECT_EQ(stored_version(path), std::to_string(IndexStore::kSchemaVersion));
  expect_v1_rows_intact(store);
  EXPECT_EQ(store.find_translations("mt@1", {"ciao"}).at("ciao"), "hello");
}

TEST(StoreSchema, ReadOnlyOpenReadsAV1StoreWithoutWriting) {
  const fs::path path = released_v1_store("read_only", false);
  {
    const IndexStore reader(path, IndexStore::Mode::kReadOnly);
    EXPECT_EQ(reader.schema_version(), 1);
    expect_v1_rows_intact(reader);
    EXPECT_TRUE(reader.find_translations("mt@1", {"ciao"}).empty());
  }
  EXPECT_EQ(stored_version(path), "1");
  EXPECT_FALSE(has_translations_table(path));

  // A version-1 store that already holds the cache is read with it.
  const fs::path cached = released_v1_store("read_only_cached", true);
  const IndexStore reader(cached, IndexStore::Mode::kReadOnly);
  EXPECT_EQ(reader.find_translations("mt@1", {"ciao"}).at("ciao"), "hello");
  EXPECT_EQ(stored_version(cached), "1");
}

TEST(StoreSchema, RefusesANewerSchemaInEitherMode) {
  const fs::path path = released_v1_store("newer", false);
  exec(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
  for (const auto mode : {IndexStore::Mode::kReadWrite, IndexStore::Mode::kReadOnly}) {
    try {
      IndexStore store(path, mode);
      FAIL() << "opened schema version 99";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::kIndex);
      EXPECT_NE(message.find(path.string()), std::string::npos) << message;
      EXPECT_NE(message.find("schema version 99"), std::string::npos) << message;
      EXPECT_NE(message.find("reads versions 1 to " + std::to_string(IndexStore::kSchemaVersion)),
                std::string::npos)
          << message;
      EXPECT_EQ(message.find("--"), std::string::npos) << "names a flag: " << message;
    }
  }
  EXPECT_EQ(stored_version(path), "99");  // untouched
}

TEST(StoreSchema, RefusesAMissingOrInvalidVersion) {
  const fs::path path = released_v1_store("invalid", false);
  for (const char* value : {"0", "two", "", "-1"}) {
    exec(path, std::string("UPDATE meta SET value = '") + value + "' WHERE key = 'schema_version'");
    try {
      IndexStore store(path);
      FAIL() << "opened schema version '" << value << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIndex);
      EXPECT_NE(std::string(e.what()).find("no valid schema version"), std::string::npos)
          << e.what();
    }
  }
}

TEST(StoreSchema, AFailedMigrationStepLeavesNoTrace) {
  // A trigger that aborts the version bump makes the v1 -> v2 step fail after its table was
  // created: both are one transaction, so neither may remain.
  const fs::path path = released_v1_store("failed", false);
  exec(path,
       "CREATE TRIGGER block_bump BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'blocked'); "
       "END");
  try {
    IndexStore store(path);
    FAIL() << "migrated although the version bump failed";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("migrate schema to version 2"), std::string::npos) << message;
    EXPECT_NE(message.find("blocked"), std::string::npos) << message;
  }
  EXPECT_EQ(stored_version(path), "1");
  EXPECT_FALSE(has_translations_table(path));
  const IndexStore reader(path, IndexStore::Mode::kReadOnly);
  expect_v1_rows_intact(reader);

  exec(path, "DROP TRIGGER block_bump");
  IndexStore store(path);
  EXPECT_EQ(store.schema_version(), IndexStore::kSchemaVersion);
  expect_v1_rows_intact(store);
}

// A damaged rows or cols in a stored vector block is a corrupt store (Error kIndex), found
// before anything is sized by it: rows = 2^31 - 1 once made load_vectors allocate terabytes.
TEST(StoreSchema, DamagedVectorShapesAreCorruptNotAnAllocation) {
  for (const char* damage : {"UPDATE vectors SET rows = 2147483647 WHERE file_id = 1",
                             "UPDATE vectors SET cols = 2147483647 WHERE file_id = 1",
                             "UPDATE vectors SET rows = -5 WHERE file_id = 2",
                             "UPDATE vectors SET rows = 0 WHERE file_id = 1",
                             // an empty block (fuzz_store), and a count that wraps around int
                             "UPDATE vectors SET rows = 0, data = x'' WHERE file_id = 1",
                             "UPDATE vectors SET rows = 4294967297 WHERE file_id = 1"}) {
    SCOPED_TRACE(damage);
    const fs::path path = released_v1_store("damaged-shape", false);
    exec(path, damage);
    IndexStore store(path, IndexStore::Mode::kReadOnly);
    const auto [kind, message] =
        test_support::error_of([&] { store.load_vectors("blip@1", "/p", VectorKind::kImageProj); });
    EXPECT_EQ(kind, ErrorKind::kIndex);
    EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
  }
}

// Found by fuzz_store: search on a read-only open of a store older than schema 3 prepared a
// query of the segment columns that store does not have ("no such column: segment_id").
TEST(StoreSchema, ReadOnlyOpenSearchesAV1Store) {
  const fs::path path = released_v1_store("read_only_search", false);
  const IndexStore reader(path, IndexStore::Mode::kReadOnly);
  SearchRequest request;
  request.kind = VectorKind::kImageProj;
  request.k = 5;
  SearchTerm term;
  term.query = {1, 1, 2, {1.0f, 0.0f}};
  request.terms.push_back(term);
  const SearchResult result = reader.search("blip@1", "/p", request);
  ASSERT_EQ(result.matches.size(), 2u);
  EXPECT_EQ(result.matches[0].owner.path, "/p/b.jpg");  // 3 > 1
  EXPECT_FLOAT_EQ(result.matches[0].score, 3.0f);
  EXPECT_EQ(result.matches[1].owner.path, "/p/a.jpg");
  EXPECT_EQ(result.matches[1].owner.caption, "lasagne");
  EXPECT_EQ(stored_version(path), "1");
}

// Found by fuzz_store: a read-write open of a store whose journal is not WAL (an older or
// copied store, or one set to another mode by a tool) failed with "enable WAL: cannot change
// into wal mode from within a transaction", because the statement reading the mode was still
// open.
TEST(StoreSchema, ReadWriteOpenSwitchesAStoreOutOfRollbackJournalMode) {
  const fs::path path = released_v1_store("journal_delete", false);
  exec(path, "PRAGMA journal_mode = DELETE");
  ASSERT_EQ(query_text(path, "PRAGMA journal_mode"), "delete");
  {
    IndexStore store(path);
    EXPECT_EQ(store.schema_version(), IndexStore::kSchemaVersion);
    expect_v1_rows_intact(store);
  }
  EXPECT_EQ(query_text(path, "PRAGMA journal_mode"), "wal");
}

// A damaged or hostile store naming a segment outside its folder ("../x") must never make a
// read open that file, nor a write delete it (the segment's file is deleted with its model).
TEST(StoreSchema, SegmentNamesOutsideTheSegmentsFolderAreRefused) {
  const fs::path dir = fresh_test_dir("store_schema", "segment_escape");
  const fs::path path = dir / "index.sqlite3";
  {
    IndexStore store(path);
    IndexedFile file;
    file.state = {"/p/a.jpg", 1, 2, "xxh64:0000000000000001"};
    file.vectors.push_back({VectorKind::kImageProj, -1, 1, 2, {1.0f, 0.0f}});
    store.upsert_batch("m@1", {file});
  }
  const fs::path victim = dir / "victim.seg";
  std::ofstream(victim) << "keep me";
  exec(path, "UPDATE segments SET file_name = '../victim.seg'");

  IndexStore store(path);
  SearchRequest request;
  request.kind = VectorKind::kImageProj;
  SearchTerm term;
  term.query = {1, 1, 2, {1.0f, 0.0f}};
  request.terms.push_back(term);
  const auto [kind, message] = test_support::error_of([&] { store.search("m@1", "/p", request); });
  EXPECT_EQ(kind, ErrorKind::kIndex);
  EXPECT_NE(message.find("outside its folder"), std::string::npos) << message;
  EXPECT_EQ(test_support::error_of([&] { store.remove_model("m@1"); }).first, ErrorKind::kIndex);
  EXPECT_TRUE(fs::exists(victim));
}
