// IndexStore: opening, lifetime, writing and maintenance. Reads are in store_queries.cpp, the
// translation cache in store_translations.cpp, the file format in store_schema.cpp.
#include <algorithm>
#include <system_error>

#include "mmsearch/index.h"
#include "store_impl.h"

namespace mmsearch {
namespace fs = std::filesystem;

IndexStore::IndexStore(const std::filesystem::path& path, Mode mode, int busy_timeout_ms)
    : impl_(std::make_unique<Impl>(
          store_schema::open_database(path, mode == Mode::kReadOnly, busy_timeout_ms),
          mode == Mode::kReadOnly)) {}

IndexStore::~IndexStore() = default;
IndexStore::IndexStore(IndexStore&&) noexcept = default;
IndexStore& IndexStore::operator=(IndexStore&&) noexcept = default;

const std::filesystem::path& IndexStore::path() const { return impl_->db.path(); }

int IndexStore::schema_version() const { return impl_->schema_version; }

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
    sqlite::Statement remove(s.db, "DELETE FROM files WHERE model = ?1 AND path = ?2", "write");
    sqlite::Statement insert(s.db,
                             "INSERT INTO files (model, path, size, mtime_ns, content_hash, "
                             "category, indexed_at) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%s','now'))",
                             "write");
    sqlite::Statement caption(s.db,
                              "INSERT INTO captions (file_id, caption_index, caption, caption_en) "
                              "VALUES (?1, ?2, ?3, ?4)",
                              "write");
    sqlite::Statement vectors(s.db,
                              "INSERT INTO vectors (file_id, caption_index, kind, rows, cols, "
                              "data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              "write");
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
      const std::int64_t file_id = s.db.last_insert_rowid();
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
    sqlite::Statement remove(s.db, "DELETE FROM files WHERE model = ?1 AND path = ?2",
                             "remove files");
    for (const std::string& p : paths) {
      remove.bind(1, *model).bind(2, normalize_index_path(p)).run();
      removed += s.db.changes();
    }
  });
  return removed;
}

std::vector<std::string> IndexStore::remove_missing(const std::string& model_id,
                                                    const std::filesystem::path& scope) {
  std::vector<std::string> missing;
  for (const auto& [path, state] : file_states(model_id, scope)) {
    if (is_gone_from_disk(path)) missing.push_back(path);
  }
  std::sort(missing.begin(), missing.end());
  remove_paths(model_id, missing);
  return missing;
}

RemovedRows IndexStore::remove_model(const std::string& model_id) {
  Impl& s = *impl_;
  RemovedRows removed;
  const std::string what = "remove model " + model_id;
  s.write_transaction(what, [&] {
    const auto model = s.model_row(model_id);
    if (!model) return;
    // Counted before deleting: the changes count of a DELETE leaves out cascaded rows.
    sqlite::Statement count(s.db,
                            "SELECT count(*), "
                            "(SELECT count(*) FROM captions c JOIN files f ON f.id = c.file_id "
                            "WHERE f.model = ?1), "
                            "(SELECT count(*) FROM vectors v JOIN files f ON f.id = v.file_id "
                            "WHERE f.model = ?1) FROM files WHERE model = ?1",
                            what);
    count.bind(1, *model);
    if (count.step()) removed = {count.int64(0), count.int64(1), count.int64(2)};
    count.reset();
    // Files, and with them captions and vectors, cascade from the model row.
    sqlite::Statement remove(s.db, "DELETE FROM models WHERE id = ?1", what);
    remove.bind(1, *model).run();
  });
  return removed;
}

std::int64_t IndexStore::free_bytes() const {
  const sqlite::Database& db = impl_->db;
  return db.query_int("PRAGMA freelist_count", "count free pages") *
         db.query_int("PRAGMA page_size", "read page size");
}

std::int64_t IndexStore::vacuum() {
  Impl& s = *impl_;
  if (s.read_only) {
    throw Error(ErrorKind::kUsage, s.where("vacuum") + ": the store is open read-only");
  }
  const auto used_bytes = [&] {
    return s.db.query_int("PRAGMA page_count", "vacuum") *
           s.db.query_int("PRAGMA page_size", "vacuum");
  };
  const std::int64_t before = used_bytes();
  s.db.exec("VACUUM", "vacuum");
  // In WAL mode the rewritten pages sit in the log until a checkpoint; TRUNCATE copies them
  // into the database file and empties the log, so the disk space really comes back. Readers
  // still on old pages can keep the log from being emptied; then the next checkpoint does it.
  s.db.query_int("PRAGMA wal_checkpoint(TRUNCATE)", "vacuum");
  return before - used_bytes();
}

std::string IndexStore::integrity_check() const {
  sqlite::Statement q(impl_->db, "PRAGMA integrity_check", "integrity check");
  std::string result;
  while (q.step()) {
    if (!result.empty()) result += "\n";
    result += q.text(0);
  }
  return result;
}

}  // namespace mmsearch
