// IndexStore: the vector segments beside the database: writing one per batch, reading a file's
// vectors back, deleting emptied segments and orphans, merging small ones, and moving the
// vectors of stores older than schema 3 out of their BLOB table. Design: docs/STORE.md.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <system_error>

#include "mmsearch/index.h"
#include "store_impl.h"
#include "vector_kernels.h"

namespace mmsearch {
namespace fs = std::filesystem;
namespace {

// Tiered merging: segments whose item counts share a power-of-8 tier are merged once a tier
// holds this many, so each vector is rewritten about log8(N / batch) times in all.
constexpr int kSegmentsPerTier = 8;
// A merge stops at about this size, which bounds the memory a merge needs (it is built in
// memory) and the time it holds the write lock.
constexpr std::uint64_t kMaxMergedBytes = 256ull << 20;
// Segments this large are left as they are (unless mostly dead): merging them would rewrite a
// lot for little gain in query time, and an import writes segments this large directly.
constexpr std::uint64_t kLargeSegmentBytes = 64ull << 20;
// A segment at most this live is rewritten without its dead rows.
constexpr double kRewriteLiveFraction = 0.5;

// The deepest folder holding every path of a sorted list.
std::string common_dir(const std::vector<const IndexedFile*>& files) {
  const std::string& first = files.front()->state.path;
  const std::string& last = files.back()->state.path;
  std::size_t n = 0;
  while (n < first.size() && n < last.size() && first[n] == last[n]) ++n;
  std::string prefix = first.substr(0, n);
  // Cut back to a folder boundary unless the prefix is a whole folder of both.
  const bool whole_folder = (n == first.size() || first[n] == '/') &&
                            (n == last.size() || last[n] == '/') && files.size() > 1;
  if (!whole_folder || files.size() == 1) {
    const std::size_t slash = prefix.rfind('/');
    prefix = slash == 0 || slash == std::string::npos ? "/" : prefix.substr(0, slash);
  }
  return prefix.empty() ? "/" : prefix;
}

struct KindBlocks {
  int vectors_per_item = 0;
  int dim = 0;
  std::vector<SegmentEntry> entries;
};

}  // namespace

std::string random_store_file_name(const char* extension) {
  // Drawn fresh each time: a generator's state would be shared by forked processes.
  std::random_device random;
  const unsigned long long value = (static_cast<unsigned long long>(random()) << 32) ^ random();
  char name[40];
  std::snprintf(name, sizeof name, "%016llx%s", value, extension);
  return name;
}

void check_owner_item(const SegmentFile& segment, std::int64_t item) {
  if (item < 0 || item >= segment.header().items) {
    throw Error(ErrorKind::kIndex, "vector segment " + segment.label() +
                                       " names an item it does not hold; re-index with --rebuild");
  }
}

fs::path IndexStore::Impl::segments_dir() const {
  return fs::path(db.path().string() + ".segments");
}

std::shared_ptr<const SegmentFile> IndexStore::Impl::segment(const std::string& file_name) const {
  const auto it = mapped_segments.find(file_name);
  if (it != mapped_segments.end()) return it->second;
  auto opened = open_store_file(store_file(file_name), SegmentFile::open);
  mapped_segments.emplace(file_name, opened);
  return opened;
}

std::shared_ptr<const SegmentFile> IndexStore::Impl::segment_by_id(std::int64_t segment_id) const {
  sqlite::Statement q(db, "SELECT file_name FROM segments WHERE id = ?1", "find segment");
  q.bind(1, segment_id);
  if (!q.step()) {  // deleted since the file's row was read, or damage if it stays so
    throw VanishedStoreFile(ErrorKind::kIndex,
                            where("segment " + std::to_string(segment_id) +
                                  " is named by a file but missing; the store is "
                                  "damaged: re-index with --rebuild"));
  }
  return segment(q.text(0));
}

std::optional<std::int64_t> IndexStore::Impl::write_segment(
    std::int64_t model, const std::string& model_id, const std::vector<const IndexedFile*>& files,
    const std::map<VectorKind, VectorEncoding>& encodings, std::vector<fs::path>& written) {
  std::map<VectorKind, KindBlocks> kinds;
  for (std::size_t r = 0; r < files.size(); ++r) {
    for (const StoredVectors& v : files[r]->vectors) {
      KindBlocks& blocks = kinds[v.kind];
      if (blocks.entries.empty()) {
        blocks.vectors_per_item = v.rows;
        blocks.dim = v.cols;
      } else if (v.rows != blocks.vectors_per_item || v.cols != blocks.dim) {
        throw Error(ErrorKind::kUsage, files[r]->state.path + ": " + to_string(v.kind) +
                                           " vectors are " + std::to_string(v.rows) + " x " +
                                           std::to_string(v.cols) + ", others in the batch " +
                                           std::to_string(blocks.vectors_per_item) + " x " +
                                           std::to_string(blocks.dim));
      }
      blocks.entries.push_back({static_cast<int>(r), v.caption_index, v.values.data()});
    }
  }
  if (kinds.empty()) return std::nullopt;
  SegmentBuilder builder(model_id, static_cast<std::int64_t>(files.size()));
  std::string kind_names, encoding_names;
  for (auto& [kind, blocks] : kinds) {
    std::stable_sort(blocks.entries.begin(), blocks.entries.end(),
                     [](const SegmentEntry& a, const SegmentEntry& b) {
                       return a.item != b.item ? a.item < b.item
                                               : a.caption_index < b.caption_index;
                     });
    const auto chosen = encodings.find(kind);
    const VectorEncoding kind_encoding = chosen == encodings.end() ? encoding : chosen->second;
    builder.add_kind(kind, kind_encoding, blocks.vectors_per_item, blocks.dim, blocks.entries);
    kind_names += (kind_names.empty() ? "" : ",") + std::string(to_string(kind));
    encoding_names += (encoding_names.empty() ? "" : ",") + std::string(to_string(kind_encoding));
  }
  const std::vector<std::uint8_t> bytes = builder.serialize();
  std::error_code ec;
  fs::create_directories(segments_dir(), ec);
  if (ec) {
    throw Error(ErrorKind::kIndex,
                "cannot create " + segments_dir().string() + ": " + ec.message());
  }
  const std::string name = random_store_file_name(".seg");
  write_segment_file(segments_dir() / name, bytes);
  written.push_back(segments_dir() / name);
  sqlite::Statement insert(db,
                           "INSERT INTO segments (model, file_name, items, bytes, common_dir, "
                           "kinds, encoding, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%s','now'))",
                           "add segment");
  insert.bind(1, model)
      .bind(2, name)
      .bind(3, static_cast<std::int64_t>(files.size()))
      .bind(4, static_cast<std::int64_t>(bytes.size()))
      .bind(5, common_dir(files))
      .bind(6, kind_names)
      .bind(7, encoding_names)
      .run();
  return db.last_insert_rowid();
}

void IndexStore::Impl::read_segment_vectors(std::int64_t segment_id, std::int64_t row,
                                            std::vector<StoredVectors>& out) const {
  const std::shared_ptr<const SegmentFile> seg = segment_by_id(segment_id);
  const SegmentHeader& header = seg->header();
  for (const SegmentKind& k : header.kinds) {
    const SegmentArray& owners = *header.find_array(segment_array_name(k.kind, "owner"));
    const SegmentArray& vectors = *header.find_array(segment_array_name(k.kind));
    const SegmentArray* scales = header.find_array(segment_array_name(k.kind, "scale"));
    seg->verify_rows(owners, 0, owners.rows);
    const auto* pairs = reinterpret_cast<const std::int32_t*>(seg->data(owners));
    // Entries are sorted by item: binary search the first entry of this row.
    std::int64_t lo = 0, hi = owners.rows;
    while (lo < hi) {
      const std::int64_t mid = (lo + hi) / 2;
      if (pairs[2 * mid] < row)
        lo = mid + 1;
      else
        hi = mid;
    }
    for (std::int64_t e = lo; e < owners.rows && pairs[2 * e] == row; ++e) {
      StoredVectors v;
      v.kind = k.kind;
      v.caption_index = pairs[2 * e + 1];
      v.rows = k.vectors_per_item;
      v.cols = k.dim;
      v.values.resize(static_cast<std::size_t>(v.rows) * v.cols);
      const std::int64_t first = e * k.vectors_per_item;
      seg->verify_rows(vectors, first, k.vectors_per_item);
      if (scales) seg->verify_rows(*scales, first, k.vectors_per_item);
      kernels::decode_rows(vectors.type, seg->data(vectors),
                           scales ? reinterpret_cast<const float*>(seg->data(*scales)) : nullptr,
                           first, k.vectors_per_item, k.dim, v.values.data());
      out.push_back(std::move(v));
    }
  }
}

namespace {

void remove_files(const std::vector<fs::path>& paths) {
  for (const fs::path& p : paths) {
    std::error_code ec;
    fs::remove(p, ec);
  }
}

// Deletes the rows of segments no live file uses (inside a write transaction) and returns
// their files, to be removed once the transaction has committed.
std::vector<fs::path> drop_empty_segments(IndexStore::Impl& s, std::int64_t model) {
  std::vector<fs::path> files;
  sqlite::Statement q(s.db, "SELECT file_name FROM segments WHERE model = ?1 AND live_items <= 0",
                      "drop empty segments");
  q.bind(1, model);
  while (q.step()) files.push_back(s.store_file(q.text(0)));
  q.reset();
  sqlite::Statement del(s.db, "DELETE FROM segments WHERE model = ?1 AND live_items <= 0",
                        "drop empty segments");
  del.bind(1, model).run();
  return files;
}

struct SegmentRow {
  std::int64_t id = 0;
  std::int64_t items = 0;
  std::int64_t live = 0;
  std::int64_t bytes = 0;
  std::string encodings;
};

int tier_of(std::int64_t items) {
  int tier = 0;
  while (items >= 8) {
    items /= 8;
    ++tier;
  }
  return tier;
}

// The segments to merge next for `model`, or none: a tier holding kSegmentsPerTier segments
// (the smallest first, up to kMaxMergedBytes), or one mostly dead segment.
std::vector<SegmentRow> pick_merge(const IndexStore::Impl& s, std::int64_t model) {
  sqlite::Statement q(s.db,
                      "SELECT id, items, live_items, bytes, encoding FROM segments "
                      "WHERE model = ?1 ORDER BY items, id",
                      "plan segment merge");
  q.bind(1, model);
  std::map<int, std::vector<SegmentRow>> tiers;
  while (q.step()) {
    SegmentRow row{q.int64(0), q.int64(1), q.int64(2), q.int64(3), q.text(4)};
    if (row.live < row.items * kRewriteLiveFraction) return {row};
    if (static_cast<std::uint64_t>(row.bytes) * row.live / std::max<std::int64_t>(row.items, 1) <
        kLargeSegmentBytes) {
      tiers[tier_of(row.live)].push_back(row);
    }
  }
  for (auto& [tier, rows] : tiers) {
    if (static_cast<int>(rows.size()) < kSegmentsPerTier) continue;
    std::vector<SegmentRow> chosen;
    std::uint64_t bytes = 0;
    for (const SegmentRow& row : rows) {
      if (!chosen.empty() && bytes + row.bytes > kMaxMergedBytes) break;
      chosen.push_back(row);
      bytes += row.bytes;
    }
    if (chosen.size() >= 2) return chosen;
  }
  return {};
}

VectorEncoding more_precise(VectorEncoding a, VectorEncoding b) {
  auto rank = [](VectorEncoding e) {
    return e == VectorEncoding::kFloat32 ? 2 : e == VectorEncoding::kFloat16 ? 1 : 0;
  };
  return rank(a) >= rank(b) ? a : b;
}

}  // namespace

void IndexStore::Impl::after_write(std::int64_t model, const std::string& model_id) {
  if (!has_segments()) return;
  std::vector<fs::path> obsolete;
  write_transaction("drop empty segments", [&] { obsolete = drop_empty_segments(*this, model); });
  remove_files(obsolete);
  for (int round = 0; round < 16; ++round) {
    const std::vector<SegmentRow> merge = pick_merge(*this, model);
    if (merge.empty()) return;
    // Read the live files of the chosen segments, then write them as one segment. Files that a
    // concurrent writer replaces meanwhile are not moved (the UPDATE below matches their old
    // place only), so nothing stale comes back; the new segment then just has dead rows.
    struct Moved {
      std::int64_t file_id, segment_id, row;
      IndexedFile file;
    };
    std::vector<Moved> moved;
    std::map<VectorKind, VectorEncoding> encodings;
    try {
      for (const SegmentRow& row : merge) {
        sqlite::Statement q(db,
                            "SELECT id, path, segment_row FROM files WHERE segment_id = ?1 "
                            "ORDER BY path",
                            "merge segments");
        q.bind(1, row.id);
        while (q.step()) {
          Moved m{q.int64(0), row.id, q.int64(2), {}};
          m.file.state.path = q.text(1);
          read_segment_vectors(row.id, m.row, m.file.vectors);
          moved.push_back(std::move(m));
        }
        const auto header = segment_by_id(row.id)->header();
        for (const SegmentKind& k : header.kinds) {
          const auto it = encodings.find(k.kind);
          encodings[k.kind] =
              it == encodings.end() ? k.encoding : more_precise(it->second, k.encoding);
        }
      }
    } catch (const VanishedStoreFile&) {
      // Another writer merged or emptied these segments meanwhile; merging is opportunistic.
      spdlog::debug("segment merge of {} left to the next write: a segment moved", model_id);
      return;
    }
    std::sort(moved.begin(), moved.end(),
              [](const Moved& a, const Moved& b) { return a.file.state.path < b.file.state.path; });
    std::vector<const IndexedFile*> files;
    for (const Moved& m : moved) files.push_back(&m.file);
    std::vector<fs::path> written;
    try {
      write_transaction("merge segments", [&] {
        const auto merged = files.empty()
                                ? std::nullopt
                                : write_segment(model, model_id, files, encodings, written);
        sqlite::Statement update(db,
                                 "UPDATE files SET segment_id = ?1, segment_row = ?2 "
                                 "WHERE id = ?3 AND segment_id = ?4 AND segment_row = ?5",
                                 "merge segments");
        for (std::size_t r = 0; merged && r < moved.size(); ++r) {
          update.bind(1, *merged)
              .bind(2, static_cast<std::int64_t>(r))
              .bind(3, moved[r].file_id)
              .bind(4, moved[r].segment_id)
              .bind(5, moved[r].row)
              .run();
        }
        obsolete = drop_empty_segments(*this, model);
      });
    } catch (...) {
      remove_files(written);
      throw;
    }
    remove_files(obsolete);
    spdlog::debug("merged {} segments ({} files) of {}", merge.size(), moved.size(), model_id);
  }
}

void IndexStore::Impl::recover_segments() {
  if (read_only || !has_segments()) return;
  // Orphans: only a writer creates segment files, inside its write transaction, so under the
  // write lock every file that no row names is left over from a crash.
  std::error_code ec;
  if (fs::is_directory(segments_dir(), ec)) {
    std::vector<fs::path> orphans;
    write_transaction("clean up segments", [&] {
      std::set<std::string> named;
      sqlite::Statement q(db, "SELECT file_name FROM segments", "clean up segments");
      while (q.step()) named.insert(q.text(0));
      if (has_ann()) {
        sqlite::Statement a(db, "SELECT file_name FROM ann_indexes", "clean up segments");
        while (a.step()) named.insert(a.text(0));
      }
      const auto now = fs::file_time_type::clock::now();
      for (const auto& entry : fs::directory_iterator(segments_dir(), ec)) {
        const std::string name = entry.path().filename().string();
        const std::string extension = entry.path().extension().string();
        if ((extension == ".seg" || extension == ".ann") && !named.count(name)) {
          orphans.push_back(entry.path());
        }
        // An index being built is written without the lock (it takes minutes) and renamed
        // under it; one left by a crashed build is recognised by its age.
        std::error_code time_ec;
        if (extension == ".partial" &&
            now - fs::last_write_time(entry.path(), time_ec) > std::chrono::hours(6) && !time_ec) {
          orphans.push_back(entry.path());
        }
      }
    });
    if (!orphans.empty()) spdlog::info("removed {} unfinished vector segments", orphans.size());
    remove_files(orphans);
  }
  // Vectors of a store older than schema 3, moved in batches (one transaction each, so a crash
  // keeps what moved and the next open carries on).
  const std::int64_t inline_rows =
      db.query_int("SELECT count(*) FROM (SELECT 1 FROM vectors LIMIT 1)", "find inline vectors");
  if (inline_rows == 0) return;
  spdlog::info("moving the vectors of {} into segment files (once)", db.path().string());
  while (true) {
    std::int64_t moved = 0;
    std::vector<fs::path> written;
    try {
      write_transaction("move vectors into segments", [&] {
        sqlite::Statement q(db,
                            "SELECT DISTINCT f.id, f.model, f.path, m.model_id FROM vectors v "
                            "JOIN files f ON f.id = v.file_id JOIN models m ON m.id = f.model "
                            "ORDER BY f.model, f.path LIMIT 4096",
                            "move vectors into segments");
        std::vector<std::pair<std::int64_t, IndexedFile>> files;
        std::int64_t model = -1;
        std::string model_id;
        while (q.step()) {
          if (model >= 0 && q.int64(1) != model) break;  // one model per segment
          model = q.int64(1);
          model_id = q.text(3);
          IndexedFile file;
          file.state.path = q.text(2);
          files.emplace_back(q.int64(0), std::move(file));
        }
        q.reset();
        for (auto& [id, file] : files) read_captions_and_vectors(id, file);
        std::vector<const IndexedFile*> pointers;
        for (auto& [id, file] : files) pointers.push_back(&file);
        // Old vectors were exact; they stay exact.
        std::map<VectorKind, VectorEncoding> exact;
        for (VectorKind k : {VectorKind::kImageProj, VectorKind::kImageEmbed, VectorKind::kTextProj,
                             VectorKind::kMultimodal}) {
          exact[k] = VectorEncoding::kFloat32;
        }
        const auto segment_id = write_segment(model, model_id, pointers, exact, written);
        sqlite::Statement update(
            db, "UPDATE files SET segment_id = ?1, segment_row = ?2 WHERE id = ?3", "move vectors");
        sqlite::Statement drop(db, "DELETE FROM vectors WHERE file_id = ?1", "move vectors");
        for (std::size_t r = 0; r < files.size(); ++r) {
          update.bind(1, *segment_id)
              .bind(2, static_cast<std::int64_t>(r))
              .bind(3, files[r].first)
              .run();
          drop.bind(1, files[r].first).run();
        }
        moved = static_cast<std::int64_t>(files.size());
      });
    } catch (...) {
      remove_files(written);
      throw;
    }
    if (moved == 0) break;
  }
}

}  // namespace mmsearch
