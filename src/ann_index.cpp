// The approximate-search index: an inverted file whose centroids FAISS trains (spherical
// k-means) and whose lists FAISS's coarse quantiser assigns, stored as the store's int8 codes in
// a mapped, checksummed file of the segment container format and scanned by the store's SIMD
// kernel (ann_index.h; docs/STORE.md says why not FAISS's own scanner).
#include "mmsearch/ann_index.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissException.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "elapsed.h"
#include "mmsearch/error.h"
#include "parallel_tasks.h"
#include "segment_internal.h"
#include "vector_kernels.h"

namespace mmsearch {
namespace fs = std::filesystem;
namespace {

using idx_t = faiss::Index::idx_t;

// Training takes at most this many vectors per list: k-means needs a few dozen per centroid to
// place it, and more only costs time (about sqrt(N) lists, so 200k vectors at 10M).
constexpr std::int64_t kTrainPerList = 64;
constexpr int kKmeansIterations = 10;
// Rows per checksum block of the lists: 16 KiB of int8 codes at 256 dimensions, and 16 KiB of
// ids. A probed list checks every block it overlaps, so blocks much larger than a list (~3k
// entries at 10M) hash mostly other lists' rows.
constexpr std::int64_t kCodeBlockRows = 64;
constexpr std::int64_t kIdBlockRows = 2048;
// Probed lists scored per task.
constexpr std::size_t kListsPerTask = 4;

std::string array_name(VectorKind kind, const char* part) {
  return segment_array_name(kind, std::string("ann.") + part);
}

[[noreturn]] void corrupt(const std::string& label, const std::string& reason) {
  throw Error(ErrorKind::kIndex, "approximate-search index " + label + " is corrupt (" + reason +
                                     "); rebuild it with `mmsearch ann build`");
}

// FAISS reports misuse with exceptions of its own; callers of this file see mmsearch errors.
template <typename Body>
auto faiss_call(const std::string& what, Body&& body) {
  try {
    return body();
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kIndex, what + ": " + e.what());
  }
}

}  // namespace

std::int64_t default_ann_lists(std::int64_t entries) {
  const auto root = static_cast<std::int64_t>(std::sqrt(static_cast<double>(entries)));
  return std::clamp<std::int64_t>(root, 1, 65536);
}

void build_ann_file(const fs::path& path, const std::string& model_id, VectorKind kind, int dim,
                    std::int64_t total, const std::vector<std::int64_t>& segments,
                    std::int64_t lists, const AnnSource& source) {
  if (lists <= 0) lists = default_ann_lists(total);
  if (total < lists || total == 0) {
    throw Error(ErrorKind::kUsage, "an approximate-search index of " + std::to_string(lists) +
                                       " lists needs at least as many vectors; the model has " +
                                       std::to_string(total) + " (use --lists)");
  }
  const auto started = std::chrono::steady_clock::now();
  const auto seconds = [&] { return seconds_since(started); };
  // An evenly spaced training sample (the sources hand vectors in path order, so a stride
  // samples every folder).
  const std::int64_t train_count = std::min(total, lists * kTrainPerList);
  const std::int64_t stride = total / train_count;
  std::vector<float> train(static_cast<std::size_t>(train_count) * dim);
  std::int64_t seen = 0, taken = 0;
  source([&](const float* rows, const std::int64_t*, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i, ++seen) {
      if (seen % stride != 0 || taken >= train_count) continue;
      std::memcpy(train.data() + taken * dim, rows + i * dim, sizeof(float) * dim);
      ++taken;
    }
  });
  if (seen != total) {
    throw Error(ErrorKind::kIndex,
                "the store changed while the approximate-search index was "
                "being built (" +
                    std::to_string(seen) + " vectors, expected " + std::to_string(total) +
                    "); run it again");
  }
  // FAISS: spherical k-means for the centroids, and the coarse quantiser that assigns lists.
  faiss::IndexFlatIP quantizer(dim);
  faiss::ClusteringParameters params;
  params.niter = kKmeansIterations;
  params.spherical = true;
  params.max_points_per_centroid = static_cast<int>(kTrainPerList);
  params.min_points_per_centroid = 1;
  params.seed = 1234;
  faiss::Clustering clustering(dim, static_cast<int>(lists), params);
  faiss_call("train the approximate-search index",
             [&] { clustering.train(taken, train.data(), quantizer); });
  std::vector<float>().swap(train);
  spdlog::info("approximate-search index: trained {} lists on {} vectors in {:.1f} s", lists, taken,
               seconds());

  // Each vector goes to its nearest list, encoded as the store's int8 (one scale per vector),
  // so that a probed list is scanned by the same SIMD kernel as a segment.
  std::vector<std::vector<std::uint8_t>> list_codes(lists);
  std::vector<std::vector<float>> list_scales(lists);
  std::vector<std::vector<std::int64_t>> list_ids(lists);
  std::int64_t added = 0;
  std::vector<float> distances;
  std::vector<idx_t> assigned;
  std::vector<std::uint8_t> codes;
  std::vector<float> scales;
  source([&](const float* rows, const std::int64_t* ids, std::int64_t n) {
    distances.resize(n);
    assigned.resize(n);
    faiss_call("fill the approximate-search index",
               [&] { quantizer.search(n, rows, 1, distances.data(), assigned.data()); });
    kernels::encode_rows(VectorEncoding::kInt8, rows, n, dim, codes, scales);
    for (std::int64_t i = 0; i < n; ++i) {
      const idx_t l = std::clamp<idx_t>(assigned[i], 0, lists - 1);
      list_codes[l].insert(list_codes[l].end(), codes.begin() + i * dim,
                           codes.begin() + (i + 1) * dim);
      list_scales[l].push_back(scales[i]);
      list_ids[l].push_back(ids[i]);
    }
    added += n;
  });
  if (added != total) {
    throw Error(ErrorKind::kIndex,
                "the store changed while the approximate-search index was "
                "being built; run it again");
  }
  spdlog::info("approximate-search index: assigned {} vectors in {:.1f} s", added, seconds());

  // Concatenate the lists, freeing each as it is copied, so the peak stays near one copy.
  std::vector<std::int64_t> offsets(lists + 1, 0);
  for (std::int64_t l = 0; l < lists; ++l) {
    offsets[l + 1] = offsets[l] + static_cast<std::int64_t>(list_ids[l].size());
  }
  std::vector<std::uint8_t> all_codes(static_cast<std::size_t>(total) * dim);
  std::vector<float> all_scales(total);
  std::vector<std::int64_t> all_ids(total);
  for (std::int64_t l = 0; l < lists; ++l) {
    std::copy(list_codes[l].begin(), list_codes[l].end(), all_codes.begin() + offsets[l] * dim);
    std::copy(list_scales[l].begin(), list_scales[l].end(), all_scales.begin() + offsets[l]);
    std::copy(list_ids[l].begin(), list_ids[l].end(), all_ids.begin() + offsets[l]);
    std::vector<std::uint8_t>().swap(list_codes[l]);
    std::vector<float>().swap(list_scales[l]);
    std::vector<std::int64_t>().swap(list_ids[l]);
  }
  std::vector<float> centroids(static_cast<std::size_t>(lists) * dim);
  quantizer.reconstruct_n(0, lists, centroids.data());
  std::vector<std::int64_t> segment_ids = segments;

  // int64 arrays are stored as pairs of int32 (little-endian lo, hi): the container's types.
  std::vector<ArrayToWrite> arrays = {
      {array_name(kind, "centroids"), ArrayType::kF32, lists, dim, 1024, centroids.data()},
      {array_name(kind, "offsets"), ArrayType::kI32, lists + 1, 2, 1 << 16, offsets.data()},
      {array_name(kind, "segments"), ArrayType::kI32, static_cast<std::int64_t>(segment_ids.size()),
       2, 1 << 16, segment_ids.data()},
      {array_name(kind, "codes"), ArrayType::kI8, total, dim, kCodeBlockRows, all_codes.data()},
      {array_name(kind, "scales"), ArrayType::kF32, total, 1, kCodeBlockRows, all_scales.data()},
      {array_name(kind, "ids"), ArrayType::kI32, total, 2, kIdBlockRows, all_ids.data()},
  };
  write_array_file(path, model_id, total, arrays);
  spdlog::info("approximate-search index: wrote {} ({:.0f} MB) in {:.1f} s", path.string(),
               static_cast<double>(fs::file_size(path)) / 1e6, seconds());
}

// ---------------------------------------------------------------------------------------------

struct AnnIndex::State {
  std::shared_ptr<const SegmentFile> file;
  VectorKind kind = VectorKind::kImageProj;
  int dim = 0;
  std::int64_t lists = 0;
  std::int64_t entries = 0;
  std::vector<std::int64_t> segments;
  const SegmentArray* codes = nullptr;
  const SegmentArray* scales = nullptr;
  const SegmentArray* ids = nullptr;
  const std::int64_t* offsets = nullptr;
  std::unique_ptr<faiss::IndexFlatIP> quantizer;
};

AnnIndex::~AnnIndex() = default;

std::shared_ptr<const AnnIndex> AnnIndex::open(const fs::path& path) {
  auto state = std::make_unique<State>();
  state->file = SegmentFile::open(path);
  const SegmentFile& file = *state->file;
  const SegmentHeader& h = file.header();
  const std::string label = file.label();
  if (!h.kinds.empty()) corrupt(label, "it holds vectors, not an index");
  const SegmentArray* centroids = nullptr;
  for (const SegmentArray& a : h.arrays) {
    const std::string suffix = ".ann.centroids";
    if (a.name.size() > suffix.size() &&
        a.name.compare(a.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      try {
        state->kind = vector_kind_from_string(a.name.substr(0, a.name.size() - suffix.size()));
      } catch (const Error&) {
        corrupt(label, "unknown kind in " + a.name);
      }
      centroids = &a;
    }
  }
  if (!centroids) corrupt(label, "no centroids");
  const SegmentArray* offsets = h.find_array(array_name(state->kind, "offsets"));
  const SegmentArray* segments = h.find_array(array_name(state->kind, "segments"));
  state->codes = h.find_array(array_name(state->kind, "codes"));
  state->scales = h.find_array(array_name(state->kind, "scales"));
  state->ids = h.find_array(array_name(state->kind, "ids"));
  if (!offsets || !segments || !state->codes || !state->scales || !state->ids) {
    corrupt(label, "an array is missing");
  }
  state->dim = static_cast<int>(centroids->row_elems);
  state->lists = centroids->rows;
  state->entries = h.items;
  const SegmentArray& codes = *state->codes;
  const SegmentArray& scales = *state->scales;
  const SegmentArray& ids = *state->ids;
  if (centroids->type != ArrayType::kF32 || offsets->type != ArrayType::kI32 ||
      offsets->row_elems != 2 || offsets->rows != state->lists + 1 ||
      segments->type != ArrayType::kI32 || segments->row_elems != 2 ||
      codes.type != ArrayType::kI8 || codes.row_elems != state->dim ||
      codes.rows != state->entries || scales.type != ArrayType::kF32 || scales.row_elems != 1 ||
      scales.rows != state->entries || ids.type != ArrayType::kI32 || ids.row_elems != 2 ||
      ids.rows != state->entries || state->lists == 0) {
    corrupt(label, "array shapes disagree");
  }
  for (const SegmentArray* a : {centroids, offsets, segments}) file.verify_rows(*a, 0, a->rows);
  state->offsets = reinterpret_cast<const std::int64_t*>(file.data(*offsets));
  if (state->offsets[0] != 0 || state->offsets[state->lists] != state->entries) {
    corrupt(label, "list offsets do not cover the entries");
  }
  for (std::int64_t l = 0; l < state->lists; ++l) {
    if (state->offsets[l + 1] < state->offsets[l]) corrupt(label, "list offsets go backwards");
  }
  const auto* segment_values = reinterpret_cast<const std::int64_t*>(file.data(*segments));
  state->segments.assign(segment_values, segment_values + segments->rows);
  state->quantizer = std::make_unique<faiss::IndexFlatIP>(state->dim);
  faiss_call("load " + label, [&] {
    state->quantizer->add(state->lists, reinterpret_cast<const float*>(file.data(*centroids)));
  });
  std::shared_ptr<AnnIndex> index(new AnnIndex());
  index->state_ = std::move(state);
  return index;
}

const std::string& AnnIndex::model_id() const { return state_->file->header().model_id; }
VectorKind AnnIndex::kind() const { return state_->kind; }
int AnnIndex::dim() const { return state_->dim; }
std::int64_t AnnIndex::entries() const { return state_->entries; }
std::int64_t AnnIndex::lists() const { return state_->lists; }
const std::vector<std::int64_t>& AnnIndex::segments() const { return state_->segments; }
std::size_t AnnIndex::file_bytes() const { return state_->file->file_bytes(); }

std::int64_t AnnIndex::default_nprobe() const {
  return std::clamp<std::int64_t>(state_->lists / 32, std::min<std::int64_t>(8, state_->lists),
                                  256);
}

void AnnIndex::search(const float* query, std::int64_t k, std::int64_t nprobe,
                      const std::function<bool(std::int64_t)>& accept,
                      std::vector<AnnHit>& hits) const {
  hits.clear();
  if (k <= 0) return;
  const State& st = *state_;
  nprobe = std::clamp<std::int64_t>(nprobe <= 0 ? default_nprobe() : nprobe, 1, st.lists);
  std::vector<float> list_scores(nprobe);
  std::vector<idx_t> probed(nprobe);
  faiss_call("search " + st.file->label(),
             [&] { st.quantizer->search(1, query, nprobe, list_scores.data(), probed.data()); });
  const SegmentFile& file = *st.file;
  const auto* codes = file.data(*st.codes);
  const auto* scales = reinterpret_cast<const float*>(file.data(*st.scales));
  const auto* ids = reinterpret_cast<const std::int64_t*>(file.data(*st.ids));
  // The probed lists are read whole: ask for all of them at once, so the kernel reads them in
  // the background and maps them in large pieces instead of faulting page by page.
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (idx_t list : probed) {
    if (list < 0) continue;
    const std::int64_t begin = st.offsets[list], end = st.offsets[list + 1];
    for (const auto& [base, row_bytes] :
         {std::pair<const std::uint8_t*, std::size_t>{codes, st.dim},
          std::pair<const std::uint8_t*, std::size_t>{file.data(*st.scales), sizeof(float)},
          std::pair<const std::uint8_t*, std::size_t>{file.data(*st.ids), sizeof(std::int64_t)}}) {
      const auto first = reinterpret_cast<std::uintptr_t>(base + begin * row_bytes) / page * page;
      const auto last = reinterpret_cast<std::uintptr_t>(base + end * row_bytes);
      if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_WILLNEED);
    }
  }
  const auto worse = [](const AnnHit& a, const AnnHit& b) { return a.score > b.score; };
  const std::size_t tasks = (probed.size() + kListsPerTask - 1) / kListsPerTask;
  std::vector<std::vector<AnnHit>> task_hits(tasks);
  parallel_tasks(tasks, [&](std::size_t task) {
    std::vector<AnnHit>& best = task_hits[task];  // a min-heap of the task's k best
    std::vector<float> scores;
    const std::size_t last = std::min(probed.size(), (task + 1) * kListsPerTask);
    for (std::size_t p = task * kListsPerTask; p < last; ++p) {
      if (probed[p] < 0) continue;
      const std::int64_t begin = st.offsets[probed[p]], end = st.offsets[probed[p] + 1];
      const std::int64_t n = end - begin;
      if (n == 0) continue;
      // Checked before read, like every segment block; the advice is the index's own.
      try {
        file.verify_rows(*st.codes, begin, n);
        file.verify_rows(*st.scales, begin, n);
        file.verify_rows(*st.ids, begin, n);
      } catch (const Error&) {
        corrupt(file.label(), "list " + std::to_string(probed[p]) + " fails its checksum");
      }
      scores.resize(n);
      kernels::scan_rows(ArrayType::kI8, codes + begin * st.dim, scales + begin, n, st.dim, query,
                         1, scores.data());
      for (std::int64_t i = 0; i < n; ++i) {
        const float score = scores[i];
        if (static_cast<std::int64_t>(best.size()) == k && !(score > best.front().score)) continue;
        if (!accept(ids[begin + i])) continue;
        best.push_back({score, ids[begin + i]});
        std::push_heap(best.begin(), best.end(), worse);
        if (static_cast<std::int64_t>(best.size()) > k) {
          std::pop_heap(best.begin(), best.end(), worse);
          best.pop_back();
        }
      }
    }
  });
  for (const auto& t : task_hits) hits.insert(hits.end(), t.begin(), t.end());
  std::sort(hits.begin(), hits.end(), [](const AnnHit& a, const AnnHit& b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  });
  if (static_cast<std::int64_t>(hits.size()) > k) hits.resize(k);
}

}  // namespace mmsearch
