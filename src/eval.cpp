#include "mmsearch/eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
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

// The best rank (0-based) a relevant item reaches in `row`, counting ties against the model:
// the number of non-relevant items scoring at least as high as the best relevant one.
// -1 when nothing is relevant.
std::int64_t pessimistic_rank(const float* row, std::int64_t n, const std::vector<char>& relevant) {
  float best = -std::numeric_limits<float>::infinity();
  bool any = false;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!relevant[i]) continue;
    any = true;
    best = std::max(best, finite_or_lowest(row[i]));
  }
  if (!any) return -1;
  std::int64_t rank = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!relevant[i] && finite_or_lowest(row[i]) >= best) ++rank;
  }
  return rank;
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

}  // namespace

RecallAtK text_to_image_recall(const std::vector<float>& scores, const EvalSet& set) {
  check_set(set);
  const std::size_t images = set.image_categories.size(), captions = set.caption_texts.size();
  check_scores(scores, captions, images, "text->image");
  // Caption text -> the images that own a caption with exactly that text.
  std::unordered_map<std::string, std::vector<std::int64_t>> owners;
  for (std::size_t j = 0; j < captions; ++j) {
    owners[set.caption_texts[j]].push_back(set.caption_image[j]);
  }
  RecallCounter counter;
  std::vector<char> relevant(images);
  for (std::size_t j = 0; j < captions; ++j) {
    std::fill(relevant.begin(), relevant.end(), 0);
    for (std::int64_t i : owners[set.caption_texts[j]]) relevant[i] = 1;
    counter.add(pessimistic_rank(scores.data() + j * images, images, relevant));
  }
  return counter.result();
}

RecallAtK image_to_text_recall(const std::vector<float>& scores, const EvalSet& set) {
  check_set(set);
  const std::size_t images = set.image_categories.size(), captions = set.caption_texts.size();
  check_scores(scores, images, captions, "image->text");
  std::vector<std::unordered_set<std::string>> own_texts(images);
  for (std::size_t j = 0; j < captions; ++j) {
    own_texts[set.caption_image[j]].insert(set.caption_texts[j]);
  }
  RecallCounter counter;
  std::vector<char> relevant(captions);
  for (std::size_t i = 0; i < images; ++i) {
    if (own_texts[i].empty()) continue;  // an uncaptioned image asks nothing
    for (std::size_t j = 0; j < captions; ++j) {
      relevant[j] = own_texts[i].count(set.caption_texts[j]) != 0;
    }
    counter.add(pessimistic_rank(scores.data() + i * captions, captions, relevant));
  }
  return counter.result();
}

CategoryPrecision category_precision_at_k(const std::vector<float>& scores, const EvalSet& set,
                                          int k) {
  if (k <= 0) throw Error(ErrorKind::kUsage, "eval: k must be positive");
  const std::size_t images = set.image_categories.size();
  check_scores(scores, images, images, "image->image");
  CategoryPrecision result;
  double sum = 0.0;
  std::vector<std::int64_t> others;
  for (std::size_t q = 0; q < images; ++q) {
    const std::string& category = set.image_categories[q];
    if (category.empty() || images < 2) continue;
    const float* row = scores.data() + q * images;
    others.clear();
    for (std::size_t i = 0; i < images; ++i) {
      if (i != q) others.push_back(static_cast<std::int64_t>(i));
    }
    const auto same = [&](std::int64_t i) { return set.image_categories[i] == category; };
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
    sum += static_cast<double>(hits) / top;
    ++result.queries;
  }
  if (result.queries > 0) result.precision = sum / result.queries;
  return result;
}

EvalReport evaluate_stored(const IndexStore& store, const Manifest& manifest,
                           const std::string& model_id, const std::filesystem::path& scope) {
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
  const ScoreRule text_image = manifest.similarity_text_image;
  const ScoreRule image_image = manifest.similarity_image_image;
  const Embeddings& image_items = images.embeddings;
  const Embeddings reduced =
      image_image == ScoreRule::kMeanOfQueries ? mean_of_queries(image_items) : Embeddings{};
  const Embeddings& image_side = image_image == ScoreRule::kMeanOfQueries ? reduced : image_items;

  EvalReport report;
  report.model = manifest.name;
  report.model_id = model_id;
  report.images = images.embeddings.count;
  report.captions = captions.embeddings.count;
  report.text_to_image =
      text_to_image_recall(score_matrix(captions.embeddings, image_items, text_image), set);
  report.image_to_text =
      image_to_text_recall(score_matrix(image_items, captions.embeddings, text_image), set);
  report.image_to_image =
      category_precision_at_k(score_matrix(image_side, image_side, image_image), set, 5);
  return report;
}

}  // namespace mmsearch
