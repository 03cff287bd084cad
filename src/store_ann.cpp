// IndexStore's approximate-search indexes: building one from the segments, registering,
// describing and dropping it, and keeping it fresh after index and import (docs/STORE.md).
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <set>

#include "mmsearch/ann_index.h"
#include "mmsearch/index.h"
#include "store_impl.h"
#include "vector_kernels.h"

namespace mmsearch {
namespace fs = std::filesystem;
namespace {

// Vectors decoded per chunk handed to FAISS: 64 MiB of fp32 at 256 dimensions.
constexpr std::int64_t kChunkEntries = 65536;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One segment's share of a build: its live entries of the kind, read through the mapping.
struct SourceSegment {
  std::int64_t id = 0;
  std::shared_ptr<const SegmentFile> file;
  const SegmentKind* kind = nullptr;
  std::vector<char> live_items;  // empty: every item is live
};

// The first-stage array of a kind: the vectors themselves, or BLIP-2's per-item mean.
const SegmentArray* first_stage_array(const SegmentFile& file, const SegmentKind& kind,
                                      const SegmentArray** scales) {
  const SegmentHeader& h = file.header();
  const bool several = kind.vectors_per_item > 1;
  *scales = h.find_array(segment_array_name(kind.kind, several ? "mean.scale" : "scale"));
  return h.find_array(several ? segment_array_name(kind.kind, "mean")
                              : segment_array_name(kind.kind));
}

}  // namespace

std::shared_ptr<const AnnIndex> IndexStore::Impl::ann(std::int64_t model, VectorKind kind) const {
  if (!has_ann()) return nullptr;
  sqlite::Statement q(db, "SELECT file_name FROM ann_indexes WHERE model = ?1 AND kind = ?2",
                      "find approximate-search index");
  q.bind(1, model).bind(2, std::string(to_string(kind)));
  if (!q.step()) return nullptr;
  const std::string name = q.text(0);
  const auto it = mapped_anns.find(name);
  if (it != mapped_anns.end()) return it->second;
  auto opened = open_store_file(store_file(name), AnnIndex::open);
  mapped_anns.emplace(name, opened);
  return opened;
}

AnnInfo IndexStore::build_ann(const std::string& model_id, VectorKind kind, std::int64_t lists) {
  Impl& s = *impl_;
  if (s.read_only) {
    throw Error(ErrorKind::kUsage,
                s.where("build the approximate-search index") + ": the store is open read-only");
  }
  if (!s.has_ann()) {
    throw Error(ErrorKind::kIndex, s.where("build the approximate-search index") +
                                       ": the store has not been migrated yet");
  }
  const auto model = s.model_row(model_id);
  if (!model) {
    throw Error(ErrorKind::kUsage,
                "the store holds no vectors of " + model_id + "; index or import a folder first");
  }
  // The segments and their live rows, in one snapshot. What a writer commits afterwards lands
  // in new segments, which queries scan exactly; rows deleted afterwards are filtered out by
  // every query. So the build needs no lock while it reads and trains.
  std::vector<SourceSegment> sources;
  std::int64_t total = 0;
  int dim = 0;
  {
    ReadSnapshot snapshot(s.db);
    sqlite::Statement segments(
        s.db, "SELECT id, file_name, items, live_items FROM segments WHERE model = ?1 ORDER BY id",
        "build the approximate-search index");
    sqlite::Statement rows(s.db, "SELECT segment_row FROM files WHERE segment_id = ?1",
                           "build the approximate-search index");
    segments.bind(1, *model);
    while (segments.step()) {
      SourceSegment source;
      source.id = segments.int64(0);
      source.file = s.segment(segments.text(1));
      source.kind = source.file->header().find_kind(kind);
      const std::int64_t items = segments.int64(2), live = segments.int64(3);
      if (!source.kind || source.kind->entries == 0 || live == 0) continue;
      if (dim != 0 && source.kind->dim != dim) {
        throw Error(ErrorKind::kIndex, "vector segment " + source.file->label() +
                                           " disagrees in dimensions with the others; re-index "
                                           "with --rebuild");
      }
      dim = source.kind->dim;
      if (live < items) {
        source.live_items.assign(items, 0);
        rows.bind(1, source.id);
        while (rows.step()) {
          const std::int64_t r = rows.int64(0);
          if (r >= 0 && r < items) source.live_items[r] = 1;
        }
        rows.reset();
      }
      const SegmentArray& owners =
          *source.file->header().find_array(segment_array_name(kind, "owner"));
      source.file->verify_rows(owners, 0, owners.rows);
      const auto* pairs = reinterpret_cast<const std::int32_t*>(source.file->data(owners));
      for (std::int64_t e = 0; e < owners.rows; ++e) {
        const std::int32_t item = pairs[2 * e];
        check_owner_item(*source.file, item);
        if (source.live_items.empty() || source.live_items[item]) ++total;
      }
      sources.push_back(std::move(source));
    }
  }
  if (total == 0) {
    throw Error(ErrorKind::kUsage,
                "the store holds no " + std::string(to_string(kind)) + " vectors of " + model_id);
  }
  const AnnSource source = [&](const AnnChunkSink& sink) {
    std::vector<float> rows(static_cast<std::size_t>(kChunkEntries) * dim);
    std::vector<std::int64_t> ids(kChunkEntries);
    std::vector<float> decoded;
    std::int64_t n = 0;
    for (const SourceSegment& src : sources) {
      const SegmentFile& file = *src.file;
      const SegmentArray* scales = nullptr;
      const SegmentArray& vectors = *first_stage_array(file, *src.kind, &scales);
      const auto* owners = reinterpret_cast<const std::int32_t*>(
          file.data(*file.header().find_array(segment_array_name(kind, "owner"))));
      const float* scale = scales ? reinterpret_cast<const float*>(file.data(*scales)) : nullptr;
      for (std::int64_t first = 0; first < vectors.rows; first += kChunkEntries) {
        const std::int64_t count = std::min(kChunkEntries, vectors.rows - first);
        file.verify_rows(vectors, first, count);
        if (scales) file.verify_rows(*scales, first, count);
        decoded.resize(static_cast<std::size_t>(count) * dim);
        kernels::decode_rows(vectors.type, file.data(vectors), scale, first, count, dim,
                             decoded.data());
        for (std::int64_t e = 0; e < count; ++e) {
          const std::int32_t item = owners[2 * (first + e)];
          if (!src.live_items.empty() && !src.live_items[item]) continue;
          std::memcpy(rows.data() + n * dim, decoded.data() + e * dim, sizeof(float) * dim);
          ids[n++] = ann_entry_id(src.id, first + e);
          if (n == kChunkEntries) {
            sink(rows.data(), ids.data(), n);
            n = 0;
          }
        }
      }
    }
    if (n > 0) sink(rows.data(), ids.data(), n);
  };
  std::vector<std::int64_t> segment_ids;
  for (const SourceSegment& src : sources) segment_ids.push_back(src.id);

  std::error_code ec;
  fs::create_directories(s.segments_dir(), ec);
  const std::string name = random_store_file_name(".ann");
  const fs::path partial = s.segments_dir() / (name + ".partial");
  const fs::path final_path = s.segments_dir() / name;
  build_ann_file(partial, model_id, kind, dim, total, segment_ids, lists, source);
  auto built = AnnIndex::open(partial);
  std::string replaced;
  try {
    s.write_transaction("register the approximate-search index", [&] {
      sqlite::Statement old(s.db,
                            "SELECT file_name FROM ann_indexes WHERE model = ?1 AND kind = ?2",
                            "register the approximate-search index");
      old.bind(1, *model).bind(2, std::string(to_string(kind)));
      if (old.step()) replaced = old.text(0);
      old.reset();
      // Renamed under the write lock, so the orphan cleanup (also under it) never sees a
      // finished index that no row names.
      fs::rename(partial, final_path);
      sqlite::Statement put(s.db,
                            "INSERT OR REPLACE INTO ann_indexes (model, kind, file_name, entries, "
                            "lists, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            "register the approximate-search index");
      put.bind(1, *model)
          .bind(2, std::string(to_string(kind)))
          .bind(3, name)
          .bind(4, built->entries())
          .bind(5, built->lists())
          .bind(6, static_cast<std::int64_t>(built->file_bytes()))
          .bind(7, unix_now())
          .run();
    });
  } catch (...) {
    fs::remove(partial, ec);
    fs::remove(final_path, ec);
    throw;
  }
  if (is_plain_file_name(replaced)) fs::remove(s.segments_dir() / replaced, ec);
  return *ann_info(model_id, kind);
}

std::optional<AnnInfo> IndexStore::ann_info(const std::string& model_id, VectorKind kind) const {
  const Impl& s = *impl_;
  if (!s.has_ann()) return std::nullopt;
  ReadSnapshot snapshot(s.db);
  const auto model = s.model_row(model_id);
  if (!model) return std::nullopt;
  sqlite::Statement q(s.db,
                      "SELECT file_name, entries, lists, bytes, created_at FROM ann_indexes "
                      "WHERE model = ?1 AND kind = ?2",
                      "describe the approximate-search index");
  q.bind(1, *model).bind(2, std::string(to_string(kind)));
  if (!q.step()) return std::nullopt;
  AnnInfo info;
  info.kind = kind;
  info.file_name = q.text(0);
  info.entries = q.int64(1);
  info.lists = q.int64(2);
  info.bytes = q.int64(3);
  info.created_at = q.int64(4);
  q.reset();
  const auto index = s.ann(*model, kind);
  info.default_nprobe = index->default_nprobe();
  std::set<std::int64_t> covered(index->segments().begin(), index->segments().end());
  sqlite::Statement segments(s.db, "SELECT id, live_items FROM segments WHERE model = ?1",
                             "describe the approximate-search index");
  segments.bind(1, *model);
  while (segments.step()) {
    info.live_items += segments.int64(1);
    if (!covered.count(segments.int64(0))) info.uncovered_items += segments.int64(1);
  }
  return info;
}

bool IndexStore::drop_ann(const std::string& model_id, VectorKind kind) {
  Impl& s = *impl_;
  if (!s.has_ann()) return false;
  std::string name;
  s.write_transaction("drop the approximate-search index", [&] {
    const auto model = s.model_row(model_id);
    if (!model) return;
    sqlite::Statement q(s.db, "SELECT file_name FROM ann_indexes WHERE model = ?1 AND kind = ?2",
                        "drop the approximate-search index");
    q.bind(1, *model).bind(2, std::string(to_string(kind)));
    if (!q.step()) return;
    name = q.text(0);
    q.reset();
    sqlite::Statement remove(s.db, "DELETE FROM ann_indexes WHERE model = ?1 AND kind = ?2",
                             "drop the approximate-search index");
    remove.bind(1, *model).bind(2, std::string(to_string(kind))).run();
  });
  if (name.empty()) return false;
  std::error_code ec;
  if (is_plain_file_name(name)) fs::remove(s.segments_dir() / name, ec);
  return true;
}

std::optional<AnnInfo> IndexStore::refresh_ann(const std::string& model_id) {
  const Impl& s = *impl_;
  if (s.read_only || !s.has_ann()) return std::nullopt;
  const auto existing = ann_info(model_id, VectorKind::kImageProj);
  if (existing) {
    const double stale = static_cast<double>(existing->uncovered_items);
    if (existing->uncovered_items < kAnnStaleItems ||
        stale < kAnnStaleFraction * static_cast<double>(existing->live_items)) {
      return std::nullopt;
    }
    spdlog::info("rebuilding the approximate-search index of {}: {} of {} items are outside it",
                 model_id, existing->uncovered_items, existing->live_items);
  } else {
    const auto model = s.model_row(model_id);
    if (!model) return std::nullopt;
    const std::int64_t live = s.db.query_int(
        "SELECT coalesce(sum(live_items), 0) FROM segments WHERE model = " + std::to_string(*model),
        "count items");
    if (live < kAnnAutoItems) return std::nullopt;
    spdlog::info(
        "building an approximate-search index of {} ({} items; `mmsearch ann drop` "
        "removes it)",
        model_id, live);
  }
  // Lists chosen afresh: the collection may have grown since the last build.
  return build_ann(model_id, VectorKind::kImageProj, 0);
}

std::vector<IndexedFile> IndexStore::sample_files(const std::string& model_id, std::int64_t count,
                                                  std::uint64_t seed) const {
  return read_again_if_a_file_vanished(
      [&] { return impl_->sample_files_once(model_id, count, seed); });
}

std::vector<IndexedFile> IndexStore::Impl::sample_files_once(const std::string& model_id,
                                                             std::int64_t count,
                                                             std::uint64_t seed) const {
  const Impl& s = *this;
  std::vector<IndexedFile> out;
  ReadSnapshot snapshot(s.db);
  const auto model = s.model_row(model_id);
  if (!model || count <= 0) return out;
  // Two multiplicative hashes modulo a prime, the second by a multiplier drawn from the seed:
  // repeatable for a seed, another order for another seed, spread over the whole store.
  sqlite::Statement q(s.db,
                      "SELECT id, path, size, mtime_ns, content_hash, category FROM files "
                      "WHERE model = ?1 ORDER BY (((id * 2654435761) % 4294967311) * ?2) % "
                      "4294967311 LIMIT ?3",
                      "sample files");
  q.bind(1, *model).bind(2, static_cast<std::int64_t>(seed % 1000003) * 2 + 1).bind(3, count);
  std::vector<std::int64_t> ids;
  while (q.step()) {
    IndexedFile f;
    ids.push_back(q.int64(0));
    f.state.path = q.text(1);
    f.state.size = q.int64(2);
    f.state.mtime_ns = q.int64(3);
    f.state.content_hash = q.text(4);
    f.category = q.text(5);
    out.push_back(std::move(f));
  }
  q.reset();
  for (std::size_t i = 0; i < out.size(); ++i) s.read_captions_and_vectors(ids[i], out[i]);
  return out;
}

}  // namespace mmsearch
