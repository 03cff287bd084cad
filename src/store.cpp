// IndexStore: opening, lifetime, writing and maintenance. Reads are in store_queries.cpp, the
// translation cache in store_translations.cpp, the file format in store_schema.cpp.
#include <algorithm>
#include <system_error>

#include "mmsearch/index.h"
#include "mmsearch/segment.h"
#include "store_impl.h"

namespace mmsearch {
namespace fs = std::filesystem;

IndexStore::IndexStore(const std::filesystem::path& path, Mode mode, int busy_timeout_ms)
    : impl_(std::make_unique<Impl>(
          store_schema::open_database(path, mode == Mode::kReadOnly, busy_timeout_ms),
          mode == Mode::kReadOnly)) {
  impl_->recover_segments();
}

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
  // Row r of the batch's segment is the r-th file by path, so a segment reads in path order.
  std::vector<IndexedFile> normalized;
  normalized.reserve(files.size());
  std::vector<const IndexedFile*> sorted;
  for (const IndexedFile& file : files) sorted.push_back(&file);
  std::stable_sort(sorted.begin(), sorted.end(), [](const IndexedFile* a, const IndexedFile* b) {
    return normalize_index_path(a->state.path) < normalize_index_path(b->state.path);
  });
  std::vector<std::string> paths;
  for (const IndexedFile* file : sorted) paths.push_back(normalize_index_path(file->state.path));
  std::int64_t model = 0;
  std::vector<fs::path> written;
  try {
    s.write_transaction("write batch", [&] {
      model = s.ensure_model_row(model_id);
      std::optional<std::int64_t> segment;
      if (s.has_segments()) segment = s.write_segment(model, model_id, sorted, {}, written);
      // Deleting first lets the cascade drop old captions (and the trigger release the old
      // segment row), so an upsert leaves exactly what it was given.
      sqlite::Statement remove(s.db, "DELETE FROM files WHERE model = ?1 AND path = ?2", "write");
      sqlite::Statement insert(s.db,
                               "INSERT INTO files (model, path, size, mtime_ns, content_hash, "
                               "category, indexed_at, segment_id, segment_row) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%s','now'), ?7, ?8)",
                               "write");
      sqlite::Statement insert_v2(s.db,
                                  "INSERT INTO files (model, path, size, mtime_ns, content_hash, "
                                  "category, indexed_at) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%s','now'))",
                                  "write");
      sqlite::Statement caption(
          s.db,
          "INSERT INTO captions (file_id, caption_index, caption, caption_en) "
          "VALUES (?1, ?2, ?3, ?4)",
          "write");
      for (std::size_t r = 0; r < sorted.size(); ++r) {
        const IndexedFile& file = *sorted[r];
        remove.bind(1, model).bind(2, paths[r]).run();
        sqlite::Statement& row = s.has_segments() ? insert : insert_v2;
        row.bind(1, model)
            .bind(2, paths[r])
            .bind(3, file.state.size)
            .bind(4, file.state.mtime_ns)
            .bind(5, file.state.content_hash)
            .bind(6, file.category);
        if (s.has_segments()) {
          if (segment && !file.vectors.empty()) {
            row.bind(7, *segment).bind(8, static_cast<std::int64_t>(r));
          } else {
            row.bind_null(7).bind_null(8);
          }
        }
        row.run();
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
      }
    });
  } catch (...) {
    // The transaction rolled back: nothing names the new segment.
    for (const fs::path& p : written) {
      std::error_code ec;
      fs::remove(p, ec);
    }
    throw;
  }
  s.after_write(model, model_id);
}

void IndexStore::set_vector_encoding(VectorEncoding encoding) { impl_->encoding = encoding; }

VectorEncoding IndexStore::vector_encoding() const { return impl_->encoding; }

std::int64_t IndexStore::remove_paths(const std::string& model_id,
                                      const std::vector<std::string>& paths) {
  Impl& s = *impl_;
  std::int64_t removed = 0;
  if (paths.empty()) return 0;
  std::optional<std::int64_t> model;
  s.write_transaction("remove files", [&] {
    model = s.model_row(model_id);
    if (!model) return;
    sqlite::Statement remove(s.db, "DELETE FROM files WHERE model = ?1 AND path = ?2",
                             "remove files");
    for (const std::string& p : paths) {
      remove.bind(1, *model).bind(2, normalize_index_path(p)).run();
      removed += s.db.changes();
    }
  });
  if (model && removed > 0) s.after_write(*model, model_id);
  return removed;
}

RemovedRows IndexStore::remove_model(const std::string& model_id) {
  Impl& s = *impl_;
  RemovedRows removed;
  const std::string what = "remove model " + model_id;
  std::vector<fs::path> segment_files;
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
    if (s.has_segments()) {
      // Vector blocks in segments: the entries of the rows live files still use.
      sqlite::Statement segments(s.db, "SELECT id, file_name FROM segments WHERE model = ?1", what);
      sqlite::Statement live(s.db, "SELECT segment_row FROM files WHERE segment_id = ?1", what);
      segments.bind(1, *model);
      while (segments.step()) {
        segment_files.push_back(s.store_file(segments.text(1)));
        const auto segment = s.segment(segments.text(1));
        std::vector<char> used(segment->header().items, 0);
        live.bind(1, segments.int64(0));
        while (live.step()) {
          const std::int64_t row = live.int64(0);
          if (row >= 0 && row < static_cast<std::int64_t>(used.size())) used[row] = 1;
        }
        live.reset();
        for (const SegmentKind& k : segment->header().kinds) {
          const SegmentArray& owners =
              *segment->header().find_array(segment_array_name(k.kind, "owner"));
          segment->verify_rows(owners, 0, owners.rows);
          const auto* pairs = reinterpret_cast<const std::int32_t*>(segment->data(owners));
          for (std::int64_t e = 0; e < owners.rows; ++e) {
            if (pairs[2 * e] >= 0 && pairs[2 * e] < static_cast<std::int64_t>(used.size()) &&
                used[pairs[2 * e]]) {
              ++removed.vectors;
            }
          }
        }
      }
    }
    if (s.has_ann()) {
      sqlite::Statement anns(s.db, "SELECT file_name FROM ann_indexes WHERE model = ?1", what);
      anns.bind(1, *model);
      while (anns.step()) segment_files.push_back(s.store_file(anns.text(0)));
    }
    // Files (with captions and vectors), segments and indexes cascade from the model row.
    sqlite::Statement remove(s.db, "DELETE FROM models WHERE id = ?1", what);
    remove.bind(1, *model).run();
  });
  // The segment files go once nothing names them; their space comes back at once.
  for (const fs::path& p : segment_files) {
    std::error_code ec;
    fs::remove(p, ec);
  }
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
