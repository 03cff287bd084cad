// A synthetic index of many files with categories, captions and vectors, written through
// IndexStore::upsert_batch, for the simmatrix / eval tests and their benchmark. No image files
// exist: everything comes from the store.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "mmsearch/index.h"

namespace mmsearch::test_support {

struct SyntheticStore {
  std::string root = "/synthetic/photos";  // the scope: files are ROOT/item_NNNNNN.png
  std::int64_t files = 100;
  int categories = 4;  // category c holds a share of the files proportional to c + 1
  int image_rows = 1;  // image_proj rows per file: 1 (BLIP) or 32 (BLIP-2)
  int dim = 32;        // of every vector kind
  int captions_per_file = 1;
  // Every this-many files share one caption text ("a shared caption K"), 0 for none: eval
  // counts identical captions as relevant.
  int shared_caption_every = 0;
  unsigned seed = 1;
};

// The category of file i: "cat_C", drawn with weights C + 1 (so categories differ in size)
// independently of the path order, as a captions file would give them.
inline std::vector<std::string> synthetic_categories(const SyntheticStore& spec) {
  std::mt19937 rng(spec.seed);
  std::vector<double> weights;
  for (int c = 0; c < spec.categories; ++c) weights.push_back(c + 1.0);
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  std::vector<std::string> out;
  for (std::int64_t i = 0; i < spec.files; ++i) out.push_back("cat_" + std::to_string(pick(rng)));
  return out;
}

// Fills `store` under `model_id`: each vector is its category's centre plus noise, normalised,
// so same-category items score higher than others. upsert_batch() in batches of 256.
inline void fill_synthetic_store(IndexStore& store, const std::string& model_id,
                                 const SyntheticStore& spec) {
  const std::vector<std::string> categories = synthetic_categories(spec);
  std::mt19937 rng(spec.seed + 1);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> centres(spec.categories, std::vector<float>(spec.dim));
  for (auto& centre : centres)
    for (float& v : centre) v = normal(rng);
  const auto vector_near = [&](int category, float* out) {
    double norm = 0.0;
    for (int d = 0; d < spec.dim; ++d) {
      out[d] = centres[category][d] + 0.8f * normal(rng);
      norm += static_cast<double>(out[d]) * out[d];
    }
    const float scale = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.0f;
    for (int d = 0; d < spec.dim; ++d) out[d] *= scale;
  };
  const auto block = [&](VectorKind kind, int caption, int rows, int category) {
    StoredVectors v{kind, caption, rows, spec.dim,
                    std::vector<float>(static_cast<std::size_t>(rows) * spec.dim)};
    for (int r = 0; r < rows; ++r) vector_near(category, v.values.data() + r * spec.dim);
    return v;
  };
  std::vector<IndexedFile> batch;
  for (std::int64_t i = 0; i < spec.files; ++i) {
    const int category = std::stoi(categories[i].substr(4));
    char name[32];
    std::snprintf(name, sizeof name, "/item_%06lld.png", static_cast<long long>(i));
    IndexedFile f;
    f.state = {spec.root + name, 1000 + i, 1700000000000000000LL + i,
               "xxh64:" + std::to_string(1000000 + i)};
    f.category = categories[i];
    f.vectors.push_back(block(VectorKind::kImageProj, -1, spec.image_rows, category));
    f.vectors.push_back(block(VectorKind::kImageEmbed, -1, 1, category));
    for (int c = 0; c < spec.captions_per_file; ++c) {
      const bool shared =
          spec.shared_caption_every > 0 && c == 0 && i % spec.shared_caption_every == 0;
      f.captions.push_back({shared
                                ? "a shared caption " + categories[i]
                                : "caption " + std::to_string(c) + " of file " + std::to_string(i),
                            ""});
      f.vectors.push_back(block(VectorKind::kTextProj, c, 1, category));
      f.vectors.push_back(block(VectorKind::kMultimodal, c, 1, category));
    }
    batch.push_back(std::move(f));
    if (batch.size() == 256 || i + 1 == spec.files) {
      store.upsert_batch(model_id, batch);
      batch.clear();
    }
  }
}

}  // namespace mmsearch::test_support
