// Internal: the state behind an IndexStore, shared by the files that implement its parts
// (store.cpp: opening and writing, store_queries.cpp: reading, store_translations.cpp: the
// translation cache).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "mmsearch/ann_index.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/segment.h"
#include "sqlite_db.h"
#include "store_schema.h"

namespace mmsearch {

// The half-open range of stored paths under a scope: [scope + "/", scope + "0"), since '0' is
// the byte after '/'. Byte-wise (BINARY) comparison makes this exact: "/a/b" never matches
// "/a/bc" or "/a/b-c", and no LIKE wildcard or case folding gets in the way. The scope's own
// path matches too (a scope may be a single file).
struct ScopeRange {
  std::string exact;
  std::string low;
  std::string high;
};

inline ScopeRange scope_range(const std::filesystem::path& scope) {
  std::string s = normalize_index_path(scope);
  if (s == "/") return {s, "/", "0"};
  return {s, s + "/", s + "0"};
}

// Matches the files f under a scope bound as ?2, ?3, ?4 by bind_scope().
constexpr const char* kScopeClause = "(f.path = ?2 OR (f.path >= ?3 AND f.path < ?4))";

inline void bind_scope(sqlite::Statement& q, const ScopeRange& range) {
  q.bind(2, range.exact).bind(3, range.low).bind(4, range.high);
}

// Whether a file name read from the database names a file in the segments folder itself.
inline bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\0", 2)) == std::string::npos;
}

// The floats of an inline vector block (stores older than schema 3) of `rows` x `cols` held
// in `bytes`, or nullopt for a damaged shape: checked before anything is sized by it. No store
// writes an empty block; one of 0 rows reached the segment writer as no values (fuzz_store),
// and a count past int's range must not wrap around into a plausible one.
inline std::optional<std::size_t> inline_block_floats(std::int64_t rows, std::int64_t cols,
                                                      std::size_t bytes) {
  constexpr std::int64_t kMaxSide = std::int64_t{1} << 24;
  if (rows < 1 || cols < 1 || rows > kMaxSide || cols > kMaxSide) return std::nullopt;
  const auto n = static_cast<std::size_t>(rows * cols);
  if (bytes != n * sizeof(float)) return std::nullopt;
  return n;
}

// A fresh random name for a file beside the segments ("<16 hex><extension>").
std::string random_store_file_name(const char* extension);
// Throws Error(kIndex) when a segment's owner array names an item the segment does not hold.
void check_owner_item(const SegmentFile& segment, std::int64_t item);

// A segment or index file that a reader's snapshot names but that is gone. A writer that
// committed after the snapshot began may have deleted it (its last live row was replaced, or a
// merge moved its rows), before the reader mapped it: a race, not damage (found by the soak).
// The read runs again on a fresh snapshot (read_again_if_a_file_vanished); a file that stays
// missing is damage, and the message says so.
class VanishedStoreFile : public Error {
 public:
  using Error::Error;
};

// Opens a segment or index file the database names with `open(path)`; when that fails because
// the file no longer exists, throws VanishedStoreFile instead, for the caller's read to retry.
template <typename Open>
auto open_store_file(const std::filesystem::path& path, Open&& open) -> decltype(open(path)) {
  try {
    return open(path);
  } catch (const Error& e) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec) && !ec) throw VanishedStoreFile(e.kind(), e.what());
    throw;
  }
}

// Runs `read` (which takes its own snapshot) and runs it again, up to 7 more times, when a file
// it needed vanished under it.
template <typename Read>
auto read_again_if_a_file_vanished(Read&& read) -> decltype(read()) {
  for (int attempt = 1;; ++attempt) {
    try {
      return read();
    } catch (const VanishedStoreFile&) {
      if (attempt == 8) throw;
    }
  }
}

// A read snapshot: every SELECT until the end sees one committed state of the store.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(const sqlite::Database& db) : db_(const_cast<sqlite::Database&>(db)) {
    db_.exec("BEGIN", "begin read");
  }
  ~ReadSnapshot() {
    try {
      db_.exec("COMMIT", "end read");
    } catch (...) {
    }
  }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;

 private:
  sqlite::Database& db_;
};

struct IndexStore::Impl {
  Impl(store_schema::OpenedDatabase opened, bool opened_read_only)
      : db(std::move(opened.db)),
        read_only(opened_read_only),
        schema_version(opened.schema_version),
        has_translations(opened.has_translations) {}

  sqlite::Database db;
  bool read_only = false;
  int schema_version = 0;
  bool has_translations = false;

  // Writes of this connection encode vectors so (IndexStore::set_vector_encoding).
  VectorEncoding encoding = VectorEncoding::kFloat16;
  // Segments mapped by this connection, by file name: a segment never changes once written,
  // so a mapping stays valid for as long as anyone holds it, even after the file is deleted.
  mutable std::map<std::string, std::shared_ptr<const SegmentFile>> mapped_segments;

  std::string where(const std::string& what) const { return db.where(what); }

  // The vectors of `kind` still in the BLOB table of a store older than schema 3 (all of
  // them for a read-only open of such a store), ordered by path (store_queries.cpp).
  LoadedVectors load_inline_vectors(std::int64_t model_row, const std::filesystem::path& scope,
                                    VectorKind kind) const;

  // --- segments (store_segments.cpp) ---
  bool has_segments() const { return schema_version >= 3; }
  std::filesystem::path segments_dir() const;
  // segments_dir() / name for a file name read from the database (a segment or an index).
  // Throws Error(kIndex) for a name that is not a plain file name ("../x", "/x", "a/b", ""):
  // a damaged or hostile store must never make mmsearch read, or delete, a file elsewhere.
  std::filesystem::path store_file(const std::string& name) const {
    if (!is_plain_file_name(name)) {
      throw Error(ErrorKind::kIndex, where("open vector segment") +
                                         ": the store names a segment '" + name +
                                         "' outside its folder; it is damaged");
    }
    return segments_dir() / name;
  }
  // The mapped segment `file_name`; throws Error(kIndex) when it is missing or damaged.
  std::shared_ptr<const SegmentFile> segment(const std::string& file_name) const;
  std::shared_ptr<const SegmentFile> segment_by_id(std::int64_t segment_id) const;
  // Writes one segment holding the vectors of `files` (row r = files[r]) and its row; inside
  // the caller's write transaction. Returns the segment id, or nullopt when no file has
  // vectors. The file is removed again if the transaction does not commit (see
  // PendingSegments).
  std::optional<std::int64_t> write_segment(std::int64_t model, const std::string& model_id,
                                            const std::vector<const IndexedFile*>& files,
                                            const std::map<VectorKind, VectorEncoding>& encodings,
                                            std::vector<std::filesystem::path>& written);
  // The vectors of one file from its segment row, as upsert_batch took them (decoded).
  void read_segment_vectors(std::int64_t segment_id, std::int64_t row,
                            std::vector<StoredVectors>& out) const;
  // After a write: deletes segments no live file uses any more, then merges small or mostly
  // dead segments of `model` (tiered, bounded in size).
  void after_write(std::int64_t model, const std::string& model_id);
  // Read-write open: deletes segment files no committed row names (a crash between writing
  // a segment and committing it), and moves vectors still in the old BLOB table.
  void recover_segments();

  // Approximate-search indexes mapped by this connection, by file name (immutable like
  // segments).
  mutable std::map<std::string, std::shared_ptr<const AnnIndex>> mapped_anns;
  bool has_ann() const { return schema_version >= 4; }
  // The mapped index of (model, kind), or nullptr when there is none.
  std::shared_ptr<const AnnIndex> ann(std::int64_t model, VectorKind kind) const;

  // Fills `file` (state and category already set) with the captions and vectors of row
  // file_id (store_queries.cpp).
  void read_captions_and_vectors(std::int64_t file_id, IndexedFile& file) const;
  // The same, outside a snapshot: read again when its segment vanished between the reads.
  void read_captions_and_vectors_again_if_vanished(std::int64_t file_id, IndexedFile& file) const;
  // The bodies of IndexStore::load_vectors and sample_files, run again when a segment vanished.
  LoadedVectors load_vectors_once(const std::string& model_id, const std::filesystem::path& scope,
                                  VectorKind kind) const;
  std::vector<IndexedFile> sample_files_once(const std::string& model_id, std::int64_t count,
                                             std::uint64_t seed) const;

  // models.id of a model id, nullopt when the store does not hold it. Looked up on every call
  // rather than cached: another process may remove a model (and SQLite may then hand its id to
  // a new one), and a stale id would mix two models' vectors. The lookup costs microseconds.
  std::optional<std::int64_t> model_row(const std::string& model_id) const {
    sqlite::Statement q(db, "SELECT id FROM models WHERE model_id = ?1", "model lookup");
    q.bind(1, model_id);
    if (!q.step()) return std::nullopt;
    return q.int64(0);
  }

  std::int64_t ensure_model_row(const std::string& model_id) {
    if (auto row = model_row(model_id)) return *row;
    sqlite::Statement insert(db, "INSERT INTO models (model_id) VALUES (?1)", "add model");
    insert.bind(1, model_id).run();
    return db.last_insert_rowid();
  }

  // Runs `body` in one write transaction; rolls back when it throws.
  template <typename Body>
  void write_transaction(const std::string& what, Body&& body) {
    if (read_only) throw Error(ErrorKind::kUsage, where(what) + ": the store is open read-only");
    sqlite::Transaction transaction(db, what);
    body();
    transaction.commit();
  }
};

}  // namespace mmsearch
