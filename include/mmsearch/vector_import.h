// Vectors computed elsewhere (another machine, a cluster, a GPU box) into the index, and the
// index's vectors out, in the folder format of models/README.md ("Vector import/export
// format"): metadata.jsonl (line i = item i), image_proj.npy [N, Q, E] (or [N, E] when Q is 1),
// the optional text_proj.npy [C, E], image_embed.npy [N, D] and multimodal.npy [C, D] (C = all
// captions in metadata order), and format.json (format version, xxh64 checksums).
//
// Usage:
//   const VectorFolder folder = open_vector_folder(dir, bundle.manifest(), bundle.identity(), {});
//   import_vectors(folder, &store, {});          // or nullptr: check every row, write nothing
//   export_vectors(store, bundle.identity(), bundle.manifest(), scope, out, {});
//
// Import is streamed: memory holds one batch of items whatever N is. Everything but the vector
// values is checked before the first write (format version, checksums, every metadata line,
// every array's shape against the model and the metadata counts); each row's norm is checked
// as its batch is read, so a bad row stops the import after the batches before it. Every batch
// is one IndexStore::upsert_batch() transaction and upsert replaces by path, so a rerun after a
// crash or a fix redoes the import idempotently. Imported records look like indexed ones: the
// same kinds and shapes under the bundle's identity, rows renormalised to unit length. A file
// that exists here gets its size and mtime, so `mmsearch index` of its folder finds it
// unchanged; one that does not gets size 0 and mtime 0 (index embeds it once it appears). The
// content hash stays empty (the bytes were never read), so content-hash reuse never picks an
// imported record.
//
// Errors: Error(kInput) naming the file (and line or row) for anything wrong in the folder;
// Error(kModel) when format.json names another model; store errors as IndexStore throws them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mmsearch/bundle.h"
#include "mmsearch/index.h"
#include "mmsearch/vector_format.h"

namespace mmsearch {

// The row shapes of a model's arrays.
struct VectorShapes {
  int image_proj_rows = 1;  // Q: image_proj_rows(manifest), 1 for BLIP, query_tokens for BLIP-2
  int embed = 0;            // E: dims.embed
  int hidden = 0;           // D: dims.hidden (image_embed and multimodal summaries)
};
VectorShapes vector_shapes(const Manifest& manifest);

// The array files of the format, image_proj (required) first.
struct VectorArrayFile {
  VectorKind kind;
  const char* file;  // "image_proj.npy", ...
};
const std::vector<VectorArrayFile>& vector_array_files();

struct VectorImportOptions {
  std::filesystem::path root;  // relative "file" paths resolve here; empty: the folder itself
  bool verify_checksums = true;
  bool any_model = false;  // accept a format.json naming another model identity
};

// A vector folder checked against a model, before any vector is read (see above).
struct VectorFolder {
  std::filesystem::path dir;   // absolute
  std::filesystem::path root;  // absolute
  std::string model_id;
  VectorShapes shapes;
  VectorFormat format;
  std::int64_t items = 0;
  std::int64_t captions = 0;
  std::vector<VectorKind> kinds;  // arrays present, in vector_array_files() order
  std::string dtype;              // of image_proj.npy: "<f4" or "<f2"
  std::vector<std::string> warnings;
};

VectorFolder open_vector_folder(const std::filesystem::path& dir, const Manifest& manifest,
                                const std::string& model_id, const VectorImportOptions& options);

// Streams the folder's items as store records, `batch_size` items at a time, in metadata order.
// Throws Error(kInput) naming the array and row for a row whose norm is not 1 within 1e-2.
// The records are refilled in place for the next batch (their buffers are reused); `visit` may
// change them or move them out.
void read_vector_records(const VectorFolder& folder, std::size_t batch_size,
                         const std::function<void(std::vector<IndexedFile>&)>& visit);

// Items per batch when none is given: 16384, fewer when that would hold more than 160 MiB of
// vectors (BLIP-2 with E = 256, D = 768 and a caption each: about 4300). Each batch becomes
// one segment large enough that the store does not merge it again (docs/STORE.md).
std::size_t default_import_batch(const VectorFolder& folder);

struct VectorProgress {
  std::int64_t done = 0;
  std::int64_t total = 0;
};

struct VectorImportSummary {
  std::int64_t items = 0;
  std::int64_t captions = 0;
  std::int64_t local_files = 0;  // items whose file exists on this machine
  std::int64_t batches = 0;
  double seconds = 0;
};

// Reads the folder with read_vector_records() on a second thread and upserts every batch into
// `store` on the calling one (nullptr: a dry run that checks every row and writes nothing), so
// reading batch k+1 overlaps writing batch k; memory holds two batches. batch_size 0:
// default_import_batch(). on_progress is called on the calling thread after each batch.
VectorImportSummary import_vectors(const VectorFolder& folder, IndexStore* store,
                                   std::size_t batch_size,
                                   const std::function<void(const VectorProgress&)>& on_progress);

struct VectorExportOptions {
  bool half = false;  // write float16 ("<f2") instead of float32
  // Write each "file" relative to the scope (to its folder when the scope is one file), so the
  // folder can be imported elsewhere with --root; absolute paths otherwise.
  bool relative = false;
  std::size_t batch_size = 512;  // files per store read
  std::function<void(const VectorProgress&)> on_progress;
  std::string created_by;  // recorded in format.json
};

struct VectorExportSummary {
  std::int64_t items = 0;
  std::int64_t captions = 0;
  std::vector<std::string> files;     // written, metadata.jsonl and format.json included
  std::vector<std::string> warnings;  // arrays left out, and why
  double seconds = 0;
};

// Writes every file of `model_id` under `scope` to the folder `out` (created if needed), ordered
// by path, streaming through IndexStore::visit_files(). An optional array is written only when
// every item (or caption) has its vectors, else left out with a warning. Files are written
// under temporary names and renamed at the end, format.json last, so a crash leaves the
// previous export or the new one, and a mix is caught by the checksums. Throws Error(kIndex)
// when the store holds nothing of the model under scope or a record has unexpected shapes,
// Error(kInput) when `out` can't be written.
VectorExportSummary export_vectors(const IndexStore& store, const std::string& model_id,
                                   const Manifest& manifest, const std::filesystem::path& scope,
                                   const std::filesystem::path& out,
                                   const VectorExportOptions& options);

}  // namespace mmsearch
