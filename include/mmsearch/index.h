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
// * Versioning: the `meta` table carries `schema_version`; a store written by a newer mmsearch
//   is refused (Error kIndex) rather than misread. Older versions are migrated on open.
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
// bad arguments (kUsage) and unreadable files given to hash_file() (kInput).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mmsearch/search.h"

namespace mmsearch {

// ---------------------------------------------------------------------------------------------
// Where the store lives.

// The per-user data folder: $MMSEARCH_HOME if set and non-empty, else $XDG_DATA_HOME/mmsearch,
// else $HOME/.local/share/mmsearch. Does not create it. Throws Error(kUsage) when none of the
// variables is usable (relative values are ignored, as the XDG spec says).
std::filesystem::path default_data_dir();
// default_data_dir() / "index.sqlite3".
std::filesystem::path default_index_path();

// The canonical form of a path as stored and matched: absolute, lexically normal, no trailing
// slash (except "/"). Symlinks are not resolved: the user's view of the tree is kept.
std::string normalize_index_path(const std::filesystem::path& path);

// ---------------------------------------------------------------------------------------------
// Content hash.
//
// XXH64 (seed 0) of the file's bytes, stored as "xxh64:<16 hex digits>". Why XXH64 and not
// SHA-256: the hash only has to recognise the same photo under another name (rename,
// duplicate) and a touched-but-unchanged file, it guards no security boundary. XXH64 runs at
// memory speed (~10 GB/s), so hashing never shows next to decoding, while SHA-256 without
// hardware support (~0.4 GB/s) would dominate an incremental rerun. Accidental collisions are
// negligible (p ~ n^2 / 2^65, ~3e-8 for a million photos), and reuse also requires the same
// size. The algorithm name is part of the value, so a later change of hash cannot match old
// values by accident.
std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0);
// Streams the file in 1 MiB blocks. Throws Error(kInput) naming the file when it can't be read.
std::string hash_file(const std::filesystem::path& path);

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

struct ModelUsage {
  std::string model_id;
  std::int64_t file_count = 0;
};

// ---------------------------------------------------------------------------------------------
// The store.

class IndexStore {
 public:
  static constexpr int kSchemaVersion = 1;

  enum class Mode {
    kReadWrite,  // creates the parent folder and the database when missing
    kReadOnly,   // Error(kIndex) when the database does not exist; never writes
  };

  // Opens (and for kReadWrite creates or migrates) the store. Throws Error(kIndex) for a file
  // that is not an mmsearch index, a newer schema, a corrupt database, or a lock timeout.
  explicit IndexStore(const std::filesystem::path& path, Mode mode = Mode::kReadWrite,
                      int busy_timeout_ms = 5000);
  ~IndexStore();
  IndexStore(IndexStore&&) noexcept;
  IndexStore& operator=(IndexStore&&) noexcept;
  IndexStore(const IndexStore&) = delete;
  IndexStore& operator=(const IndexStore&) = delete;

  const std::filesystem::path& path() const;

  // --- writing (each call is one transaction, durable on return) ---

  // Inserts or replaces every file of `files` under `model_id`, atomically: after a crash
  // either the whole batch is present or none of it. Checks shapes (values.size() ==
  // rows * cols, caption_index in range) before writing and throws Error(kUsage) on a
  // mismatch. Batches of 16-256 files amortise the fsync; see the measured rates in
  // tests/bench.
  void upsert_batch(const std::string& model_id, const std::vector<IndexedFile>& files);

  // Removes the given paths (normalised here) of `model_id`, with their captions and vectors.
  // Returns how many rows existed.
  std::int64_t remove_paths(const std::string& model_id, const std::vector<std::string>& paths);

  // Removes the files of `model_id` under `scope` whose path no longer exists on disk (as
  // std::filesystem::exists sees it). Returns the removed paths, sorted.
  std::vector<std::string> remove_missing(const std::string& model_id,
                                          const std::filesystem::path& scope);

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

  // The files of `model_id` under `scope`, ordered by path, with their captions.
  std::vector<FileListing> list_files(const std::string& model_id,
                                      const std::filesystem::path& scope) const;

  // Every vector block of `kind` for files of `model_id` under `scope`, in one contiguous
  // matrix. Throws Error(kIndex) when blocks disagree in shape (a corrupt or mixed store).
  // Returns an empty LoadedVectors (count 0) when nothing matches.
  LoadedVectors load_vectors(const std::string& model_id, const std::filesystem::path& scope,
                             VectorKind kind) const;

  // Which models have indexed files under `scope`, most files first. Used to say "this folder
  // was indexed with model X; run `mmsearch index --model X`" or "not indexed yet".
  std::vector<ModelUsage> models_in_scope(const std::filesystem::path& scope) const;

  // Every model id known to the store.
  std::vector<std::string> models() const;

  // --- translation cache (issue 6) ---
  //
  // English translations of caption / query texts, keyed by (translator id, source text); the
  // translator id names the translation model and its weights (e.g.
  // "opus-mt-it-en@<sha256 of decoder.pt>"), so another model never reuses an entry. The table
  // `translations` is created on read-write open (CREATE TABLE IF NOT EXISTS: a store of
  // schema version 1 made before it stays version 1 and readable by older builds). A read-only
  // open of a store without the table does not fail: lookups then find nothing.

  // The cached translations of `texts` under `translator_id` (source text -> translation);
  // texts with no entry are absent from the map. Duplicates in `texts` are looked up once.
  std::unordered_map<std::string, std::string> find_translations(
      const std::string& translator_id, const std::vector<std::string>& texts) const;
  // Stores (source text, translation) pairs, replacing existing entries, in one transaction.
  // Throws Error(kUsage) for an empty translator id, Error(kUsage) on a read-only store.
  void put_translations(const std::string& translator_id,
                        const std::vector<std::pair<std::string, std::string>>& pairs);

  // PRAGMA integrity_check: "ok" or SQLite's list of problems.
  std::string integrity_check() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmsearch
