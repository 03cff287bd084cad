// Retrieval metrics (see eval.h): per-query measures over one row of scores, applied to whole
// matrices or streamed over the stored vectors one query at a time.
#include "mmsearch/eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/sample.h"
#include "mmsearch/score_rows.h"
#include "mmsearch/search.h"

namespace mmsearch {
namespace {

void check_set(const EvalSet& set) {
  if (set.caption_image.size() != set.caption_texts.size()) {
    throw Error(ErrorKind::kUsage, "eval: " + std::to_string(set.caption_texts.size()) +
                                       " captions but " + std::to_string(set.caption_image.size()) +
                                       " owners");
  }
  const auto images = static_cast<std::int64_t>(set.image_categories.size());
  for (std::int64_t owner : set.caption_image) {
    if (owner < 0 || owner >= images) {
      throw Error(ErrorKind::kUsage, "eval: a caption belongs to image " + std::to_string(owner) +
                                         " of " + std::to_string(images));
    }
  }
}

void check_scores(const std::vector<float>& scores, std::size_t rows, std::size_t cols,
                  const char* what) {
  if (scores.size() != rows * cols) {
    throw Error(ErrorKind::kUsage, std::string("eval: ") + what + " scores have " +
                                       std::to_string(scores.size()) + " values, expected " +
                                       std::to_string(rows) + " x " + std::to_string(cols));
  }
}

float finite_or_lowest(float v) {
  return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
}

// Who is relevant to whom, as integer ids built once, so that a query's row needs O(relevant)
// work to mark its relevant items instead of a string lookup per candidate.
struct Relevance {
  std::vector<std::int32_t> text_of_caption;                // caption -> distinct text id
  std::vector<std::vector<std::int64_t>> images_of_text;    // text -> images with a caption of it
  std::vector<std::vector<std::int64_t>> captions_of_text;  // text -> captions with that text
  std::vector<std::vector<std::int32_t>> texts_of_image;    // image -> its distinct texts
  std::vector<std::int32_t> category_of_image;              // image -> category id, -1 for none

  explicit Relevance(const EvalSet& set) {
    std::unordered_map<std::string, std::int32_t> text_ids;
    for (std::size_t j = 0; j < set.caption_texts.size(); ++j) {
      const auto [it, added] =
          text_ids.emplace(set.caption_texts[j], static_cast<std::int32_t>(text_ids.size()));
      if (added) {
        images_of_text.emplace_back();
        captions_of_text.emplace_back();
      }
      text_of_caption.push_back(it->second);
      images_of_text[it->second].push_back(set.caption_image[j]);
      captions_of_text[it->second].push_back(static_cast<std::int64_t>(j));
    }
    texts_of_image.resize(set.image_categories.size());
    for (std::size_t j = 0; j < set.caption_texts.size(); ++j) {
      auto& texts = texts_of_image[set.caption_image[j]];
      if (std::find(texts.begin(), texts.end(), text_of_caption[j]) == texts.end()) {
        texts.push_back(text_of_caption[j]);
      }
    }
    std::unordered_map<std::string, std::int32_t> category_ids;
    for (const std::string& category : set.image_categories) {
      category_of_image.push_back(
          category.empty()
              ? -1
              : category_ids.emplace(category, static_cast<std::int32_t>(category_ids.size()))
                    .first->second);
    }
  }
};

// The best rank (0-based) a relevant item reaches in `row`, counting ties against the model:
// the number of non-relevant items scoring at least as high as the best relevant one.
// -1 when nothing is relevant. `mark` (n zeros) is used as scratch and left as zeros.
std::int64_t pessimistic_rank(const float* row, std::size_t n,
                              const std::vector<std::int64_t>& relevant, std::vector<char>& mark) {
  if (relevant.empty()) return -1;
  float best = -std::numeric_limits<float>::infinity();
  for (std::int64_t i : relevant) {
    best = std::max(best, finite_or_lowest(row[i]));
    mark[i] = 1;
  }
  std::int64_t rank = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!mark[i] && finite_or_lowest(row[i]) >= best) ++rank;
  }
  for (std::int64_t i : relevant) mark[i] = 0;
  return rank;
}

// Scratch for the per-query measures, sized once.
struct QueryScratch {
  std::vector<char> mark;
  std::vector<std::int64_t> relevant;
  std::vector<std::int64_t> others;
};

// Caption j's row over the images.
std::int64_t text_query_rank(const float* row, std::size_t images, const Relevance& rel,
                             std::size_t j, QueryScratch& scratch) {
  scratch.mark.resize(images);
  return pessimistic_rank(row, images, rel.images_of_text[rel.text_of_caption[j]], scratch.mark);
}

// Image i's row over the captions; -1 for an uncaptioned image (it asks nothing).
std::int64_t image_query_rank(const float* row, std::size_t captions, const Relevance& rel,
                              std::size_t i, QueryScratch& scratch) {
  scratch.mark.resize(captions);
  scratch.relevant.clear();
  for (std::int32_t text : rel.texts_of_image[i]) {
    const auto& same_text = rel.captions_of_text[text];
    scratch.relevant.insert(scratch.relevant.end(), same_text.begin(), same_text.end());
  }
  return pessimistic_rank(row, captions, scratch.relevant, scratch.mark);
}

// Image q's row over the images: the fraction of its k best other images in its category, or
// a negative value when q asks nothing (no category, or no other image).
double image_query_precision(const float* row, std::size_t images, const Relevance& rel,
                             std::size_t q, int k, QueryScratch& scratch) {
  const std::int32_t category = rel.category_of_image[q];
  if (category < 0 || images < 2) return -1.0;
  auto& others = scratch.others;
  others.clear();
  for (std::size_t i = 0; i < images; ++i) {
    if (i != q) others.push_back(static_cast<std::int64_t>(i));
  }
  const auto same = [&](std::int64_t i) { return rel.category_of_image[i] == category; };
  const auto before = [&](std::int64_t a, std::int64_t b) {
    const float sa = finite_or_lowest(row[a]), sb = finite_or_lowest(row[b]);
    if (sa != sb) return sa > sb;
    if (same(a) != same(b)) return !same(a);  // ties go against the model
    return a < b;
  };
  const std::size_t top = std::min<std::size_t>(k, others.size());
  std::partial_sort(others.begin(), others.begin() + top, others.end(), before);
  std::size_t hits = 0;
  for (std::size_t r = 0; r < top; ++r) hits += same(others[r]);
  return static_cast<double>(hits) / top;
}

struct RecallCounter {
  std::int64_t hits1 = 0, hits5 = 0, hits10 = 0, queries = 0;
  void add(std::int64_t rank) {
    if (rank < 0) return;
    ++queries;
    hits1 += rank < 1;
    hits5 += rank < 5;
    hits10 += rank < 10;
  }
  RecallAtK result() const {
    RecallAtK r;
    r.queries = queries;
    if (queries > 0) {
      r.r1 = static_cast<double>(hits1) / queries;
      r.r5 = static_cast<double>(hits5) / queries;
      r.r10 = static_cast<double>(hits10) / queries;
    }
    return r;
  }
};

struct PrecisionCounter {
  double sum = 0.0;
  std::int64_t queries = 0;
  void add(double precision) {
    if (precision < 0.0) return;
    sum += precision;
    ++queries;
  }
  CategoryPrecision result() const {
    CategoryPrecision p;
    p.queries = queries;
    if (queries > 0) p.precision = sum / queries;
    return p;
  }
};

}  // namespace

RecallAtK text_to_image_recall(const std::vector<float>& scores, const EvalSet& set) {
  check_set(set);
  const std::size_t images = set.image_categories.size(), captions = set.caption_texts.size();
  check_scores(scores, captions, images, "text->image");
  const Relevance rel(set);
  QueryScratch scratch;
  RecallCounter counter;
  for (std::size_t j = 0; j < captions; ++j) {
    counter.add(text_query_rank(scores.data() + j * images, images, rel, j, scratch));
  }
  return counter.result();
}

RecallAtK image_to_text_recall(const std::vector<float>& scores, const EvalSet& set) {
  check_set(set);
  const std::size_t images = set.image_categories.size(), captions = set.caption_texts.size();
  check_scores(scores, images, captions, "image->text");
  const Relevance rel(set);
  QueryScratch scratch;
  RecallCounter counter;
  for (std::size_t i = 0; i < images; ++i) {
    counter.add(image_query_rank(scores.data() + i * captions, captions, rel, i, scratch));
  }
  return counter.result();
}

CategoryPrecision category_precision_at_k(const std::vector<float>& scores, const EvalSet& set,
                                          int k) {
  if (k <= 0) throw Error(ErrorKind::kUsage, "eval: k must be positive");
  const std::size_t images = set.image_categories.size();
  check_scores(scores, images, images, "image->image");
  EvalSet categories_only;  // precision needs no captions
  categories_only.image_categories = set.image_categories;
  const Relevance rel(categories_only);
  QueryScratch scratch;
  PrecisionCounter counter;
  for (std::size_t q = 0; q < images; ++q) {
    counter.add(image_query_precision(scores.data() + q * images, images, rel, q, k, scratch));
  }
  return counter.result();
}

EvalReport evaluate_stored(const IndexStore& store, const Manifest& manifest,
                           const std::string& model_id, const std::filesystem::path& scope,
                           const EvalOptions& options) {
  if (options.sample < 0) {
    throw Error(ErrorKind::kUsage, "eval: a sample of " + std::to_string(options.sample) +
                                       " queries; give --sample N >= 1");
  }
  const LoadedVectors images = store.load_vectors(model_id, scope, VectorKind::kImageProj);
  const LoadedVectors captions = store.load_vectors(model_id, scope, VectorKind::kTextProj);
  if (images.embeddings.count == 0) {
    throw Error(ErrorKind::kInput, scope.string() + ": no readable images to evaluate on");
  }
  if (captions.embeddings.count == 0) {
    throw Error(ErrorKind::kInput, scope.string() +
                                       ": no captions (evaluation needs captions.csv, .tsv, "
                                       ".jsonl or sidecar .txt files)");
  }
  EvalSet set;
  std::unordered_map<std::int64_t, std::int64_t> image_of_file;
  for (std::size_t i = 0; i < images.owners.size(); ++i) {
    image_of_file[images.owners[i].file_id] = static_cast<std::int64_t>(i);
    set.image_categories.push_back(images.owners[i].category);
  }
  for (const auto& owner : captions.owners) {
    set.caption_texts.push_back(owner.caption);
    set.caption_image.push_back(image_of_file.at(owner.file_id));
  }
  const std::size_t n_images = set.image_categories.size();
  const std::size_t n_captions = set.caption_texts.size();

  // The queries: all, or a stratified sample of each side (keys: the file's path).
  const auto queries = [&](const LoadedVectors& side, const std::vector<std::string>& categories) {
    std::vector<std::int64_t> rows;
    if (options.sample > 0 && side.embeddings.count > options.sample) {
      std::vector<std::string> keys;
      keys.reserve(side.owners.size());
      for (const VectorOwner& owner : side.owners) keys.push_back(owner.path);
      for (std::size_t i : stratified_sample(
               categories, keys, static_cast<std::size_t>(options.sample), options.seed)) {
        rows.push_back(static_cast<std::int64_t>(i));
      }
    } else {
      rows.resize(side.owners.size());
      std::iota(rows.begin(), rows.end(), 0);
    }
    return rows;
  };
  std::vector<std::string> caption_categories;
  caption_categories.reserve(n_captions);
  for (std::int64_t owner : set.caption_image) {
    caption_categories.push_back(set.image_categories[owner]);
  }
  const std::vector<std::int64_t> caption_rows = queries(captions, caption_categories);
  const std::vector<std::int64_t> image_rows = queries(images, set.image_categories);

  const ScoreRule text_image = manifest.similarity_text_image;
  const ScoreRule image_image = manifest.similarity_image_image;
  const Embeddings& image_items = images.embeddings;
  const Embeddings reduced =
      image_image == ScoreRule::kMeanOfQueries ? mean_of_queries(image_items) : Embeddings{};
  const Embeddings& image_side = image_image == ScoreRule::kMeanOfQueries ? reduced : image_items;

  const Relevance rel(set);
  QueryScratch scratch;
  RecallCounter text_to_image, image_to_text;
  PrecisionCounter image_to_image;
  for_each_score_row(captions.embeddings, image_items, text_image, &caption_rows,
                     [&](std::int64_t j, const std::vector<float>& row) {
                       text_to_image.add(text_query_rank(row.data(), n_images, rel, j, scratch));
                     });
  for_each_score_row(image_items, captions.embeddings, text_image, &image_rows,
                     [&](std::int64_t i, const std::vector<float>& row) {
                       image_to_text.add(image_query_rank(row.data(), n_captions, rel, i, scratch));
                     });
  for_each_score_row(
      image_side, image_side, image_image, &image_rows,
      [&](std::int64_t q, const std::vector<float>& row) {
        image_to_image.add(image_query_precision(row.data(), n_images, rel, q, 5, scratch));
      });

  EvalReport report;
  report.model = manifest.name;
  report.model_id = model_id;
  report.images = images.embeddings.count;
  report.captions = captions.embeddings.count;
  report.text_to_image = text_to_image.result();
  report.image_to_text = image_to_text.result();
  report.image_to_image = image_to_image.result();
  report.caption_queries = static_cast<std::int64_t>(caption_rows.size());
  report.image_queries = static_cast<std::int64_t>(image_rows.size());
  report.sampled = report.caption_queries < report.captions || report.image_queries < report.images;
  report.seed = options.seed;
  return report;
}

}  // namespace mmsearch
