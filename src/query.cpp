#include "mmsearch/query.h"

#include <torch/torch.h>

#include <algorithm>
#include <unordered_set>

#include "mmsearch/error.h"
#include "mmsearch/indexer.h"
#include "mmsearch/scope_model.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

Embeddings one_item(const torch::Tensor& rows) {
  const torch::Tensor t = rows.contiguous().to(torch::kFloat32);
  Embeddings e;
  e.count = 1;
  e.vectors_per_item = static_cast<int>(t.size(0));
  e.dim = static_cast<int>(t.size(1));
  e.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  return e;
}

Embeddings from_stored(const StoredVectors& v) {
  Embeddings e;
  e.count = 1;
  e.vectors_per_item = v.rows;
  e.dim = v.cols;
  e.values = v.values;
  return e;
}

torch::Tensor normalized(const torch::Tensor& t) {
  return torch::nn::functional::normalize(t, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

}  // namespace

void throw_scope_not_indexed(const IndexStore& store, const fs::path& scope,
                             const std::string& model_id) {
  const std::string others = describe_usages(store.models_in_scope(scope));
  throw Error(ErrorKind::kIndex, scope.string() + " holds no vectors of " + model_id +
                                     (others.empty() ? std::string("; it has not been indexed")
                                                     : "; it was indexed with " + others));
}

QueryResult run_query(Encoder& encoder, const IndexStore& store,
                      const std::vector<QueryTerm>& terms, const QueryOptions& options) {
  if (terms.empty()) throw Error(ErrorKind::kUsage, "a query needs at least one text or image");
  const Manifest& manifest = encoder.manifest();
  const std::string model_id = encoder.bundle().identity();
  const fs::path scope = normalize_index_path(options.scope);

  LoadedVectors items = store.load_vectors(model_id, scope, stored_kind_for(options.against));
  if (items.embeddings.count == 0) throw_scope_not_indexed(store, scope, model_id);

  // Mean-of-queries items are reduced once, not per term.
  std::optional<Embeddings> reduced_items;
  auto items_for = [&](ScoreRule rule) -> const Embeddings& {
    if (rule != ScoreRule::kMeanOfQueries) return items.embeddings;
    if (!reduced_items) reduced_items = mean_of_queries(items.embeddings);
    return *reduced_items;
  };

  std::vector<WeightedScores> weighted;
  std::vector<std::string> query_images;
  std::optional<std::size_t> rerank_term;  // index into weighted / terms
  for (const auto& term : terms) {
    Embeddings query;
    ScoreRule rule = ScoreRule::kCls;
    if (term.kind == QueryTerm::Kind::kText) {
      const TextBatch tokens = encoder.tokenize({term.value}, manifest.text.max_tokens);
      const TextOutputs text = encoder.encode_text(tokens);
      if (options.against == Against::kMultimodal) {
        query = one_item(normalized(text.text_embeds[0].slice(0, 0, 1)));
      } else {
        query = one_item(text.text_embeds_proj[0].slice(0, 0, 1));
        rule = query_rule(manifest, true, stored_kind_for(options.against));
      }
      if (!rerank_term && term.weight > 0) rerank_term = weighted.size();
    } else {
      query_images.push_back(normalize_index_path(term.value));
      const RgbImage decoded = decode_image(term.value, options.decode);
      const ImageOutputs image = encoder.encode_image(encoder.preprocess({decoded}));
      if (options.against == Against::kMultimodal) {
        query = from_stored(
            summary_vectors(manifest, image.image_embeds, 0, VectorKind::kImageEmbed, -1));
      } else {
        query = from_stored(image_proj_vectors(manifest, image.image_embeds_proj, 0));
        rule = query_rule(manifest, false, stored_kind_for(options.against));
      }
    }
    if (rule == ScoreRule::kMeanOfQueries) query = mean_of_queries(query);
    weighted.push_back({score_items(query, items_for(rule), rule), term.weight});
  }
  const std::vector<float> scores = fuse_scores(weighted);

  // An image given as the query never comes back as its own result.
  std::vector<std::int64_t> excluded;
  const std::unordered_set<std::string> query_paths(query_images.begin(), query_images.end());
  for (std::size_t i = 0; i < items.owners.size(); ++i) {
    if (query_paths.count(items.owners[i].path)) excluded.push_back(static_cast<std::int64_t>(i));
  }

  QueryResult result;
  result.model_id = model_id;
  result.searched = items.embeddings.count;

  auto make_hit = [&](std::int64_t index, float score) {
    QueryHit hit;
    const VectorOwner& owner = items.owners[index];
    hit.score = score;
    hit.path = owner.path;
    hit.caption = owner.caption;
    hit.caption_en = owner.caption_en;
    hit.category = owner.category;
    return hit;
  };

  if (options.rerank > 0) {
    if (options.against != Against::kImage || !rerank_term) {
      throw Error(ErrorKind::kUsage, "re-ranking needs a text term searched against images");
    }
    if (!manifest.itm) {
      throw Error(ErrorKind::kUsage,
                  "re-ranking needs a model with an ITM head; " + manifest.name + " has none");
    }
    // LAVIS evaluation: the top candidates by ITC are re-scored as ITM logit + ITC similarity,
    // reading the candidate images again (their vision tokens are not stored).
    const auto candidates = top_k(scores, std::max<std::int64_t>(options.rerank, options.k),
                                  options.threshold, excluded);
    const std::vector<float>& itc = weighted[*rerank_term].scores;
    const std::string& text = terms[*rerank_term].value;
    std::vector<QueryHit> hits;
    std::vector<RgbImage> images;
    std::vector<std::int64_t> decoded;
    for (const auto& candidate : candidates) {
      try {
        images.push_back(decode_image(items.owners[candidate.index].path, options.decode));
        decoded.push_back(candidate.index);
      } catch (const Error&) {
        // A photo that vanished or broke since indexing keeps its ITC rank below the others.
      }
    }
    if (!images.empty()) {
      const ImageOutputs image = encoder.encode_image(encoder.preprocess(images));
      const TextBatch one = encoder.tokenize({text}, manifest.text.itm_max_tokens);
      TextBatch pairs;
      pairs.input_ids = one.input_ids.repeat({static_cast<std::int64_t>(images.size()), 1});
      pairs.attention_mask =
          one.attention_mask.repeat({static_cast<std::int64_t>(images.size()), 1});
      const MultimodalOutputs mm = encoder.encode_multimodal(image.vision_tokens, pairs);
      for (std::size_t i = 0; i < decoded.size(); ++i) {
        const float itm = mm.itm_logits[static_cast<std::int64_t>(i)][1].item<float>();
        QueryHit hit = make_hit(decoded[i], itm + itc[decoded[i]]);
        hit.itm_score = itm;
        hit.itc_score = itc[decoded[i]];
        hits.push_back(std::move(hit));
      }
    }
    std::stable_sort(hits.begin(), hits.end(),
                     [](const QueryHit& a, const QueryHit& b) { return a.score > b.score; });
    if (static_cast<std::int64_t>(hits.size()) > options.k) hits.resize(options.k);
    result.hits = std::move(hits);
  } else {
    for (const auto& hit : top_k(scores, options.k, options.threshold, excluded)) {
      result.hits.push_back(make_hit(hit.index, hit.score));
    }
  }
  for (std::size_t i = 0; i < result.hits.size(); ++i)
    result.hits[i].rank = static_cast<int>(i) + 1;
  return result;
}

}  // namespace mmsearch
