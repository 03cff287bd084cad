#include "mmsearch/index.h"

#include <sqlite3.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <system_error>

#include "mmsearch/error.h"

namespace mmsearch {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Paths

std::filesystem::path default_data_dir() {
  // Relative values are ignored, as the XDG Base Directory spec requires.
  const auto absolute_env = [](const char* name) -> std::optional<fs::path> {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    fs::path p(value);
    if (!p.is_absolute()) return std::nullopt;
    return p;
  };
  if (auto home = absolute_env("MMSEARCH_HOME")) return *home;
  if (auto xdg = absolute_env("XDG_DATA_HOME")) return *xdg / "mmsearch";
  if (auto home = absolute_env("HOME")) return *home / ".local" / "share" / "mmsearch";
  throw Error(ErrorKind::kUsage,
              "cannot find a place for the index: set MMSEARCH_HOME (or XDG_DATA_HOME or HOME) "
              "to an absolute path");
}

std::filesystem::path default_index_path() { return default_data_dir() / "index.sqlite3"; }

std::string normalize_index_path(const std::filesystem::path& path) {
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec) throw Error(ErrorKind::kUsage, "cannot make '" + path.string() + "' absolute");
  std::string text = absolute.lexically_normal().generic_string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

// ---------------------------------------------------------------------------------------------
// XXH64, from libxxhash.

std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed) {
  return XXH64(data, size, seed);
}

std::string hash_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kInput, path.string() + ": cannot open for hashing");
  // Streamed in 1 MiB blocks, so a file is never held in memory whole.
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> state(XXH64_createState(),
                                                                          XXH64_freeState);
  if (!state || XXH64_reset(state.get(), 0) == XXH_ERROR) {
    throw Error(ErrorKind::kInternal, "libxxhash could not initialise XXH64");
  }
  std::vector<char> block(1 << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const std::streamsize got = in.gcount();
    if (got > 0) XXH64_update(state.get(), block.data(), static_cast<std::size_t>(got));
  }
  if (in.bad()) throw Error(ErrorKind::kInput, path.string() + ": read error while hashing");
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(XXH64_digest(state.get())));
  return std::string("xxh64:") + hex;
}

// ---------------------------------------------------------------------------------------------
// SQLite plumbing

namespace {

// 'MMSE' in the database header: lets us tell our store from any other SQLite file.
constexpr int kApplicationId = 0x4D4D5345;

// Version 1. Design notes:
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

// Translation cache (issue 6): English text per (translator, source text). Keyed by the
// translator's id (bundle name + weights hash), so another translator never reuses entries.
// Not referenced by files: entries outlive the captions that needed them, which is what lets
// a re-index after a caption edit-and-revert, or a second folder with the same captions, skip
// the translator. Rows are small (two short strings); nothing prunes them.
constexpr const char* kTranslationsTable = R"sql(
CREATE TABLE IF NOT EXISTS translations (
  translator_id TEXT NOT NULL,
  text          TEXT NOT NULL,
  translation   TEXT NOT NULL,
  PRIMARY KEY (translator_id, text)
) WITHOUT ROWID;
)sql";

class Statement {
 public:
  Statement(sqlite3* db, const char* sql, const std::string& where) : db_(db), where_(where) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw Error(ErrorKind::kIndex, where + ": " + sqlite3_errmsg(db));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind_blob(int i, const void* data, std::size_t size) {
    check(sqlite3_bind_blob64(stmt_, i, data, size, SQLITE_STATIC));
    return *this;
  }
  Statement& bind_null(int i) {
    check(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc);
    return false;
  }
  void run() {
    while (step()) {
    }
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  const void* blob(int col) const { return sqlite3_column_blob(stmt_, col); }
  int bytes(int col) const { return sqlite3_column_bytes(stmt_, col); }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) fail(rc);
  }
  [[noreturn]] void fail(int rc) {
    std::string message = where_ + ": " + sqlite3_errmsg(db_);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      message += " (the index is locked by another mmsearch process; try again when it ends)";
    }
    sqlite3_reset(stmt_);
    throw Error(ErrorKind::kIndex, message);
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string where_;
};

// The half-open range of stored paths under a scope: [scope + "/", scope + "0"), since '0' is
// the byte after '/'. Byte-wise (BINARY) comparison makes this exact: "/a/b" never matches
// "/a/bc" or "/a/b-c", and no LIKE wildcard or case folding gets in the way. The scope's own
// path matches too (a scope may be a single file).
struct ScopeRange {
  std::string exact;
  std::string low;
  std::string high;
};
ScopeRange scope_range(const fs::path& scope) {
  std::string s = normalize_index_path(scope);
  if (s == "/") return {s, "/", "0"};
  return {s, s + "/", s + "0"};
}
constexpr const char* kScopeClause = "(f.path = ?2 OR (f.path >= ?3 AND f.path < ?4))";

}  // namespace

struct IndexStore::Impl {
  fs::path path;
  sqlite3* db = nullptr;
  bool read_only = false;
  bool has_translations = false;                   // the translation cache table exists
  std::map<std::string, std::int64_t> model_rows;  // model id -> models.id, cached

  std::string where(const std::string& what) const {
    return "index " + path.string() + ": " + what;
  }

  void exec(const char* sql, const std::string& what) {
    char* message = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
      std::string text = message ? message : sqlite3_errmsg(db);
      sqlite3_free(message);
      const int rc = sqlite3_errcode(db);
      if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
        text += " (the index is locked by another mmsearch process; try again when it ends)";
      }
      throw Error(ErrorKind::kIndex, where(what) + ": " + text);
    }
  }

  std::optional<std::int64_t> model_row(const std::string& model_id) {
    if (auto it = model_rows.find(model_id); it != model_rows.end()) return it->second;
    Statement q(db, "SELECT id FROM models WHERE model_id = ?1", where("model lookup"));
    q.bind(1, model_id);
    if (!q.step()) return std::nullopt;
    const std::int64_t row = q.int64(0);
    model_rows[model_id] = row;
    return row;
  }

  std::int64_t ensure_model_row(const std::string& model_id) {
    if (auto row = model_row(model_id)) return *row;
    Statement insert(db, "INSERT INTO models (model_id) VALUES (?1)", where("add model"));
    insert.bind(1, model_id).run();
    const std::int64_t row = sqlite3_last_insert_rowid(db);
    model_rows[model_id] = row;
    return row;
  }

  // Runs `body` in one write transaction; rolls back on any exception.
  template <typename Body>
  void write_transaction(const std::string& what, Body&& body) {
    if (read_only) throw Error(ErrorKind::kUsage, where(what) + ": the store is open read-only");
    // IMMEDIATE takes the write lock now, so a concurrent writer waits (busy_timeout) here
    // instead of failing half-way through the batch.
    exec("BEGIN IMMEDIATE", what);
    try {
      body();
      exec("COMMIT", what);
    } catch (...) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      model_rows.clear();  // rows added in the rolled-back transaction are gone
      throw;
    }
  }

  void open(const fs::path& store_path, Mode mode, int busy_timeout_ms) {
    path = store_path;
    read_only = mode == Mode::kReadOnly;
    std::error_code ec;
    if (read_only) {
      if (!fs::exists(path, ec)) {
        throw Error(ErrorKind::kIndex,
                    "no index at " + path.string() + " (run `mmsearch index DIR` to create one)");
      }
    } else if (path.has_parent_path()) {
      fs::create_directories(path.parent_path(), ec);
      if (ec) {
        throw Error(ErrorKind::kIndex,
                    "cannot create " + path.parent_path().string() + ": " + ec.message());
      }
    }
    const int flags =
        (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
        SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
      const std::string message = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      db = nullptr;
      throw Error(ErrorKind::kIndex, "cannot open index " + path.string() + ": " + message);
    }
    sqlite3_busy_timeout(db, busy_timeout_ms);
    sqlite3_extended_result_codes(db, 0);

    // Reading the header here turns "file is not a database" into a clear error up front.
    std::int64_t application_id = 0, user_tables = 0;
    try {
      Statement app(db, "PRAGMA application_id", where("open"));
      if (app.step()) application_id = app.int64(0);
      Statement tables(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                       where("open"));
      if (tables.step()) user_tables = tables.int64(0);
    } catch (const Error& e) {
      throw Error(ErrorKind::kIndex, "index " + path.string() +
                                         " is not an mmsearch index or is corrupt (" + e.what() +
                                         "); move it away to start a new index");
    }
    if (user_tables > 0 && application_id != kApplicationId) {
      throw Error(ErrorKind::kIndex,
                  "index " + path.string() +
                      " is an SQLite database but not an mmsearch index; refusing to touch it");
    }

    if (!read_only) {
      // WAL: readers (a query) run while the indexer writes, and a crash can only lose the
      // uncommitted tail of the log. synchronous=FULL syncs the WAL at every commit, so a
      // committed batch survives power loss too, not only kill -9 (NORMAL would keep it
      // after kill -9 but not after power loss). One fsync per batch is cheap next to
      // embedding the batch.
      // 16 KiB pages (only takes effect on a new, empty database): vector blobs span fewer
      // overflow pages.
      if (user_tables == 0) exec("PRAGMA page_size = 16384", "set page size");
      exec("PRAGMA journal_mode = WAL", "enable WAL");
    }
    exec("PRAGMA synchronous = FULL", "set synchronous");
    // Loading a scope reads every vector blob (a BLIP-2 image_proj block is 32 KiB): a 64 MiB
    // page cache and memory-mapped reads cut that load time several-fold over 4 KiB read()s.
    exec("PRAGMA cache_size = -65536", "set cache size");
    exec("PRAGMA mmap_size = 1073741824", "set mmap size");
    exec("PRAGMA foreign_keys = ON", "enable foreign keys");

    if (user_tables == 0) {
      if (read_only) {
        throw Error(ErrorKind::kIndex, "index " + path.string() + " is empty");
      }
      write_transaction("create schema", [&] {
        exec(kSchemaV1, "create schema");
        const std::string version_sql =
            "INSERT INTO meta (key, value) VALUES ('schema_version', '" +
            std::to_string(kSchemaVersion) + "')";
        exec(version_sql.c_str(), "create schema");
        exec(("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str(),
             "create schema");
        exec(kTranslationsTable, "create schema");
      });
      has_translations = true;
      return;
    }
    std::int64_t version = 0;
    {
      Statement q(db, "SELECT value FROM meta WHERE key = 'schema_version'",
                  where("read schema version"));
      if (q.step()) version = std::atoll(q.text(0).c_str());
    }
    if (version > kSchemaVersion) {
      throw Error(ErrorKind::kIndex,
                  "index " + path.string() + " has schema version " + std::to_string(version) +
                      ", written by a newer mmsearch; this mmsearch reads up to version " +
                      std::to_string(kSchemaVersion) +
                      ". Upgrade mmsearch, or set MMSEARCH_HOME to use another index");
    }
    if (version < 1) {
      throw Error(ErrorKind::kIndex,
                  "index " + path.string() + " has no valid schema version; it is corrupt");
    }
    // Migrations from older versions go here, one transaction each, when version 2 exists.
    ensure_translations_table();
  }

  // The translation cache (issue 6) is an optional table of schema version 1: stores made
  // before it simply lack it. Read-write opens add it (idempotent, so concurrent openers are
  // fine); read-only opens never write, and their lookups just miss when it is absent.
  // Checking first keeps a read-write open of an up-to-date store from taking the write lock.
  void ensure_translations_table() {
    {
      Statement q(db,
                  "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                  "name = 'translations'",
                  where("open"));
      has_translations = q.step() && q.int64(0) > 0;
    }
    if (has_translations || read_only) return;
    exec(kTranslationsTable, "create translation cache");
    has_translations = true;
  }
};

IndexStore::IndexStore(const std::filesystem::path& path, Mode mode, int busy_timeout_ms)
    : impl_(std::make_unique<Impl>()) {
  try {
    impl_->open(path, mode, busy_timeout_ms);
  } catch (...) {
    if (impl_->db) sqlite3_close(impl_->db);
    impl_->db = nullptr;
    throw;
  }
}

IndexStore::~IndexStore() {
  if (impl_ && impl_->db) sqlite3_close(impl_->db);
}
IndexStore::IndexStore(IndexStore&&) noexcept = default;
IndexStore& IndexStore::operator=(IndexStore&& other) noexcept {
  if (this != &other) {
    if (impl_ && impl_->db) sqlite3_close(impl_->db);
    impl_ = std::move(other.impl_);
  }
  return *this;
}

const std::filesystem::path& IndexStore::path() const { return impl_->path; }

namespace {
void validate(const IndexedFile& file) {
  const std::string& path = file.state.path;
  for (const StoredVectors& v : file.vectors) {
    if (v.rows <= 0 || v.cols <= 0 ||
        v.values.size() != static_cast<std::size_t>(v.rows) * v.cols) {
      throw Error(ErrorKind::kUsage, path + ": " + to_string(v.kind) + " vectors have " +
                                         std::to_string(v.values.size()) + " values for " +
                                         std::to_string(v.rows) + " x " + std::to_string(v.cols));
    }
    if (is_caption_kind(v.kind)) {
      if (v.caption_index < 0 || v.caption_index >= static_cast<int>(file.captions.size())) {
        throw Error(ErrorKind::kUsage, path + ": " + to_string(v.kind) + " vectors name caption " +
                                           std::to_string(v.caption_index) + " of " +
                                           std::to_string(file.captions.size()));
      }
    } else if (v.caption_index != -1) {
      throw Error(ErrorKind::kUsage,
                  path + ": " + to_string(v.kind) + " vectors are per image (caption_index -1)");
    }
  }
}
}  // namespace

void IndexStore::upsert_batch(const std::string& model_id, const std::vector<IndexedFile>& files) {
  for (const IndexedFile& file : files) validate(file);
  Impl& s = *impl_;
  s.write_transaction("write batch", [&] {
    const std::int64_t model = s.ensure_model_row(model_id);
    // Deleting first lets the cascade drop old captions and vectors, so an upsert leaves
    // exactly what it was given.
    Statement remove(s.db, "DELETE FROM files WHERE model = ?1 AND path = ?2", s.where("write"));
    Statement insert(s.db,
                     "INSERT INTO files (model, path, size, mtime_ns, content_hash, category, "
                     "indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%s','now'))",
                     s.where("write"));
    Statement caption(s.db,
                      "INSERT INTO captions (file_id, caption_index, caption, caption_en) "
                      "VALUES (?1, ?2, ?3, ?4)",
                      s.where("write"));
    Statement vectors(s.db,
                      "INSERT INTO vectors (file_id, caption_index, kind, rows, cols, data) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                      s.where("write"));
    for (const IndexedFile& file : files) {
      const std::string path = normalize_index_path(file.state.path);
      remove.bind(1, model).bind(2, path).run();
      insert.bind(1, model)
          .bind(2, path)
          .bind(3, file.state.size)
          .bind(4, file.state.mtime_ns)
          .bind(5, file.state.content_hash)
          .bind(6, file.category)
          .run();
      const std::int64_t file_id = sqlite3_last_insert_rowid(s.db);
      for (std::size_t c = 0; c < file.captions.size(); ++c) {
        caption.bind(1, file_id)
            .bind(2, static_cast<std::int64_t>(c))
            .bind(3, file.captions[c].text);
        if (file.captions[c].text_en.empty()) {
          caption.bind_null(4);
        } else {
          caption.bind(4, file.captions[c].text_en);
        }
        caption.run();
      }
      for (const StoredVectors& v : file.vectors) {
        vectors.bind(1, file_id)
            .bind(2, static_cast<std::int64_t>(v.caption_index))
            .bind(3, std::string(to_string(v.kind)))
            .bind(4, static_cast<std::int64_t>(v.rows))
            .bind(5, static_cast<std::int64_t>(v.cols))
            .bind_blob(6, v.values.data(), v.values.size() * sizeof(float))
            .run();
      }
    }
  });
}

std::int64_t IndexStore::remove_paths(const std::string& model_id,
                                      const std::vector<std::string>& paths) {
  Impl& s = *impl_;
  std::int64_t removed = 0;
  if (paths.empty()) return 0;
  s.write_transaction("remove files", [&] {
    const auto model = s.model_row(model_id);
    if (!model) return;
    Statement remove(s.db, "DELETE FROM files WHERE model = ?1 AND path = ?2",
                     s.where("remove files"));
    for (const std::string& p : paths) {
      remove.bind(1, *model).bind(2, normalize_index_path(p)).run();
      removed += sqlite3_changes(s.db);
    }
  });
  return removed;
}

std::vector<std::string> IndexStore::remove_missing(const std::string& model_id,
                                                    const std::filesystem::path& scope) {
  std::vector<std::string> missing;
  for (const auto& [path, state] : file_states(model_id, scope)) {
    std::error_code ec;
    // An error other than "not found" (e.g. a permission problem on a parent) is not proof
    // that the file is gone: keep it.
    const bool exists = fs::exists(fs::path(path), ec);
    if (!exists && !ec) missing.push_back(path);
  }
  std::sort(missing.begin(), missing.end());
  remove_paths(model_id, missing);
  return missing;
}

std::optional<FileState> IndexStore::find_file(const std::string& model_id,
                                               const std::filesystem::path& path) const {
  Impl& s = *impl_;
  const auto model = s.model_row(model_id);
  if (!model) return std::nullopt;
  Statement q(s.db,
              "SELECT path, size, mtime_ns, content_hash FROM files WHERE model = ?1 AND path = ?2",
              s.where("find file"));
  q.bind(1, *model).bind(2, normalize_index_path(path));
  if (!q.step()) return std::nullopt;
  return FileState{q.text(0), q.int64(1), q.int64(2), q.text(3)};
}

std::unordered_map<std::string, FileState> IndexStore::file_states(
    const std::string& model_id, const std::filesystem::path& scope) const {
  Impl& s = *impl_;
  std::unordered_map<std::string, FileState> states;
  const auto model = s.model_row(model_id);
  if (!model) return states;
  const ScopeRange range = scope_range(scope);
  Statement q(s.db,
              (std::string("SELECT f.path, f.size, f.mtime_ns, f.content_hash FROM files f "
                           "WHERE f.model = ?1 AND ") +
               kScopeClause)
                  .c_str(),
              s.where("list file states"));
  q.bind(1, *model).bind(2, range.exact).bind(3, range.low).bind(4, range.high);
  while (q.step()) {
    FileState state{q.text(0), q.int64(1), q.int64(2), q.text(3)};
    states.emplace(state.path, std::move(state));
  }
  return states;
}

std::optional<IndexedFile> IndexStore::find_by_content_hash(const std::string& model_id,
                                                            const std::string& content_hash,
                                                            std::int64_t size) const {
  Impl& s = *impl_;
  const auto model = s.model_row(model_id);
  if (!model) return std::nullopt;
  Statement q(s.db,
              "SELECT id, path, size, mtime_ns, content_hash, category FROM files "
              "WHERE model = ?1 AND content_hash = ?2 AND size = ?3 ORDER BY id LIMIT 1",
              s.where("find by content hash"));
  q.bind(1, *model).bind(2, content_hash).bind(3, size);
  if (!q.step()) return std::nullopt;
  const std::int64_t file_id = q.int64(0);
  IndexedFile file;
  file.state = FileState{q.text(1), q.int64(2), q.int64(3), q.text(4)};
  file.category = q.text(5);
  Statement captions(s.db,
                     "SELECT caption, caption_en FROM captions WHERE file_id = ?1 "
                     "ORDER BY caption_index",
                     s.where("find by content hash"));
  captions.bind(1, file_id);
  while (captions.step()) file.captions.push_back({captions.text(0), captions.text(1)});
  Statement vectors(s.db,
                    "SELECT kind, caption_index, rows, cols, data FROM vectors WHERE file_id = ?1 "
                    "ORDER BY kind, caption_index",
                    s.where("find by content hash"));
  vectors.bind(1, file_id);
  while (vectors.step()) {
    StoredVectors v;
    v.kind = vector_kind_from_string(vectors.text(0));
    v.caption_index = static_cast<int>(vectors.int64(1));
    v.rows = static_cast<int>(vectors.int64(2));
    v.cols = static_cast<int>(vectors.int64(3));
    const std::size_t n = static_cast<std::size_t>(v.rows) * v.cols;
    if (static_cast<std::size_t>(vectors.bytes(4)) != n * sizeof(float)) {
      throw Error(ErrorKind::kIndex, s.where("vectors of " + file.state.path + " are corrupt"));
    }
    v.values.resize(n);
    if (n > 0) std::memcpy(v.values.data(), vectors.blob(4), n * sizeof(float));
    file.vectors.push_back(std::move(v));
  }
  return file;
}

std::vector<FileListing> IndexStore::list_files(const std::string& model_id,
                                                const std::filesystem::path& scope) const {
  Impl& s = *impl_;
  std::vector<FileListing> files;
  const auto model = s.model_row(model_id);
  if (!model) return files;
  const ScopeRange range = scope_range(scope);
  // One query with a LEFT JOIN (rows come grouped by file), rather than one query per file.
  Statement q(s.db,
              (std::string("SELECT f.id, f.path, f.size, f.mtime_ns, f.content_hash, f.category, "
                           "c.caption, c.caption_en, c.caption_index FROM files f "
                           "LEFT JOIN captions c ON c.file_id = f.id WHERE f.model = ?1 AND ") +
               kScopeClause + " ORDER BY f.path, c.caption_index")
                  .c_str(),
              s.where("list files"));
  q.bind(1, *model).bind(2, range.exact).bind(3, range.low).bind(4, range.high);
  while (q.step()) {
    const std::int64_t id = q.int64(0);
    if (files.empty() || files.back().file_id != id) {
      FileListing f;
      f.file_id = id;
      f.state = FileState{q.text(1), q.int64(2), q.int64(3), q.text(4)};
      f.category = q.text(5);
      files.push_back(std::move(f));
    }
    if (!q.is_null(8)) files.back().captions.push_back({q.text(6), q.text(7)});
  }
  return files;
}

LoadedVectors IndexStore::load_vectors(const std::string& model_id,
                                       const std::filesystem::path& scope, VectorKind kind) const {
  Impl& s = *impl_;
  LoadedVectors loaded;
  const auto model = s.model_row(model_id);
  if (!model) return loaded;
  const ScopeRange range = scope_range(scope);
  // For image kinds the row's caption is the file's first caption (caption_index 0), for
  // caption kinds the caption the vectors were computed from.
  Statement q(
      s.db,
      (std::string("SELECT f.id, f.path, f.category, v.caption_index, c.caption, c.caption_en, "
                   "v.rows, v.cols, v.data FROM files f "
                   "JOIN vectors v ON v.file_id = f.id AND v.kind = ?5 "
                   "LEFT JOIN captions c ON c.file_id = f.id AND "
                   "c.caption_index = max(v.caption_index, 0) WHERE f.model = ?1 AND ") +
       kScopeClause + " ORDER BY f.path, v.caption_index")
          .c_str(),
      s.where("load vectors"));
  q.bind(1, *model).bind(2, range.exact).bind(3, range.low).bind(4, range.high);
  q.bind(5, std::string(to_string(kind)));
  // Counting first lets the matrix be allocated once: growing a vector of several hundred MB
  // by doubling costs more (page faults, copies) than SQLite's reading of the blobs.
  std::int64_t expected_rows = 0;
  {
    Statement count(s.db,
                    (std::string("SELECT count(*) FROM files f JOIN vectors v ON v.file_id = f.id "
                                 "AND v.kind = ?5 WHERE f.model = ?1 AND ") +
                     kScopeClause)
                        .c_str(),
                    s.where("load vectors"));
    count.bind(1, *model).bind(2, range.exact).bind(3, range.low).bind(4, range.high);
    count.bind(5, std::string(to_string(kind)));
    if (count.step()) expected_rows = count.int64(0);
  }
  loaded.owners.reserve(static_cast<std::size_t>(expected_rows));
  Embeddings& e = loaded.embeddings;
  while (q.step()) {
    const int rows = static_cast<int>(q.int64(6));
    const int cols = static_cast<int>(q.int64(7));
    const std::string path = q.text(1);
    if (e.count == 0) {
      e.vectors_per_item = rows;
      e.dim = cols;
      if (rows > 0 && cols > 0) {
        e.values.reserve(static_cast<std::size_t>(expected_rows) * rows * cols);
      }
    } else if (rows != e.vectors_per_item || cols != e.dim) {
      throw Error(ErrorKind::kIndex,
                  s.where(std::string(to_string(kind)) + " vectors of " + path + " are " +
                          std::to_string(rows) + " x " + std::to_string(cols) + ", others " +
                          std::to_string(e.vectors_per_item) + " x " + std::to_string(e.dim) +
                          "; re-index with `mmsearch index`"));
    }
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    if (rows <= 0 || cols <= 0 || static_cast<std::size_t>(q.bytes(8)) != n * sizeof(float)) {
      throw Error(ErrorKind::kIndex, s.where("vectors of " + path + " are corrupt"));
    }
    // memcpy, not a float* cast: SQLite does not promise aligned blobs.
    const std::size_t offset = e.values.size();
    e.values.resize(offset + n);
    std::memcpy(e.values.data() + offset, q.blob(8), n * sizeof(float));
    ++e.count;
    VectorOwner owner;
    owner.file_id = q.int64(0);
    owner.path = path;
    owner.category = q.text(2);
    owner.caption_index = static_cast<int>(q.int64(3));
    owner.caption = q.text(4);
    owner.caption_en = q.text(5);
    loaded.owners.push_back(std::move(owner));
  }
  return loaded;
}

std::vector<ModelUsage> IndexStore::models_in_scope(const std::filesystem::path& scope) const {
  Impl& s = *impl_;
  const ScopeRange range = scope_range(scope);
  Statement q(s.db,
              (std::string("SELECT m.model_id, count(*) AS n FROM files f "
                           "JOIN models m ON m.id = f.model WHERE ?1 = ?1 AND ") +
               kScopeClause + " GROUP BY m.model_id ORDER BY n DESC, m.model_id")
                  .c_str(),
              s.where("models in scope"));
  q.bind(1, std::int64_t{0}).bind(2, range.exact).bind(3, range.low).bind(4, range.high);
  std::vector<ModelUsage> usage;
  while (q.step()) usage.push_back({q.text(0), q.int64(1)});
  return usage;
}

std::unordered_map<std::string, std::string> IndexStore::find_translations(
    const std::string& translator_id, const std::vector<std::string>& texts) const {
  std::unordered_map<std::string, std::string> found;
  const Impl& s = *impl_;
  if (!s.has_translations || texts.empty()) return found;
  Statement q(s.db, "SELECT translation FROM translations WHERE translator_id = ?1 AND text = ?2",
              s.where("translation lookup"));
  for (const std::string& text : texts) {
    if (found.count(text)) continue;
    q.bind(1, translator_id).bind(2, text);
    if (q.step()) found.emplace(text, q.text(0));
    q.reset();
  }
  return found;
}

void IndexStore::put_translations(const std::string& translator_id,
                                  const std::vector<std::pair<std::string, std::string>>& pairs) {
  if (pairs.empty()) return;
  if (translator_id.empty()) {
    throw Error(ErrorKind::kUsage, impl_->where("store translations") + ": empty translator id");
  }
  Impl& s = *impl_;
  s.write_transaction("store translations", [&] {
    Statement put(s.db,
                  "INSERT OR REPLACE INTO translations (translator_id, text, translation) "
                  "VALUES (?1, ?2, ?3)",
                  s.where("store translations"));
    for (const auto& [text, translation] : pairs) {
      put.bind(1, translator_id).bind(2, text).bind(3, translation).run();
    }
  });
}

std::vector<std::string> IndexStore::models() const {
  Impl& s = *impl_;
  Statement q(s.db, "SELECT model_id FROM models ORDER BY model_id", s.where("list models"));
  std::vector<std::string> ids;
  while (q.step()) ids.push_back(q.text(0));
  return ids;
}

std::string IndexStore::integrity_check() const {
  Impl& s = *impl_;
  Statement q(s.db, "PRAGMA integrity_check", s.where("integrity check"));
  std::string result;
  while (q.step()) {
    if (!result.empty()) result += "\n";
    result += q.text(0);
  }
  return result;
}

}  // namespace mmsearch
