// Running the model over the files of an indexing run (see indexer.h), and the vectors stored
// from its outputs.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "mmsearch/encoder.h"
#include "mmsearch/image.h"
#include "mmsearch/index.h"
#include "mmsearch/index_plan.h"

namespace mmsearch {

// The vectors stored for one image / one caption, from the encoder's outputs for batch row b.
// Projections keep every row the retrieval rule needs (BLIP: the CLS row; BLIP-2: the 32 query
// rows); unprojected embeddings are stored as one L2-normalised summary row (BLIP: CLS;
// BLIP-2: the mean of the query outputs), which is what image-multimodal comparisons use.
StoredVectors image_proj_vectors(const Manifest& manifest, const torch::Tensor& proj, int b);
StoredVectors summary_vectors(const Manifest& manifest, const torch::Tensor& embeds, int b,
                              VectorKind kind, int caption_index);

// Peak bytes one decode and its preprocessing need per pixel, from measured 48-Mpx photos
// (8-bit RGB PNG 6.2, 16-bit grey PNG 4.4, JPEG 3.6, each including the file's bytes).
constexpr std::int64_t kDecodeBytesPerPixel = 7;
constexpr std::int64_t kDefaultDecodeMemoryBytes = std::int64_t{1} << 30;

struct EmbedOptions {
  int batch_size = 16;     // images per model call
  int decode_workers = 1;  // threads decoding ahead of the model
  // What the decoding workers may hold at once, estimated from each image's header (see
  // kDecodeBytesPerPixel); one image larger than this is decoded alone.
  std::int64_t decode_memory_bytes = kDefaultDecodeMemoryBytes;
  DecodeOptions decode;
};

// Where an embedding run's wall time went, for `index --json` and scripts/bench.sh. The first
// batch is kept apart: it pays one-time costs (TorchScript's profiling runs, oneDNN kernel
// creation), so the steady-state rate is the rest.
struct EmbedTiming {
  double seconds = 0;                     // the whole embed-and-commit loop
  double decode_wait_seconds = 0;         // the loop waited for decoded images
  double image_forward_seconds = 0;       // image module calls
  double text_forward_seconds = 0;        // text module calls
  double multimodal_forward_seconds = 0;  // multimodal module calls
  double commit_seconds = 0;              // on_batch: the store's transaction
  double first_batch_seconds = 0;
  double first_batch_forward_seconds = 0;        // all three modules, first batch
  double first_batch_image_forward_seconds = 0;  // the image module, first batch
  std::int64_t first_batch_items = 0;            // decoded files of the first batch
  std::int64_t items = 0;                        // decoded files, all batches
  std::int64_t batches = 0;

  double forward_seconds() const {
    return image_forward_seconds + text_forward_seconds + multimodal_forward_seconds;
  }
  void add(const EmbedTiming& other);
};

// One batch's outcome: a complete record per decoded file, and the files that failed to decode.
struct EmbeddedBatch {
  std::vector<IndexedFile> records;
  std::vector<IndexFailure> failures;
};

// Embeds the jobs' images and captions in batches of options.batch_size: one image pass, then
// text and multimodal passes over the batch's captions in chunks of at most batch_size (so a
// file with thousands of captions stays bounded in memory), while the next batch
// decodes on options.decode_workers threads. Calls on_batch once per batch, in order, on the
// calling thread. Throws what the model (or on_batch) throws. Adds its times to *timing when
// given.
void embed_files(Encoder& encoder, const std::vector<FileJob>& jobs, const EmbedOptions& options,
                 const std::function<void(EmbeddedBatch&)>& on_batch,
                 EmbedTiming* timing = nullptr);

}  // namespace mmsearch
