// Approximate search for very large collections: an inverted-file (IVF) index over the
// first-stage vectors of one kind of one model. docs/STORE.md ("Approximate search") has the
// design and the measurements behind it.
//
// FAISS trains the centroids (spherical k-means) and assigns vectors and queries to lists
// (its flat inner-product quantiser). The lists hold the store's int8 codes (one scale per
// vector) in a file of the segment container format (segment.h: versioned JSON header, XXH3
// per block) beside the segments, memory-mapped: a query maps only the lists it probes, checks
// each block before reading it and scans it with the same SIMD kernel as a segment. A damaged
// index is reported as a corrupt store, never searched, and concurrent queries share the page
// cache instead of each loading gigabytes.
//
// An entry's id packs where its exact vectors are: (segment id << 32) | entry in that segment.
// The index covers the segments it was built over (listed in the file); a query scans every
// other segment exactly, and drops ids whose segment is gone, whose row is dead or outside the
// scope, so nothing deleted or stale is ever returned. Candidates are re-scored exactly from
// the segments before they are ranked.
//
// Usage:
//   build_ann_file(path, model_id, kind, dim, total, segments, lists, source);
//   auto ann = AnnIndex::open(path);
//   ann->search(query, 256, ann->default_nprobe(), accept, hits);
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mmsearch/rules.h"
#include "mmsearch/segment.h"

namespace mmsearch {

inline std::int64_t ann_entry_id(std::int64_t segment_id, std::int64_t entry) {
  return (segment_id << 32) | entry;
}
inline std::int64_t ann_segment_of(std::int64_t id) { return id >> 32; }
inline std::int64_t ann_entry_of(std::int64_t id) { return id & 0xffffffffLL; }

// The number of lists for `entries` vectors when none is asked for: about sqrt(N), which keeps
// training and list assignment within minutes on two cores at 10M entries.
std::int64_t default_ann_lists(std::int64_t entries);

// Hands the vectors to index to `sink` in chunks: `rows` vectors of `dim` floats with their
// ids. Called twice by build_ann_file (once to sample the training set, once to add), and
// must hand the same vectors in the same order both times.
using AnnChunkSink =
    std::function<void(const float* rows, const std::int64_t* ids, std::int64_t n)>;
using AnnSource = std::function<void(const AnnChunkSink& sink)>;

// Trains on an evenly spaced sample of up to 64 vectors per list, assigns and encodes every
// vector and
// writes the index to `path` (created; durable on return). `total` is the number of vectors
// the source hands out. Throws Error(kUsage) for fewer vectors than lists, Error(kIndex) for
// disk errors.
void build_ann_file(const std::filesystem::path& path, const std::string& model_id, VectorKind kind,
                    int dim, std::int64_t total, const std::vector<std::int64_t>& segments,
                    std::int64_t lists, const AnnSource& source);

// One approximate hit: the inner product with the entry's int8 code, and the entry's id.
struct AnnHit {
  float score = 0.0f;
  std::int64_t id = 0;
};

class AnnIndex {
 public:
  // Maps and checks the index file: header, shapes, centroids and list offsets (the lists are
  // checked block by block as queries probe them). Throws Error(kIndex) for anything damaged.
  static std::shared_ptr<const AnnIndex> open(const std::filesystem::path& path);
  ~AnnIndex();
  AnnIndex(const AnnIndex&) = delete;
  AnnIndex& operator=(const AnnIndex&) = delete;

  const std::string& model_id() const;
  VectorKind kind() const;
  int dim() const;
  std::int64_t entries() const;
  std::int64_t lists() const;
  // The segments whose entries the index holds.
  const std::vector<std::int64_t>& segments() const;
  // Lists probed when the caller names none: enough for recall@10 >= 0.95 on the bench's data
  // (docs/PERFORMANCE.md); `mmsearch ann recall` measures it on a store's own data.
  std::int64_t default_nprobe() const;
  std::size_t file_bytes() const;

  // The `k` entries with the highest estimated inner product with `query` (dim floats) among
  // those `accept` takes, probing `nprobe` lists; best first. Thread-safe.
  void search(const float* query, std::int64_t k, std::int64_t nprobe,
              const std::function<bool(std::int64_t id)>& accept, std::vector<AnnHit>& hits) const;

  struct State;

 private:
  AnnIndex() = default;
  std::unique_ptr<State> state_;
};

}  // namespace mmsearch
