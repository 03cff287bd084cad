// The persistent index store: one SQLite database per user holding, for every (model, file),
// the file's identity (absolute path, size, mtime, content hash), its category and captions,
// and the vectors the model computed for the image and for each caption.
//
// Usage:
//   mmsearch::IndexStore store(mmsearch::default_index_path());
//   std::vector<mmsearch::IndexedFile> batch = ...;     // e.g. 32 embedded files
//   store.upsert_batch(model_id, batch);                // one transaction: durable on return
//   auto rows = store.load_vectors(model_id, scope, mmsearch::VectorKind::kImageProj);
//
// Guarantees:
// * Durability: WAL journal with synchronous=FULL. When upsert_batch() returns, the batch is on
//   disk; kill -9 (or power loss) at any moment after that keeps it. A batch interrupted before
//   its commit is rolled back entirely by SQLite on the next open: the store is never half
//   written, and a crash loses at most the batch that was being written.
// * Versioning: the `meta` table carries `schema_version` (history in src/store_schema.cpp:
//   1 = files, captions, vectors; 2 = + translation cache; 3 = vectors in segment files; 4 = +
//   approximate-search indexes). A store written by a newer mmsearch is refused (Error kIndex)
//   rather than misread. An older store is migrated by a read-write open, one version step per
//   transaction; a read-only open never writes and reads an older store as it is: what later
//   versions added is absent (e.g. translation lookups on a version-1 store without the cache find
//   nothing) until a read-write open.
// * Models never mix: every file row belongs to one model id, and every query names its model.
//   The model id is the caller's (bundle name + hash of its manifest, e.g. "blip-base@3fa94c1d"),
//   so re-exporting a bundle with other weights gives another id and never reuses old vectors.
//
// Thread-safety: an IndexStore is one SQLite connection and is not thread-safe; use it from one
// thread (open one IndexStore per thread if needed). Across processes, any number of readers
// may run while one writer writes (WAL); a second writer waits up to `busy_timeout_ms` and then
// gets Error kIndex ("locked by another mmsearch process").
//
// Errors: every failure throws mmsearch::Error(kIndex, message naming the store path), except
// bad arguments and writes to a read-only store (kUsage).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// Where the store lives (default_index_path), the path form it stores and the content hash
// (hash_file): users of the store need them, and they were declared here before.
#include "mmsearch/hash.h"
#include "mmsearch/paths.h"
#include "mmsearch/search.h"
#include "mmsearch/segment.h"

namespace mmsearch {

// ---------------------------------------------------------------------------------------------
// Records.

// One block of vectors: `rows` vectors of `cols` float32, row-major.
struct StoredVectors {
  VectorKind kind = VectorKind::kImageProj;
  int caption_index = -1;  // -1 for image kinds; the caption's position for caption kinds
  int rows = 0;
  int cols = 0;
  std::vector<float> values;  // rows * cols
};

struct Caption {
  std::string text;     // as given in the captions file
  std::string text_en;  // English translation, empty when none (issue 6 fills it)
};

// What the incremental check needs: identity of the file's bytes when it was indexed.
struct FileState {
  std::string path;  // normalize_index_path() form
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string content_hash;  // hash_file() form
};

// Everything stored for one file under one model. upsert_batch() replaces the previous record
// of (model, path) entirely: captions and vectors not given are gone afterwards.
struct IndexedFile {
  FileState state;
  std::string category;  // may be empty
  std::vector<Caption> captions;
  std::vector<StoredVectors> vectors;
};

// A file as listed from the store (no vectors).
struct FileListing {
  std::int64_t file_id = 0;  // stable while the row exists; not reused across models
  FileState state;
  std::string category;
  std::vector<Caption> captions;
};

// One row of a loaded matrix: which file (and caption, for caption kinds) it belongs to.
struct VectorOwner {
  std::int64_t file_id = 0;
  std::string path;
  std::string category;
  int caption_index = -1;  // -1 for image kinds
  std::string caption;  // the row's caption for caption kinds; the file's first caption otherwise
  std::string caption_en;
};

// All vectors of one kind under a scope: item i of `embeddings` belongs to owners[i]. Items are
// ordered by path, then caption index, so repeated loads give the same order.
struct LoadedVectors {
  std::vector<VectorOwner> owners;
  Embeddings embeddings;
};

// One query term of IndexStore::search(): a query item (count 1), the rule that scores it
// against the stored kind, and its weight in the fused score (search.h, Fusion).
struct SearchTerm {
  Embeddings query;
  ScoreRule rule = ScoreRule::kCls;
  float weight = 1.0f;
};

struct SearchRequest {
  VectorKind kind = VectorKind::kImageProj;
  std::vector<SearchTerm> terms;
  std::int64_t k = 10;
  float threshold = -std::numeric_limits<float>::infinity();
  // Files never returned (the query images themselves), as paths.
  std::vector<std::string> excluded_paths;
  // Items whose full vectors may be re-scored after the first stage (BLIP-2 max over queries):
  // 0 = the default (kDefaultMaxRescored). The search stops earlier as soon as the first
  // stage's bounds prove the top k exact.
  std::int64_t max_rescored = 0;
  // Re-score as many as it takes to prove the result exact, however many that is, and never
  // use the approximate-search index.
  bool exact = false;
  // Lists of the approximate-search index to probe (0: the index's default). Only used when
  // the model has such an index for `kind` (build_ann) and `exact` is false.
  std::int64_t nprobe = 0;
};

struct SearchMatch {
  VectorOwner owner;
  float score = 0.0f;
  std::vector<float> term_scores;  // per term, in request order
};

struct SearchResult {
  std::vector<SearchMatch> matches;  // best first; ties by path, then caption
  std::int64_t searched = 0;         // entries in the scope (items, or captions for caption kinds)
  std::int64_t rescored = 0;         // entries whose full vectors were re-scored
  bool proven_exact = true;          // the first stage's bounds prove the top k exact
  // The approximate-search index chose the candidates of the segments it covers (their scores
  // are still exact); `ann_entries` of the entries searched were behind it.
  bool approximate = false;
  std::int64_t ann_entries = 0;
  std::int64_t nprobe = 0;
  // Where the time went: choosing the segments and their live rows, the approximate-search
  // index (its candidates re-scored), the exact first stage, the second stage, and reading the
  // owners of the results from SQLite.
  double select_ms = 0, ann_ms = 0, scan_ms = 0, rescore_ms = 0, owners_ms = 0;
};

inline constexpr std::int64_t kDefaultMaxRescored = 2048;

// An approximate-search index of one model and kind (build_ann).
struct AnnInfo {
  VectorKind kind = VectorKind::kImageProj;
  std::string file_name;
  std::int64_t entries = 0;  // entries it holds
  std::int64_t lists = 0;
  std::int64_t default_nprobe = 0;
  std::int64_t bytes = 0;
  std::int64_t created_at = 0;  // unix seconds
  // The model's live items, and those in segments written after the build (merges and new
  // batches), which every query scans exactly.
  std::int64_t live_items = 0;
  std::int64_t uncovered_items = 0;
};

// index and import keep an approximate-search index of image_proj once a model holds this
// many items, and rebuild it when more than kAnnStaleFraction of the items (and at least
// kAnnStaleItems) are outside it. At 1M BLIP items the exact scan of a query process took
// 66-96 ms on two cores and the index 4-6 ms, for a 30 s build (docs/PERFORMANCE.md).
inline constexpr std::int64_t kAnnAutoItems = 1'000'000;
inline constexpr double kAnnStaleFraction = 0.1;
inline constexpr std::int64_t kAnnStaleItems = 65'536;

struct ModelUsage {
  std::string model_id;
  std::int64_t file_count = 0;
};

// What remove_model() deleted.
struct RemovedRows {
  std::int64_t files = 0;
  std::int64_t captions = 0;
  std::int64_t vectors = 0;  // vector blocks (one per kind and caption), not single vectors
};

// ---------------------------------------------------------------------------------------------
// The store.

class IndexStore {
 public:
  // The schema version this build writes, and the newest it reads.
  static constexpr int kSchemaVersion = 4;

  enum class Mode {
    kReadWrite,  // creates the parent folder and the database when missing
    kReadOnly,   // Error(kIndex) when the database does not exist; never writes
  };

  // Opens (and for kReadWrite creates or migrates) the store. Throws Error(kIndex) for a file
  // that is not an mmsearch index, a newer schema, a corrupt database, or a lock timeout (a
  // migration needs the write lock).
  explicit IndexStore(const std::filesystem::path& path, Mode mode = Mode::kReadWrite,
                      int busy_timeout_ms = 5000);
  ~IndexStore();
  IndexStore(IndexStore&&) noexcept;
  IndexStore& operator=(IndexStore&&) noexcept;
  IndexStore(const IndexStore&) = delete;
  IndexStore& operator=(const IndexStore&) = delete;

  const std::filesystem::path& path() const;
  // The schema version of the open file: kSchemaVersion, or lower for a read-only open of a
  // store that no read-write open has migrated yet.
  int schema_version() const;

  // --- writing (each call is one transaction, durable on return) ---

  // Inserts or replaces every file of `files` under `model_id`, atomically: after a crash
  // either the whole batch is present or none of it. Checks shapes (values.size() ==
  // rows * cols, caption_index in range) before writing and throws Error(kUsage) on a
  // mismatch. Batches of 16-256 files amortise the fsync; see the measured rates in
  // tests/bench.
  void upsert_batch(const std::string& model_id, const std::vector<IndexedFile>& files);

  // How this connection's writes encode vectors (default fp16; see segment.h). Queries read
  // every encoding; a merge keeps the most precise encoding of the segments it merges.
  void set_vector_encoding(VectorEncoding encoding);
  VectorEncoding vector_encoding() const;

  // Removes the given paths (normalised here) of `model_id`, with their captions and vectors.
  // Returns how many rows existed.
  std::int64_t remove_paths(const std::string& model_id, const std::vector<std::string>& paths);

  // Removes everything of one model (its files with their captions and vectors, and the model
  // id itself) in one transaction, e.g. for a bundle that no longer exists; other models are
  // untouched. A model the store does not hold removes nothing. The file does not shrink by
  // itself: the space is reused by later writes, or returned by vacuum().
  RemovedRows remove_model(const std::string& model_id);

  // Rewrites the database without its free pages (SQLite VACUUM) and returns the bytes freed.
  // Needs free disk space of up to the store's size while it runs, and the write lock (waits
  // for other writers like any write); concurrent readers are fine. Throws Error(kUsage) on a
  // read-only store.
  std::int64_t vacuum();

  // --- reading ---

  // The stored state of one file, for the incremental check; nullopt when not indexed.
  std::optional<FileState> find_file(const std::string& model_id,
                                     const std::filesystem::path& path) const;

  // The states of every file under `scope` (keyed by normalised path): one query, for checking
  // a whole folder against the file system quickly.
  std::unordered_map<std::string, FileState> file_states(const std::string& model_id,
                                                         const std::filesystem::path& scope) const;

  // A file of `model_id` with this content hash and size (any path; the lowest file id when
  // several), with its captions and all its vectors, or nullopt. For a renamed or duplicate
  // file: its image vectors can be reused as they are; its caption vectors only where the
  // caption text is identical.
  std::optional<IndexedFile> find_by_content_hash(const std::string& model_id,
                                                  const std::string& content_hash,
                                                  std::int64_t size) const;

  // Every file of `model_id` under `scope` with its captions and all its vectors (as
  // upsert_batch() took them), ordered by path, handed to `visit` `batch_size` files at a time:
  // memory stays bounded by one batch however large the scope. `visit` may move the files out.
  // For exporting a store (mmsearch export-vectors) or copying it elsewhere.
  void visit_files(const std::string& model_id, const std::filesystem::path& scope,
                   std::size_t batch_size,
                   const std::function<void(std::vector<IndexedFile>& batch)>& visit) const;

  // The files of `model_id` under `scope`, ordered by path, with their captions.
  std::vector<FileListing> list_files(const std::string& model_id,
                                      const std::filesystem::path& scope) const;

  // Every vector block of `kind` for files of `model_id` under `scope`, in one contiguous
  // matrix. Throws Error(kIndex) when blocks disagree in shape (a corrupt or mixed store).
  // Returns an empty LoadedVectors (count 0) when nothing matches.
  LoadedVectors load_vectors(const std::string& model_id, const std::filesystem::path& scope,
                             VectorKind kind) const;

  // The k best entries of `request.kind` under `scope` for the fused terms, reading only what
  // it scores: the mapped segment arrays of that kind, the SQLite rows of the segments that
  // are not wholly inside the scope or have dead rows, and the rows of the k results. Kinds of
  // several vectors per item (BLIP-2 image_proj) are scanned by their first stage (mean,
  // radius) and the candidates re-scored exactly, best upper bound first, until the bounds
  // prove the top k or max_rescored is reached (then proven_exact is false). Scores equal
  // exact search over the stored encoding. Runs in one read snapshot: a concurrent writer
  // never shows half a batch. Throws Error(kIndex) for a damaged segment (checksum).
  SearchResult search(const std::string& model_id, const std::filesystem::path& scope,
                      const SearchRequest& request) const;

  // --- approximate search (mmsearch/ann_index.h, docs/STORE.md) ---

  // Builds (or replaces) the approximate-search index of `kind` over every live entry of
  // `model_id`: `lists` inverted lists (0: about sqrt(entries)). Reads the vectors from the
  // segments without holding the write lock, which it takes only to register the new file.
  // Minutes at 10M entries; progress goes to the log. Throws Error(kUsage) for a model the
  // store does not hold or fewer entries than lists, Error(kUsage) on a read-only store.
  AnnInfo build_ann(const std::string& model_id, VectorKind kind, std::int64_t lists = 0);
  // The index of `kind`, nullopt when the model has none.
  std::optional<AnnInfo> ann_info(const std::string& model_id, VectorKind kind) const;
  // Removes the index of `kind`; returns whether there was one.
  bool drop_ann(const std::string& model_id, VectorKind kind);
  // What index and import call after writing: builds the image_proj index when the model has
  // reached kAnnAutoItems, or rebuilds a stale one (see above). Returns the new index, or
  // nullopt when nothing needed doing.
  std::optional<AnnInfo> refresh_ann(const std::string& model_id);

  // Up to `count` files of `model_id`, spread over the store by a hash of their id and `seed`
  // (repeatable), with their captions and vectors: query samples for measuring recall.
  std::vector<IndexedFile> sample_files(const std::string& model_id, std::int64_t count,
                                        std::uint64_t seed) const;

  // Which models have indexed files under `scope`, most files first. Lets a caller say which
  // model a folder was indexed with, or that it was not indexed yet. Counting reads every file
  // row in the scope (a few hundred ms at 1M files): a caller that only needs to know which
  // models are there asks model_ids_in_scope.
  std::vector<ModelUsage> models_in_scope(const std::filesystem::path& scope) const;

  // The models with at least one indexed file under `scope`, sorted; one index lookup each.
  std::vector<std::string> model_ids_in_scope(const std::filesystem::path& scope) const;

  // Every model id known to the store, sorted.
  std::vector<std::string> models() const;
  // Every model id known to the store with its number of files (0 once all were removed),
  // sorted by model id: what pruning needs to find models whose bundle is gone.
  std::vector<ModelUsage> model_usage() const;

  // --- translation cache (issue 6) ---
  //
  // English translations of caption / query texts, keyed by (translator id, source text); the
  // translator id names the translation model and its weights (e.g.
  // "opus-mt-it-en@<sha256 of decoder.pt>"), so another model never reuses an entry. The cache
  // is part of schema version 2; a read-only open of a version-1 store without it does not
  // fail: lookups then find nothing.

  // The cached translations of `texts` under `translator_id` (source text -> translation);
  // texts with no entry are absent from the map. Duplicates in `texts` are looked up once.
  std::unordered_map<std::string, std::string> find_translations(
      const std::string& translator_id, const std::vector<std::string>& texts) const;
  // Stores (source text, translation) pairs, replacing existing entries, in one transaction.
  // Throws Error(kUsage) for an empty translator id, Error(kUsage) on a read-only store.
  void put_translations(const std::string& translator_id,
                        const std::vector<std::pair<std::string, std::string>>& pairs);

  // --- maintenance ---

  // Bytes held by free pages (left by removals), which vacuum() would return to the disk.
  std::int64_t free_bytes() const;

  // PRAGMA integrity_check: "ok" or SQLite's list of problems.
  std::string integrity_check() const;

  // The state behind the store (src/store_impl.h); named here so the files implementing the
  // store can share helpers, opaque to everyone else.
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmsearch
