// IndexStore: reading files, vectors and models.
#include <algorithm>
#include <cstring>
#include <utility>

#include "mmsearch/index.h"
#include "store_impl.h"

namespace mmsearch {
namespace {

FileState file_state(const sqlite::Statement& q, int first_column) {
  return FileState{q.text(first_column), q.int64(first_column + 1), q.int64(first_column + 2),
                   q.text(first_column + 3)};
}

}  // namespace

// Fills `file` (state and category already set) with the captions and vectors of row file_id.
void IndexStore::Impl::read_captions_and_vectors(std::int64_t file_id, IndexedFile& file) const {
  const Impl& s = *this;
  const char* what = "read file record";
  sqlite::Statement captions(
      s.db, "SELECT caption, caption_en FROM captions WHERE file_id = ?1 ORDER BY caption_index",
      what);
  captions.bind(1, file_id);
  while (captions.step()) file.captions.push_back({captions.text(0), captions.text(1)});
  if (s.has_segments()) {
    sqlite::Statement where(s.db, "SELECT segment_id, segment_row FROM files WHERE id = ?1", what);
    where.bind(1, file_id);
    if (where.step() && !where.is_null(0)) {
      s.read_segment_vectors(where.int64(0), where.int64(1), file.vectors);
    }
  }
  // Vectors a store older than schema 3 kept in its BLOB table, until they are moved.
  sqlite::Statement vectors(s.db,
                            "SELECT kind, caption_index, rows, cols, data FROM vectors "
                            "WHERE file_id = ?1 ORDER BY kind, caption_index",
                            what);
  vectors.bind(1, file_id);
  while (vectors.step()) {
    StoredVectors v;
    v.kind = vector_kind_from_string(vectors.text(0));
    v.caption_index = static_cast<int>(vectors.int64(1));
    const auto n = inline_block_floats(vectors.int64(2), vectors.int64(3), vectors.bytes(4));
    if (!n)
      throw Error(ErrorKind::kIndex, s.where("vectors of " + file.state.path + " are corrupt"));
    v.rows = static_cast<int>(vectors.int64(2));
    v.cols = static_cast<int>(vectors.int64(3));
    v.values.resize(*n);
    std::memcpy(v.values.data(), vectors.blob(4), *n * sizeof(float));
    file.vectors.push_back(std::move(v));
  }
}

void IndexStore::Impl::read_captions_and_vectors_again_if_vanished(std::int64_t file_id,
                                                                   IndexedFile& file) const {
  read_again_if_a_file_vanished([&] {
    file.captions.clear();
    file.vectors.clear();
    read_captions_and_vectors(file_id, file);
  });
}

std::optional<FileState> IndexStore::find_file(const std::string& model_id,
                                               const std::filesystem::path& path) const {
  const Impl& s = *impl_;
  const auto model = s.model_row(model_id);
  if (!model) return std::nullopt;
  sqlite::Statement q(
      s.db, "SELECT path, size, mtime_ns, content_hash FROM files WHERE model = ?1 AND path = ?2",
      "find file");
  q.bind(1, *model).bind(2, normalize_index_path(path));
  if (!q.step()) return std::nullopt;
  return file_state(q, 0);
}

std::unordered_map<std::string, FileState> IndexStore::file_states(
    const std::string& model_id, const std::filesystem::path& scope) const {
  const Impl& s = *impl_;
  std::unordered_map<std::string, FileState> states;
  const auto model = s.model_row(model_id);
  if (!model) return states;
  sqlite::Statement q(s.db,
                      std::string("SELECT f.path, f.size, f.mtime_ns, f.content_hash FROM files f "
                                  "WHERE f.model = ?1 AND ") +
                          kScopeClause,
                      "list file states");
  q.bind(1, *model);
  bind_scope(q, scope_range(scope));
  while (q.step()) {
    FileState state = file_state(q, 0);
    states.emplace(state.path, std::move(state));
  }
  return states;
}

std::optional<IndexedFile> IndexStore::find_by_content_hash(const std::string& model_id,
                                                            const std::string& content_hash,
                                                            std::int64_t size) const {
  const Impl& s = *impl_;
  const auto model = s.model_row(model_id);
  if (!model) return std::nullopt;
  const char* what = "find by content hash";
  sqlite::Statement q(s.db,
                      "SELECT id, path, size, mtime_ns, content_hash, category FROM files "
                      "WHERE model = ?1 AND content_hash = ?2 AND size = ?3 ORDER BY id LIMIT 1",
                      what);
  q.bind(1, *model).bind(2, content_hash).bind(3, size);
  if (!q.step()) return std::nullopt;
  IndexedFile file;
  file.state = file_state(q, 1);
  file.category = q.text(5);
  const std::int64_t file_id = q.int64(0);
  q.reset();  // ends its read snapshot, so that a retry below sees a fresh one
  s.read_captions_and_vectors_again_if_vanished(file_id, file);
  return file;
}

void IndexStore::visit_files(const std::string& model_id, const std::filesystem::path& scope,
                             std::size_t batch_size,
                             const std::function<void(std::vector<IndexedFile>&)>& visit) const {
  const Impl& s = *impl_;
  const auto model = s.model_row(model_id);
  if (!model || batch_size == 0) return;
  // Keyset pagination on the (model, path) index: each page starts after the last path seen,
  // so no page re-reads earlier rows (OFFSET would) and memory holds one page.
  sqlite::Statement q(s.db,
                      std::string("SELECT f.id, f.path, f.size, f.mtime_ns, f.content_hash, "
                                  "f.category FROM files f WHERE f.model = ?1 AND ") +
                          kScopeClause + " AND f.path > ?5 ORDER BY f.path LIMIT ?6",
                      "visit files");
  std::string after;
  while (true) {
    q.bind(1, *model);
    bind_scope(q, scope_range(scope));
    q.bind(5, after).bind(6, static_cast<std::int64_t>(batch_size));
    std::vector<std::pair<std::int64_t, IndexedFile>> rows;
    while (q.step()) {
      IndexedFile file;
      file.state = file_state(q, 1);
      file.category = q.text(5);
      rows.emplace_back(q.int64(0), std::move(file));
    }
    q.reset();  // ends the page's read snapshot, so that a retry below sees a fresh one
    if (rows.empty()) return;
    // Each page must end past the last: a damaged (model, path) index that hands back rows out
    // of order would otherwise repeat the same page forever.
    for (const auto& row : rows) {
      if (!(row.second.state.path > after)) {
        throw Error(ErrorKind::kIndex,
                    s.where("visit files") +
                        ": the index of file paths is out of order, so the store is damaged. "
                        "Keep the file for recovery (sqlite3 FILE .recover) and re-index into a "
                        "new store (MMSEARCH_HOME=NEW_FOLDER mmsearch index DIR)");
      }
    }
    after = rows.back().second.state.path;
    std::vector<IndexedFile> batch;
    batch.reserve(rows.size());
    for (auto& [id, file] : rows) {
      s.read_captions_and_vectors_again_if_vanished(id, file);
      batch.push_back(std::move(file));
    }
    const bool last = batch.size() < batch_size;
    visit(batch);
    if (last) return;
  }
}

std::vector<FileListing> IndexStore::list_files(const std::string& model_id,
                                                const std::filesystem::path& scope) const {
  const Impl& s = *impl_;
  std::vector<FileListing> files;
  const auto model = s.model_row(model_id);
  if (!model) return files;
  // One query with a LEFT JOIN (rows come grouped by file), rather than one query per file.
  sqlite::Statement q(
      s.db,
      std::string("SELECT f.id, f.path, f.size, f.mtime_ns, f.content_hash, f.category, "
                  "c.caption, c.caption_en, c.caption_index FROM files f "
                  "LEFT JOIN captions c ON c.file_id = f.id WHERE f.model = ?1 AND ") +
          kScopeClause + " ORDER BY f.path, c.caption_index",
      "list files");
  q.bind(1, *model);
  bind_scope(q, scope_range(scope));
  while (q.step()) {
    const std::int64_t id = q.int64(0);
    if (files.empty() || files.back().file_id != id) {
      FileListing f;
      f.file_id = id;
      f.state = file_state(q, 1);
      f.category = q.text(5);
      files.push_back(std::move(f));
    }
    if (!q.is_null(8)) files.back().captions.push_back({q.text(6), q.text(7)});
  }
  return files;
}

LoadedVectors IndexStore::Impl::load_inline_vectors(std::int64_t model_row,
                                                    const std::filesystem::path& scope,
                                                    VectorKind kind) const {
  const Impl& s = *this;
  LoadedVectors loaded;
  // Schema-3 stores have moved every BLOB out: one probe instead of a scan of the scope.
  if (s.db.query_int("SELECT EXISTS (SELECT 1 FROM vectors)", "load vectors") == 0) return loaded;
  const std::optional<std::int64_t> model = model_row;
  const ScopeRange range = scope_range(scope);
  const std::string kind_name(to_string(kind));
  // Counting first lets the matrix be allocated once: growing a vector of several hundred MB
  // by doubling costs more (page faults, copies) than SQLite's reading of the blobs.
  sqlite::Statement count(s.db,
                          std::string("SELECT count(*) FROM files f JOIN vectors v ON "
                                      "v.file_id = f.id AND v.kind = ?5 WHERE f.model = ?1 AND ") +
                              kScopeClause,
                          "load vectors");
  count.bind(1, *model).bind(5, kind_name);
  bind_scope(count, range);
  const std::int64_t expected_rows = count.step() ? count.int64(0) : 0;
  count.reset();
  // For image kinds the row's caption is the file's first caption (caption_index 0), for
  // caption kinds the caption the vectors were computed from.
  sqlite::Statement q(
      s.db,
      std::string("SELECT f.id, f.path, f.category, v.caption_index, c.caption, c.caption_en, "
                  "v.rows, v.cols, v.data FROM files f "
                  "JOIN vectors v ON v.file_id = f.id AND v.kind = ?5 "
                  "LEFT JOIN captions c ON c.file_id = f.id AND "
                  "c.caption_index = max(v.caption_index, 0) WHERE f.model = ?1 AND ") +
          kScopeClause + " ORDER BY f.path, v.caption_index",
      "load vectors");
  q.bind(1, *model).bind(5, kind_name);
  bind_scope(q, range);
  loaded.owners.reserve(static_cast<std::size_t>(expected_rows));
  Embeddings& e = loaded.embeddings;
  while (q.step()) {
    const std::string path = q.text(1);
    const auto floats = inline_block_floats(q.int64(6), q.int64(7), q.bytes(8));
    if (!floats) throw Error(ErrorKind::kIndex, s.where("vectors of " + path + " are corrupt"));
    const std::size_t n = *floats;
    const int rows = static_cast<int>(q.int64(6));
    const int cols = static_cast<int>(q.int64(7));
    if (e.count == 0) {
      e.vectors_per_item = rows;
      e.dim = cols;
      e.values.reserve(static_cast<std::size_t>(expected_rows) * n);
    } else if (rows != e.vectors_per_item || cols != e.dim) {
      throw Error(ErrorKind::kIndex,
                  s.where(kind_name + " vectors of " + path + " are " + std::to_string(rows) +
                          " x " + std::to_string(cols) + ", others " +
                          std::to_string(e.vectors_per_item) + " x " + std::to_string(e.dim) +
                          " (vectors of one model must agree in shape; re-indexing the "
                          "folder rewrites them)"));
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

LoadedVectors IndexStore::load_vectors(const std::string& model_id,
                                       const std::filesystem::path& scope, VectorKind kind) const {
  return read_again_if_a_file_vanished(
      [&] { return impl_->load_vectors_once(model_id, scope, kind); });
}

LoadedVectors IndexStore::Impl::load_vectors_once(const std::string& model_id,
                                                  const std::filesystem::path& scope,
                                                  VectorKind kind) const {
  const Impl& s = *this;
  const auto model = s.model_row(model_id);
  if (!model) return {};
  if (!s.has_segments()) return s.load_inline_vectors(*model, scope, kind);
  sqlite::Statement q(s.db,
                      std::string("SELECT f.id, f.path, f.category FROM files f "
                                  "WHERE f.model = ?1 AND ") +
                          kScopeClause + " ORDER BY f.path",
                      "load vectors");
  q.bind(1, *model);
  bind_scope(q, scope_range(scope));
  sqlite::Statement captions(s.db,
                             "SELECT caption, caption_en FROM captions WHERE file_id = ?1 "
                             "ORDER BY caption_index",
                             "load vectors");
  LoadedVectors loaded;
  Embeddings& e = loaded.embeddings;
  while (q.step()) {
    IndexedFile file;
    file.state.path = q.text(1);
    const std::int64_t file_id = q.int64(0);
    s.read_captions_and_vectors(file_id, file);
    for (const StoredVectors& v : file.vectors) {
      if (v.kind != kind) continue;
      if (e.count == 0) {
        e.vectors_per_item = v.rows;
        e.dim = v.cols;
      } else if (v.rows != e.vectors_per_item || v.cols != e.dim) {
        throw Error(
            ErrorKind::kIndex,
            s.where(std::string(to_string(kind)) + " vectors of " + file.state.path + " are " +
                    std::to_string(v.rows) + " x " + std::to_string(v.cols) + ", others " +
                    std::to_string(e.vectors_per_item) + " x " + std::to_string(e.dim) +
                    " (vectors of one model must agree in shape; re-indexing the "
                    "folder rewrites them)"));
      }
      e.values.insert(e.values.end(), v.values.begin(), v.values.end());
      ++e.count;
      VectorOwner owner;
      owner.file_id = file_id;
      owner.path = file.state.path;
      owner.category = q.text(2);
      owner.caption_index = v.caption_index;
      const std::size_t c = static_cast<std::size_t>(std::max(v.caption_index, 0));
      if (c < file.captions.size()) {
        owner.caption = file.captions[c].text;
        owner.caption_en = file.captions[c].text_en;
      }
      loaded.owners.push_back(std::move(owner));
    }
  }
  return loaded;
}

namespace {

// (models.id, model_id) of every model with at least one file under `range`, by model_id; one
// index lookup each.
std::vector<std::pair<std::int64_t, std::string>> model_rows_in_scope(sqlite::Database& db,
                                                                      const ScopeRange& range) {
  sqlite::Statement q(db,
                      "SELECT m.id, m.model_id FROM models m WHERE "
                      "EXISTS (SELECT 1 FROM files WHERE model = m.id AND path = ?2) OR "
                      "EXISTS (SELECT 1 FROM files WHERE model = m.id AND path >= ?3 AND "
                      "path < ?4) ORDER BY m.model_id",
                      "models in scope");
  bind_scope(q, range);
  std::vector<std::pair<std::int64_t, std::string>> rows;
  while (q.step()) rows.emplace_back(q.int64(0), q.text(1));
  return rows;
}

}  // namespace

std::vector<ModelUsage> IndexStore::models_in_scope(const std::filesystem::path& scope) const {
  // The folder itself and the range below it as two terms, so that each is a range of the
  // (model, path) index instead of a filter over every file of the model.
  sqlite::Statement q(impl_->db,
                      "SELECT (SELECT count(*) FROM files WHERE model = ?1 AND path = ?2) + "
                      "(SELECT count(*) FROM files WHERE model = ?1 AND path >= ?3 AND "
                      "path < ?4)",
                      "models in scope");
  const ScopeRange range = scope_range(scope);
  std::vector<ModelUsage> usage;
  for (const auto& [model, model_id] : model_rows_in_scope(impl_->db, range)) {
    q.bind(1, model);
    bind_scope(q, range);
    if (q.step()) usage.push_back({model_id, q.int64(0)});
    q.reset();
  }
  std::stable_sort(usage.begin(), usage.end(), [](const ModelUsage& a, const ModelUsage& b) {
    return a.file_count > b.file_count;
  });
  return usage;
}

std::vector<std::string> IndexStore::model_ids_in_scope(const std::filesystem::path& scope) const {
  std::vector<std::string> ids;
  for (auto& row : model_rows_in_scope(impl_->db, scope_range(scope)))
    ids.push_back(std::move(row.second));
  return ids;
}

std::vector<std::string> IndexStore::models() const {
  std::vector<std::string> ids;
  for (ModelUsage& usage : model_usage()) ids.push_back(std::move(usage.model_id));
  return ids;
}

std::vector<ModelUsage> IndexStore::model_usage() const {
  sqlite::Statement q(impl_->db,
                      "SELECT m.model_id, count(f.id) FROM models m "
                      "LEFT JOIN files f ON f.model = m.id GROUP BY m.id ORDER BY m.model_id",
                      "list models");
  std::vector<ModelUsage> usage;
  while (q.step()) usage.push_back({q.text(0), q.int64(1)});
  return usage;
}

}  // namespace mmsearch
