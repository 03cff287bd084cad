// Indexing a folder: find images by content, read captions, embed what changed, and store it.
//
// Incremental: a file whose size and mtime match its stored record, with the same captions and
// category, is not touched. A changed size/mtime leads to a content hash; the same hash (a
// touched file, a rename, a duplicate) reuses the stored vectors instead of running the model.
// Files that disappeared from the folder, or that it no longer yields (not an image any more,
// hidden now), leave the index; a run that would remove most of a folder stops first
// (check_removal_share, index_plan.h).
//
// Crash safety: files are written in batches, each one SQLite transaction (see index.h), so a
// kill at any moment keeps every batch committed before it and a rerun resumes.
//
// Translation (issue 6): with IndexOptions::translate set, every caption is embedded in English.
// The English text comes from the store's translation cache (keyed by translator_id and the
// caption text); the misses of a run are deduplicated and translated in one call before
// anything is written, and stored in the cache (translate_cached, translation.h), so a re-index
// never translates again. The store keeps Caption{text = original, text_en = English}. Blank
// captions stay blank (no translation). A translator failure throws before the index is touched.
//
// Change of translator: a file is unchanged only when its stored captions match the wanted ones
// in both text and text_en, where the wanted text_en is the current translator's output
// (empty without translation). So adding, dropping or switching the translator re-embeds
// the files whose captions' English text changes, and a translator that gives the same English
// leaves them as they are: the vectors depend only on the text that was embedded. (Content-hash
// reuse also requires equal text_en, so such a file runs through the model again; that costs
// one embedding per file, once per translator change.)
//
// Concurrency: decoding and preprocessing of the next batch run on worker threads while the
// model embeds the current one.
//
// A run has four steps, each in its own file: plan (index_plan.h: find the images, read the
// captions, decide per file), translate (translation.h: the captions' English, cache first),
// embed (index_embed.h: decode ahead and run the model per batch) and commit (index_commit.h:
// one transaction per batch, removals). index_folder() runs them in that order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mmsearch/encoder.h"
#include "mmsearch/image.h"
#include "mmsearch/index.h"
#include "mmsearch/index_embed.h"
#include "mmsearch/index_plan.h"
#include "mmsearch/translation.h"

namespace mmsearch {

struct IndexProgress {
  std::int64_t done = 0;   // files dealt with so far (embedded, reused, unchanged or failed)
  std::int64_t total = 0;  // files found
  std::int64_t embedded = 0;
};

struct IndexOptions {
  bool include_hidden = false;  // descend into folders and files whose name starts with '.'
  int batch_size = 16;          // images per model call and per committed transaction
  int decode_workers = 1;       // threads decoding ahead of the model
  std::int64_t decode_memory_bytes = kDefaultDecodeMemoryBytes;  // see EmbedOptions
  DecodeOptions decode;
  std::function<void(const IndexProgress&)> on_progress;  // called from the indexing thread
  // Called for every file that fails (path, reason), as it happens, so the CLI can log it.
  std::function<void(const std::string&, const std::string&)> on_failure;
  // Optional caption translation (see above): one English string per input, same order. Called
  // at most once per run, with the distinct non-blank captions missing from the cache; may
  // throw (e.g. Error(kModel) when the translation model can't be loaded), which aborts the
  // run before anything is written.
  TranslateFunction translate;
  // Names the translation model and its weights for the cache (e.g. "opus-mt-it-en@<sha256>");
  // required when `translate` is set.
  std::string translator_id;
  // Re-embed every file under the root, trusting nothing stored: no file counts as unchanged
  // and no stored vectors are reused (for a store whose vectors are damaged, or after a model
  // fix). Captions and translations are still read from the cache.
  bool rebuild = false;
  // Let a run remove most or all of a folder's indexed files (check_removal_share in
  // index_plan.h refuses that otherwise, as the sign of an unmounted drive).
  bool confirm_removal = false;
  // How the captions file is read (index --lenient-captions: damaged rows become warnings).
  CaptionOptions captions;
};

struct IndexSummary {
  std::string root;
  std::string model_id;
  std::int64_t found = 0;      // image files found under root
  std::int64_t indexed = 0;    // embedded by the model
  std::int64_t reused = 0;     // stored again with vectors reused by content hash
  std::int64_t unchanged = 0;  // left as they were
  std::int64_t removed = 0;    // gone from disk, removed from the index
  std::int64_t failed = 0;
  std::int64_t translated = 0;           // distinct captions translated by the model this run
  std::int64_t translations_cached = 0;  // distinct captions whose translation was cached
  std::vector<IndexFailure> failures;
  std::vector<std::string> warnings;  // captions-file rows skipped, unreadable folders...
  double seconds = 0;
  double load_seconds = 0;  // model modules loaded before the first batch (0 when none ran)
  EmbedTiming timing;       // the embedding runs (see index_embed.h)
};

// Indexes root (recursively) with the encoder's model into the store. Per-file problems are
// counted and listed, never thrown; throws only when root is not a readable folder (kInput) or
// the store fails (kIndex).
IndexSummary index_folder(Encoder& encoder, IndexStore& store, const std::filesystem::path& root,
                          const IndexOptions& options);

}  // namespace mmsearch
