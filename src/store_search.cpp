// IndexStore::search: scoring the mapped segments of one kind under a scope, with the
// two-stage search for kinds of several vectors per item. Design: docs/STORE.md.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "mmsearch/ann_index.h"
#include "mmsearch/index.h"
#include "parallel_tasks.h"
#include "store_impl.h"
#include "vector_kernels.h"

namespace mmsearch {
namespace fs = std::filesystem;
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
// Ties at the k-th score are resolved by path, so a few more than k are kept to sort.
constexpr std::int64_t kTieWindow = 8;
// Entries per scan task: large enough to amortise a task, small enough to balance 2-8 cores.
constexpr std::int64_t kTaskEntries = 16384;

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

enum class Coverage { kAll, kNone, kPartial };

// Whether every path under `dir` is inside the scope range, none is, or some may be.
Coverage coverage(const ScopeRange& scope, const std::string& dir) {
  const auto under = [](const std::string& path, const std::string& folder) {
    return folder == "/" || path == folder ||
           (path.size() > folder.size() && path.compare(0, folder.size(), folder) == 0 &&
            path[folder.size()] == '/');
  };
  if (under(dir, scope.exact)) return Coverage::kAll;
  if (under(scope.exact, dir)) return Coverage::kPartial;
  return Coverage::kNone;
}

// One segment's arrays of the searched kind, and which of its entries are searched.
struct View {
  std::shared_ptr<const SegmentFile> segment;
  std::int64_t segment_id = -1;  // -1: vectors of an old store, held in memory
  const SegmentKind* kind = nullptr;
  const SegmentArray* vectors = nullptr;
  const SegmentArray* scales = nullptr;
  const SegmentArray* mean = nullptr;
  const SegmentArray* mean_scales = nullptr;
  const float* mean_norm = nullptr;
  const float* radius = nullptr;
  const std::int32_t* owners = nullptr;    // (item, caption) per entry
  std::vector<char> item_allowed;          // live and in the scope; empty: every item
  std::vector<char> item_excluded;         // the query images; empty: none
  std::vector<VectorOwner> memory_owners;  // segment_id -1: the owner of each entry
  // Per term the first-stage score of each entry (exact unless the term needs a re-score),
  // and the fused lower and upper bounds.
  std::vector<std::vector<float>> term_scores;
  std::vector<float> lower, upper;
  // The approximate-search index holds this segment: its entries are not scanned here.
  bool ann_covered = false;

  std::int64_t entries() const { return kind->entries; }
  bool filtered() const { return !item_allowed.empty() || !item_excluded.empty(); }
  bool in_scope(std::int64_t e) const {
    return item_allowed.empty() || item_allowed[owners[2 * e]] != 0;
  }
  bool allowed(std::int64_t e) const {
    return in_scope(e) && (item_excluded.empty() || item_excluded[owners[2 * e]] == 0);
  }
  // The owners of a covered view are checked lazily, a block at a time, as entries are used
  // (a scanned view checks them all up front).
  void verify_owner(std::int64_t e) const {
    const SegmentArray& a = *segment->header().find_array(segment_array_name(kind->kind, "owner"));
    segment->verify_rows(a, e, 1);
    check_owner_item(*segment, owners[2 * e]);
  }
  const float* scale_data(const SegmentArray* a) const {
    return a ? reinterpret_cast<const float*>(segment->data(*a)) : nullptr;
  }
};

bool needs_rescore(const View& view, const SearchTerm& term) {
  return view.kind->vectors_per_item > 1 && term.rule == ScoreRule::kMaxOverQueries;
}

// Scores entries [begin, end) of one view for one term into out[0, end - begin); checks the
// checksum of every block it reads first.
void first_stage(const View& view, const SearchTerm& term, std::int64_t begin, std::int64_t end,
                 float* out) {
  const SegmentFile& seg = *view.segment;
  const int dim = view.kind->dim;
  const int vpi = view.kind->vectors_per_item;
  const Embeddings& q = term.query;
  const int query_rows = term.rule == ScoreRule::kCls ? 1 : q.vectors_per_item;
  const std::int64_t n = end - begin;
  if (vpi == 1 || term.rule == ScoreRule::kMaxOverQueries ||
      term.rule == ScoreRule::kMeanOfQueries) {
    const SegmentArray& rows = vpi == 1 ? *view.vectors : *view.mean;
    const SegmentArray* scales = vpi == 1 ? view.scales : view.mean_scales;
    const float* scale = view.scale_data(scales);
    // Block by block: each block is checked and then scanned while it is still in cache.
    for (std::int64_t first = begin; first < end;) {
      const std::int64_t block_end = std::min(end, (first / rows.block_rows + 1) * rows.block_rows);
      seg.verify_rows(rows, first, block_end - first);
      if (scales) seg.verify_rows(*scales, first, block_end - first);
      kernels::scan_rows(rows.type, seg.data(rows) + first * rows.row_bytes(),
                         scale ? scale + first : nullptr, block_end - first, dim, q.values.data(),
                         query_rows, out + (first - begin));
      first = block_end;
    }
    if (vpi > 1 && term.rule == ScoreRule::kMeanOfQueries) {
      // The cosine of the normalised means.
      for (std::int64_t e = begin; e < end; ++e) {
        float& score = out[e - begin];
        score = view.mean_norm[e] > 0.0f ? score / view.mean_norm[e] : 0.0f;
      }
    }
    return;
  }
  // kCls over several vectors per item: the first vector of each entry.
  seg.verify_rows(*view.vectors, begin * vpi, n * vpi);
  const float* scale = view.scale_data(view.scales);
  for (std::int64_t e = begin; e < end; ++e) {
    kernels::scan_rows(
        view.vectors->type, seg.data(*view.vectors) + e * vpi * view.vectors->row_bytes(),
        scale ? scale + e * vpi : nullptr, 1, dim, q.values.data(), 1, out + (e - begin));
  }
}

// The exact score of one entry for a term that needs its full vectors.
// The rows of one entry, read with pread (SegmentFile::read_rows: a candidate read alone maps
// no page-cache folios into the process) and scored against the term's query rows, one score
// per stored row into `scores`.
void score_entry_rows(const View& view, const SearchTerm& term, std::int64_t e, int query_rows,
                      std::vector<float>& scores) {
  const int vpi = view.kind->vectors_per_item;
  thread_local std::vector<std::uint8_t> rows_buffer, scales_buffer;
  const std::uint8_t* rows = view.segment->read_rows(*view.vectors, e * vpi, vpi, rows_buffer);
  const float* scale = view.scales ? reinterpret_cast<const float*>(view.segment->read_rows(
                                         *view.scales, e * vpi, vpi, scales_buffer))
                                   : nullptr;
  scores.resize(vpi);
  kernels::scan_rows(view.vectors->type, rows, scale, vpi, view.kind->dim, term.query.values.data(),
                     query_rows, scores.data());
}

float rescore(const View& view, const SearchTerm& term, std::int64_t e) {
  thread_local std::vector<float> scores;
  score_entry_rows(view, term, e, term.query.vectors_per_item, scores);
  return *std::max_element(scores.begin(), scores.end());
}

// Whether the approximate-search index can choose candidates for this term: its score must be
// the inner product of one query row with the vector the index holds (the entry's vector, or
// BLIP-2's mean, whose product bounds the max over queries from below).
bool ann_can_serve(const SearchTerm& term) {
  return term.query.vectors_per_item == 1 &&
         (term.rule == ScoreRule::kCls || term.rule == ScoreRule::kMaxOverQueries);
}

// The exact score of one entry for one term: a re-score of its full vectors where the term
// needs them, its first-stage score otherwise.
float exact_term_score(const View& view, const SearchTerm& term, std::int64_t e) {
  if (needs_rescore(view, term)) return rescore(view, term, e);
  if (view.kind->vectors_per_item == 1) {
    thread_local std::vector<float> scores;
    score_entry_rows(view, term, e, term.rule == ScoreRule::kCls ? 1 : term.query.vectors_per_item,
                     scores);
    return scores[0];
  }
  float score = 0.0f;
  first_stage(view, term, e, e + 1, &score);
  return score;
}

struct Candidate {
  float upper;
  std::int32_t view;
  std::int64_t entry;
};

struct Scored {
  float score;
  std::int32_t view;
  std::int64_t entry;
  std::vector<float> term_scores;
};

// One search in one snapshot (IndexStore::search runs it again if a segment vanished).
SearchResult search_once(const IndexStore::Impl& s, const std::string& model_id,
                         const fs::path& scope_path, const SearchRequest& request) {
  if (request.terms.empty()) throw Error(ErrorKind::kUsage, "a search needs at least one term");
  if (request.k < 0) throw Error(ErrorKind::kUsage, "k must not be negative");
  double weight_sum = 0.0;
  for (const SearchTerm& t : request.terms) {
    if (!std::isfinite(t.weight)) throw Error(ErrorKind::kUsage, "term weight is not finite");
    if (t.query.count != 1) throw Error(ErrorKind::kUsage, "a search term is one item");
    weight_sum += std::fabs(t.weight);
  }
  if (weight_sum == 0.0) throw Error(ErrorKind::kUsage, "all query term weights are zero");
  std::vector<float> weights;
  for (const SearchTerm& t : request.terms)
    weights.push_back(static_cast<float>(t.weight / weight_sum));

  SearchResult result;
  const auto started = std::chrono::steady_clock::now();
  ReadSnapshot snapshot(s.db);
  const auto model = s.model_row(model_id);
  if (!model) return result;
  const ScopeRange scope = scope_range(scope_path);
  const std::string kind_name = to_string(request.kind);

  // --- which entries are searched ---
  std::vector<View> views;
  std::unordered_set<std::string> excluded(request.excluded_paths.begin(),
                                           request.excluded_paths.end());
  std::vector<std::pair<std::int64_t, std::int64_t>> excluded_rows;  // (segment, row)
  // The approximate-search index, when the model has one for this kind and every term is an
  // inner product it can serve; --exact never uses it.
  std::shared_ptr<const AnnIndex> ann;
  std::unordered_set<std::int64_t> ann_segments;
  if (!request.exact && request.k > 0 &&
      std::all_of(request.terms.begin(), request.terms.end(), ann_can_serve)) {
    ann = s.ann(*model, request.kind);
    if (ann) ann_segments.insert(ann->segments().begin(), ann->segments().end());
  }
  if (s.has_segments()) {
    sqlite::Statement where(s.db,
                            "SELECT segment_id, segment_row FROM files WHERE model = ?1 AND "
                            "path = ?2 AND segment_id IS NOT NULL",
                            "search");
    for (const std::string& path : excluded) {
      where.bind(1, *model).bind(2, normalize_index_path(path));
      while (where.step()) excluded_rows.emplace_back(where.int64(0), where.int64(1));
      where.reset();
    }
    sqlite::Statement segments(s.db,
                               "SELECT id, file_name, items, live_items, common_dir FROM segments "
                               "WHERE model = ?1 ORDER BY id",
                               "search");
    segments.bind(1, *model);
    sqlite::Statement rows(s.db,
                           std::string("SELECT f.segment_row FROM files f WHERE f.segment_id = ?1 "
                                       "AND ") +
                               kScopeClause,
                           "search");
    while (segments.step()) {
      const Coverage cover = coverage(scope, segments.text(4));
      if (cover == Coverage::kNone) continue;
      View view;
      view.segment_id = segments.int64(0);
      view.segment = s.segment(segments.text(1));
      const SegmentHeader& h = view.segment->header();
      view.kind = h.find_kind(request.kind);
      if (!view.kind || view.kind->entries == 0) continue;
      if (h.model_id != model_id) {
        throw Error(ErrorKind::kIndex, "vector segment " + view.segment->label() + " belongs to " +
                                           h.model_id + ", not " + model_id +
                                           "; the store is damaged: re-index with --rebuild");
      }
      const std::int64_t items = segments.int64(2), live = segments.int64(3);
      if (h.items != items) {
        throw Error(ErrorKind::kIndex, "vector segment " + view.segment->label() +
                                           " does not match its row in the store; re-index "
                                           "with --rebuild");
      }
      if (cover == Coverage::kPartial || live < items) {
        // The live rows inside the scope, from SQLite (the whole scope range matches every
        // path when the segment lies inside it).
        view.item_allowed.assign(items, 0);
        rows.bind(1, view.segment_id);
        bind_scope(rows, cover == Coverage::kAll ? scope_range("/") : scope);
        while (rows.step()) {
          const std::int64_t r = rows.int64(0);
          if (r >= 0 && r < items) view.item_allowed[r] = 1;
        }
        rows.reset();
      }
      for (const auto& [segment_id, row] : excluded_rows) {
        if (segment_id != view.segment_id || row < 0 || row >= items) continue;
        if (view.item_excluded.empty()) view.item_excluded.assign(items, 0);
        view.item_excluded[row] = 1;
      }
      view.ann_covered = ann_segments.count(view.segment_id) > 0;
      views.push_back(std::move(view));
    }
  }
  // Vectors still in the BLOB table (an old store): searched from memory like a segment.
  {
    LoadedVectors inline_vectors = s.load_inline_vectors(*model, scope_path, request.kind);
    if (inline_vectors.embeddings.count > 0) {
      const Embeddings& e = inline_vectors.embeddings;
      std::vector<SegmentEntry> entries;
      for (std::int64_t i = 0; i < e.count; ++i)
        entries.push_back({static_cast<int>(i), -1, e.item(i)});
      SegmentBuilder builder(model_id, e.count);
      builder.add_kind(request.kind, VectorEncoding::kFloat32, e.vectors_per_item, e.dim, entries);
      View view;
      view.segment = SegmentFile::from_bytes(builder.serialize(), s.db.path().string());
      view.kind = view.segment->header().find_kind(request.kind);
      view.item_excluded.assign(e.count, 0);
      for (std::int64_t i = 0; i < e.count; ++i) {
        if (excluded.count(inline_vectors.owners[i].path)) view.item_excluded[i] = 1;
      }
      view.memory_owners = std::move(inline_vectors.owners);
      views.push_back(std::move(view));
    }
  }
  for (View& view : views) {
    const SegmentHeader& h = view.segment->header();
    view.vectors = h.find_array(segment_array_name(request.kind));
    view.scales = h.find_array(segment_array_name(request.kind, "scale"));
    const SegmentArray* owners = h.find_array(segment_array_name(request.kind, "owner"));
    view.owners = reinterpret_cast<const std::int32_t*>(view.segment->data(*owners));
    for (const SearchTerm& t : request.terms) {
      if (t.query.dim != view.kind->dim) {
        throw Error(ErrorKind::kUsage, "query vectors have " + std::to_string(t.query.dim) +
                                           " dimensions, the stored " + kind_name + " " +
                                           std::to_string(view.kind->dim));
      }
    }
    if (view.ann_covered && !view.filtered()) {
      // Only the candidates are read: no read-ahead, and their owners are checked as used.
      view.segment->advise(*view.vectors, SegmentFile::Access::kRandom);
      continue;
    }
    view.segment->verify_rows(*owners, 0, owners->rows);
    for (std::int64_t e = 0; e < owners->rows; ++e)
      check_owner_item(*view.segment, view.owners[2 * e]);
    if (view.ann_covered && view.kind->vectors_per_item == 1) continue;
    if (view.kind->vectors_per_item == 1)
      view.segment->advise(*view.vectors, SegmentFile::Access::kScan);
    if (view.kind->vectors_per_item > 1) {
      view.segment->advise(*view.vectors, SegmentFile::Access::kRandom);
      if (view.ann_covered) continue;
      view.mean = h.find_array(segment_array_name(request.kind, "mean"));
      if (view.mean) view.segment->advise(*view.mean, SegmentFile::Access::kScan);
      view.mean_scales = h.find_array(segment_array_name(request.kind, "mean.scale"));
      const SegmentArray* norm = h.find_array(segment_array_name(request.kind, "mean_norm"));
      const SegmentArray* radius = h.find_array(segment_array_name(request.kind, "radius"));
      if (!view.mean || !norm || !radius || norm->rows != view.entries() ||
          radius->rows != view.entries() || view.mean->rows != view.entries()) {
        throw Error(ErrorKind::kIndex, "vector segment " + view.segment->label() +
                                           " lacks its first stage; re-index with --rebuild");
      }
      view.segment->verify_rows(*norm, 0, norm->rows);
      view.segment->verify_rows(*radius, 0, radius->rows);
      view.mean_norm = reinterpret_cast<const float*>(view.segment->data(*norm));
      view.radius = reinterpret_cast<const float*>(view.segment->data(*radius));
    }
  }
  result.select_ms = ms_since(started);

  const std::int64_t keep = request.k == 0 ? 0 : request.k + kTieWindow;

  // --- candidates from the approximate-search index, scored exactly ---
  // The index holds one inner product per entry: the terms fuse into one query vector (their
  // first-stage scores are linear in it), and its best entries among those allowed are then
  // scored exactly like any other candidate.
  std::vector<Scored> ann_scored;
  if (ann && std::any_of(views.begin(), views.end(), [](const View& v) { return v.ann_covered; })) {
    const auto ann_started = std::chrono::steady_clock::now();
    const int dim = ann->dim();
    std::vector<float> fused(dim, 0.0f);
    for (std::size_t t = 0; t < request.terms.size(); ++t) {
      if (request.terms[t].query.dim != dim) {
        throw Error(ErrorKind::kIndex, "the approximate-search index of " + kind_name +
                                           " does not match the stored vectors; rebuild it "
                                           "with `mmsearch ann build`");
      }
      for (int d = 0; d < dim; ++d) fused[d] += weights[t] * request.terms[t].query.values[d];
    }
    std::unordered_map<std::int64_t, std::int32_t> view_of_segment;
    for (std::size_t v = 0; v < views.size(); ++v) {
      if (views[v].ann_covered) view_of_segment[views[v].segment_id] = static_cast<std::int32_t>(v);
    }
    const bool several = std::any_of(views.begin(), views.end(), [](const View& v) {
      return v.ann_covered && v.kind->vectors_per_item > 1;
    });
    // BLIP-2: the index ranks by the mean, so as many candidates as the re-score budget
    // allows go on to the exact max over queries. One vector per item: a few times k.
    const std::int64_t wanted =
        several ? (request.max_rescored > 0 ? request.max_rescored : kDefaultMaxRescored)
                : std::max<std::int64_t>(keep * 8, 256);
    // Called for every entry of the probed lists: the owners of filtered views were checked
    // above, those of the others are not read here.
    const auto accept = [&](std::int64_t id) {
      const auto it = view_of_segment.find(ann_segment_of(id));
      if (it == view_of_segment.end()) return false;  // merged away or deleted since the build
      const View& view = views[it->second];
      const std::int64_t e = ann_entry_of(id);
      if (e >= view.entries()) return false;
      return !view.filtered() || view.allowed(e);
    };
    std::vector<AnnHit> hits;
    result.nprobe =
        request.nprobe > 0 ? std::min(request.nprobe, ann->lists()) : ann->default_nprobe();
    ann->search(fused.data(), wanted, result.nprobe, accept, hits);
    ann_scored.resize(hits.size());
    parallel_tasks(static_cast<std::int64_t>(hits.size() + 63) / 64, [&](std::int64_t task) {
      const std::size_t last = std::min(hits.size(), static_cast<std::size_t>(task + 1) * 64);
      for (std::size_t h = static_cast<std::size_t>(task) * 64; h < last; ++h) {
        const std::int32_t v = view_of_segment.at(ann_segment_of(hits[h].id));
        const std::int64_t e = ann_entry_of(hits[h].id);
        views[v].verify_owner(e);
        Scored& scored = ann_scored[h];
        scored = {0.0f, v, e, {}};
        for (std::size_t t = 0; t < request.terms.size(); ++t) {
          const float score = exact_term_score(views[v], request.terms[t], e);
          scored.term_scores.push_back(score);
          scored.score += weights[t] * score;
        }
      }
    });
    for (const View& view : views) {
      if (view.ann_covered) result.ann_entries += view.entries();
    }
    result.rescored += several ? static_cast<std::int64_t>(hits.size()) : 0;
    result.approximate = true;
    result.proven_exact = false;
    result.ann_ms = ms_since(ann_started);
  }

  // --- first stage: every searched entry, every term ---
  // Work is cut into tasks of up to kTaskEntries entries across all views, taken by the threads
  // in turn, so a store of many small segments uses every core too. Each task also keeps the
  // `keep` best lower bounds it saw: the keep-th best lower bound of all entries is a score that
  // the final k reach for sure, so no entry whose upper bound is below it needs a look.
  const auto scan_started = std::chrono::steady_clock::now();
  bool any_rescore = false;
  struct Task {
    std::size_t view;
    std::int64_t begin, end;
  };
  std::vector<Task> tasks;
  for (std::size_t v = 0; v < views.size(); ++v) {
    View& view = views[v];
    const std::int64_t n = view.entries();
    if (view.ann_covered) {
      if (view.item_allowed.empty()) {
        result.searched += n;
      } else {
        for (std::int64_t e = 0; e < n; ++e) result.searched += view.in_scope(e) ? 1 : 0;
      }
      continue;
    }
    view.term_scores.assign(request.terms.size(), std::vector<float>(n));
    view.lower.assign(n, 0.0f);
    view.upper.assign(n, 0.0f);
    for (std::int64_t begin = 0; begin < n; begin += kTaskEntries) {
      tasks.push_back({v, begin, std::min(n, begin + kTaskEntries)});
    }
    for (std::int64_t e = 0; e < n; ++e) result.searched += view.in_scope(e) ? 1 : 0;
    for (const SearchTerm& t : request.terms) any_rescore = any_rescore || needs_rescore(view, t);
  }
  std::vector<std::vector<float>> task_best(tasks.size());
  parallel_tasks(static_cast<std::int64_t>(tasks.size()), [&](std::int64_t task_index) {
    const Task& task = tasks[task_index];
    View& view = views[task.view];
    for (std::size_t t = 0; t < request.terms.size(); ++t) {
      first_stage(view, request.terms[t], task.begin, task.end,
                  view.term_scores[t].data() + task.begin);
    }
    std::priority_queue<float, std::vector<float>, std::greater<float>> best;
    for (std::int64_t e = task.begin; e < task.end; ++e) {
      if (!view.allowed(e)) {
        view.lower[e] = view.upper[e] = kMinusInfinity;
        continue;
      }
      float lower = 0.0f, upper = 0.0f;
      for (std::size_t t = 0; t < request.terms.size(); ++t) {
        const float score = view.term_scores[t][e];
        const float w = weights[t];
        // m.t <= max_q v_q.t <= m.t + r: a positive weight widens the bound upwards, a
        // negative one downwards.
        const float spread = needs_rescore(view, request.terms[t]) ? view.radius[e] : 0.0f;
        upper += w * score + (w > 0 ? w * spread : 0.0f);
        lower += w * score + (w < 0 ? w * spread : 0.0f);
      }
      view.lower[e] = lower;
      view.upper[e] = upper;
      if (keep > 0 && !std::isnan(lower)) {
        if (static_cast<std::int64_t>(best.size()) < keep) {
          best.push(lower);
        } else if (lower > best.top()) {
          best.pop();
          best.push(lower);
        }
      }
    }
    while (!best.empty()) {
      task_best[task_index].push_back(best.top());
      best.pop();
    }
  });
  float sure = kMinusInfinity;  // the final k-th score is at least this
  {
    std::vector<float> all;
    for (const auto& b : task_best) all.insert(all.end(), b.begin(), b.end());
    if (keep > 0 && static_cast<std::int64_t>(all.size()) >= keep) {
      std::nth_element(all.begin(), all.begin() + (keep - 1), all.end(), std::greater<float>());
      sure = all[keep - 1];
    }
  }
  result.scan_ms = ms_since(scan_started);

  // --- second stage: re-score by best upper bound until the bounds prove the top k ---
  const auto rescore_started = std::chrono::steady_clock::now();
  const float floor = std::max(sure, request.threshold);
  std::vector<Candidate> candidates;
  for (std::size_t v = 0; v < views.size(); ++v) {
    const View& view = views[v];
    if (view.ann_covered) continue;
    for (std::int64_t e = 0; e < view.entries(); ++e) {
      const float upper = view.upper[e];
      if (upper == kMinusInfinity || std::isnan(upper) || upper < floor) continue;
      candidates.push_back({upper, static_cast<std::int32_t>(v), e});
    }
  }
  const auto worse = [](const Scored& a, const Scored& b) { return a.score > b.score; };
  std::priority_queue<Scored, std::vector<Scored>, decltype(worse)> best(worse);
  // Keeps `scored` when it passes the threshold and is among the `keep` best so far.
  const auto offer = [&](Scored& scored) {
    if (keep == 0 || std::isnan(scored.score) || scored.score < request.threshold) return;
    if (static_cast<std::int64_t>(best.size()) < keep) {
      best.push(std::move(scored));
    } else if (scored.score > best.top().score) {
      best.pop();
      best.push(std::move(scored));
    }
  };
  for (Scored& scored : ann_scored) offer(scored);
  const std::int64_t cap = request.exact              ? std::numeric_limits<std::int64_t>::max()
                           : request.max_rescored > 0 ? request.max_rescored
                                                      : kDefaultMaxRescored;
  // The budget is for the scanned segments; the index's candidates were counted apart.
  std::int64_t scanned_rescored = 0;
  std::size_t done = 0;
  std::size_t chunk = static_cast<std::size_t>(std::max<std::int64_t>(keep * 4, 64));
  const auto by_upper = [](const Candidate& a, const Candidate& b) { return a.upper > b.upper; };
  while (done < candidates.size() && keep > 0) {
    const std::size_t end = std::min(candidates.size(), done + chunk);
    std::nth_element(candidates.begin() + done, candidates.begin() + end - 1, candidates.end(),
                     by_upper);
    std::sort(candidates.begin() + done, candidates.begin() + end, by_upper);
    // The chunk's exact scores in parallel (at most `cap` re-scores in all), then the stop
    // test in upper-bound order; work past the stop point is bounded by one chunk.
    const std::size_t scored_end =
        any_rescore
            ? std::min<std::size_t>(end, done + std::max<std::int64_t>(0, cap - scanned_rescored))
            : end;
    std::vector<Scored> exact(scored_end - done);
    const std::int64_t per_task = 256;
    const std::int64_t chunk_tasks =
        (static_cast<std::int64_t>(exact.size()) + per_task - 1) / per_task;
    parallel_tasks(chunk_tasks, [&](std::int64_t task) {
      const std::size_t first = done + task * per_task;
      const std::size_t last = std::min(scored_end, first + per_task);
      for (std::size_t c = first; c < last; ++c) {
        const Candidate& cand = candidates[c];
        const View& view = views[cand.view];
        Scored& scored = exact[c - done];
        scored = {0.0f, cand.view, cand.entry, {}};
        for (std::size_t t = 0; t < request.terms.size(); ++t) {
          const float score = needs_rescore(view, request.terms[t])
                                  ? rescore(view, request.terms[t], cand.entry)
                                  : view.term_scores[t][cand.entry];
          scored.term_scores.push_back(score);
          scored.score += weights[t] * score;
        }
      }
    });
    bool stop = false;
    for (std::size_t c = done; c < end; ++c) {
      const Candidate& cand = candidates[c];
      if (static_cast<std::int64_t>(best.size()) >= keep && cand.upper < best.top().score) {
        stop = true;  // no later candidate can beat the k kept: proven
        break;
      }
      if (c >= scored_end) {
        result.proven_exact = false;  // the re-score budget ran out first
        stop = true;
        break;
      }
      if (any_rescore) {
        ++result.rescored;
        ++scanned_rescored;
      }
      offer(exact[c - done]);
    }
    done = end;
    if (stop) break;
    chunk *= 2;
  }
  result.rescore_ms = ms_since(rescore_started);

  // --- the owners of the kept entries, ties by path then caption ---
  const auto owners_started = std::chrono::steady_clock::now();
  // Only a store with segments has the columns (a read-only open of an older store keeps its
  // vectors in memory, with their owners).
  std::optional<sqlite::Statement> owner;
  if (s.has_segments()) {
    owner.emplace(s.db,
                  "SELECT id, path, category FROM files WHERE segment_id = ?1 AND "
                  "segment_row = ?2",
                  "search");
  }
  sqlite::Statement caption(s.db,
                            "SELECT caption, caption_en FROM captions WHERE file_id = ?1 AND "
                            "caption_index = ?2",
                            "search");
  while (!best.empty()) {
    Scored scored = best.top();
    best.pop();
    const View& view = views[scored.view];
    if (view.ann_covered) view.verify_owner(scored.entry);
    SearchMatch match;
    match.score = scored.score;
    match.term_scores = std::move(scored.term_scores);
    const int item = view.owners[2 * scored.entry];
    const int caption_index = view.owners[2 * scored.entry + 1];
    if (view.segment_id < 0) {
      match.owner = view.memory_owners[item];
    } else {
      owner->bind(1, view.segment_id).bind(2, static_cast<std::int64_t>(item));
      if (!owner->step()) {
        owner->reset();
        continue;  // cannot happen inside the snapshot; never report an unowned vector
      }
      match.owner.file_id = owner->int64(0);
      match.owner.path = owner->text(1);
      match.owner.category = owner->text(2);
      owner->reset();
      match.owner.caption_index = is_caption_kind(request.kind) ? caption_index : -1;
      caption.bind(1, match.owner.file_id)
          .bind(2, static_cast<std::int64_t>(std::max(caption_index, 0)));
      if (caption.step()) {
        match.owner.caption = caption.text(0);
        match.owner.caption_en = caption.text(1);
      }
      caption.reset();
    }
    result.matches.push_back(std::move(match));
  }
  std::sort(result.matches.begin(), result.matches.end(),
            [](const SearchMatch& a, const SearchMatch& b) {
              if (a.score != b.score) return a.score > b.score;
              if (a.owner.path != b.owner.path) return a.owner.path < b.owner.path;
              return a.owner.caption_index < b.owner.caption_index;
            });
  if (static_cast<std::int64_t>(result.matches.size()) > request.k)
    result.matches.resize(request.k);
  result.owners_ms = ms_since(owners_started);
  return result;
}

}  // namespace

SearchResult IndexStore::search(const std::string& model_id, const fs::path& scope_path,
                                const SearchRequest& request) const {
  return read_again_if_a_file_vanished(
      [&] { return search_once(*impl_, model_id, scope_path, request); });
}

}  // namespace mmsearch
