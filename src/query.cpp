#include "mmsearch/query.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "elapsed.h"
#include "mmsearch/error.h"
#include "mmsearch/indexer.h"
#include "mmsearch/scope_model.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

// Candidates re-scored per vision + ITM pass by --rerank: about 2 MB of pixels and vision tokens
// each at 384 px, whatever the size of the photos.
constexpr std::size_t kRerankChunk = 16;

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
  QueryResult result;
  result.model_id = model_id;
  QueryPhases& phases = result.phases;

  bool has_text = false, has_image = false;
  for (const auto& term : terms) {
    if (term.kind == QueryTerm::Kind::kText) has_text = true;
    if (term.kind == QueryTerm::Kind::kImage) has_image = true;
  }
  auto started = std::chrono::steady_clock::now();
  encoder.load_modules(has_image || options.rerank > 0, has_text,
                       options.rerank > 0 && manifest.itm);
  phases.load_ms = ms_since(started);

  SearchRequest request;
  request.kind = stored_kind_for(options.against);
  request.k = options.rerank > 0 ? std::max<std::int64_t>(options.rerank, options.k) : options.k;
  request.threshold = options.threshold;
  request.exact = options.exact;
  request.max_rescored = options.max_rescored;
  request.nprobe = options.nprobe;
  std::optional<std::size_t> rerank_term;  // index into terms
  for (std::size_t t = 0; t < terms.size(); ++t) {
    const QueryTerm& term = terms[t];
    SearchTerm search_term;
    search_term.weight = term.weight;
    Embeddings& query = search_term.query;
    ScoreRule rule = ScoreRule::kCls;
    if (term.kind == QueryTerm::Kind::kText) {
      started = std::chrono::steady_clock::now();
      const TextBatch tokens = encoder.tokenize({term.value}, manifest.text.max_tokens);
      phases.tokenize_ms += ms_since(started);
      started = std::chrono::steady_clock::now();
      const TextOutputs text = encoder.encode_text(tokens);
      phases.forward_ms += ms_since(started);
      if (options.against == Against::kMultimodal) {
        query = one_item(normalized(text.text_embeds[0].slice(0, 0, 1)));
      } else {
        query = one_item(text.text_embeds_proj[0].slice(0, 0, 1));
        rule = query_rule(manifest, true, request.kind);
      }
      if (!rerank_term && term.weight > 0) rerank_term = t;
    } else if (term.kind == QueryTerm::Kind::kIndexed) {
      // "More like this": the vectors stored for the file, no model pass. The same content
      // under another path has the same vectors, which is what find_by_content_hash returns.
      const std::string path = normalize_index_path(term.value);
      request.excluded_paths.push_back(path);
      const std::optional<FileState> state = store.find_file(model_id, path);
      std::optional<IndexedFile> stored;
      if (state) stored = store.find_by_content_hash(model_id, state->content_hash, state->size);
      if (!stored) {
        throw Error(ErrorKind::kInput, path + ": not indexed with " + model_id +
                                           "; 'similar' takes a file the index holds");
      }
      const VectorKind wanted = options.against == Against::kMultimodal ? VectorKind::kImageEmbed
                                                                        : VectorKind::kImageProj;
      const auto found = std::find_if(stored->vectors.begin(), stored->vectors.end(),
                                      [&](const StoredVectors& v) { return v.kind == wanted; });
      if (found == stored->vectors.end()) {
        throw Error(ErrorKind::kIndex,
                    path + ": the index holds no " + to_string(wanted) + " vectors for it");
      }
      query = from_stored(*found);
      if (options.against != Against::kMultimodal) {
        rule = query_rule(manifest, false, request.kind);
      }
    } else {
      started = std::chrono::steady_clock::now();
      RgbImage decoded;
      if (term.pixels) {
        decoded = *term.pixels;
      } else {
        request.excluded_paths.push_back(normalize_index_path(term.value));
        decoded = decode_image(term.value, options.decode);
      }
      const ImageOutputs image = encoder.encode_image(encoder.preprocess({decoded}));
      phases.forward_ms += ms_since(started);
      if (options.against == Against::kMultimodal) {
        query = from_stored(
            summary_vectors(manifest, image.image_embeds, 0, VectorKind::kImageEmbed, -1));
      } else {
        query = from_stored(image_proj_vectors(manifest, image.image_embeds_proj, 0));
        rule = query_rule(manifest, false, request.kind);
      }
    }
    if (rule == ScoreRule::kMeanOfQueries) query = mean_of_queries(query);
    search_term.rule = rule;
    request.terms.push_back(std::move(search_term));
  }
  if (options.rerank > 0) {
    if (options.against != Against::kImage || !rerank_term) {
      throw Error(ErrorKind::kUsage, "re-ranking needs a text term searched against images");
    }
    if (!manifest.itm) {
      throw Error(ErrorKind::kUsage,
                  "re-ranking needs a model with an ITM head; " + manifest.name + " has none");
    }
  }

  started = std::chrono::steady_clock::now();
  const SearchResult found = store.search(model_id, scope, request);
  phases.search_ms = ms_since(started);
  phases.select_ms = found.select_ms;
  phases.ann_ms = found.ann_ms;
  phases.scan_ms = found.scan_ms;
  phases.rescore_ms = found.rescore_ms;
  phases.owners_ms = found.owners_ms;
  result.searched = found.searched;
  result.rescored = found.rescored;
  result.proven_exact = found.proven_exact;
  result.approximate = found.approximate;
  result.nprobe = found.nprobe;
  if (found.searched == 0) {
    // Nothing to score: not indexed with this model, unless the query images were all it held.
    const std::vector<std::string> present = store.model_ids_in_scope(scope);
    const bool indexed = std::find(present.begin(), present.end(), model_id) != present.end();
    if (!indexed) throw_scope_not_indexed(store, scope, model_id);
  }

  auto make_hit = [](const SearchMatch& match, float score) {
    QueryHit hit;
    hit.score = score;
    hit.path = match.owner.path;
    hit.caption = match.owner.caption;
    hit.caption_en = match.owner.caption_en;
    hit.category = match.owner.category;
    return hit;
  };

  if (options.rerank > 0) {
    // LAVIS evaluation: the top candidates by ITC are re-scored as ITM logit + ITC similarity,
    // reading the candidate images again (their vision tokens are not stored). Candidates go
    // through the vision and ITM passes kRerankChunk at a time, and each photo is reduced to its
    // model-sized pixels as soon as it is decoded, so memory does not grow with --rerank.
    started = std::chrono::steady_clock::now();
    const std::string& text = terms[*rerank_term].value;
    const TextBatch one = encoder.tokenize({text}, manifest.text.itm_max_tokens);
    std::vector<QueryHit> hits, unreadable;
    std::vector<torch::Tensor> pixels;
    std::vector<const SearchMatch*> decoded;
    auto score_chunk = [&] {
      if (decoded.empty()) return;
      const auto count = static_cast<std::int64_t>(decoded.size());
      const ImageOutputs image = encoder.encode_image(torch::stack(pixels));
      TextBatch pairs;
      pairs.input_ids = one.input_ids.repeat({count, 1});
      pairs.attention_mask = one.attention_mask.repeat({count, 1});
      const MultimodalOutputs mm = encoder.encode_multimodal(image.vision_tokens, pairs);
      for (std::int64_t i = 0; i < count; ++i) {
        const float itm = mm.itm_logits[i][1].item<float>();
        const float itc = decoded[i]->term_scores[*rerank_term];
        QueryHit hit = make_hit(*decoded[i], itm + itc);
        hit.itm_score = itm;
        hit.itc_score = itc;
        hits.push_back(std::move(hit));
      }
      pixels.clear();
      decoded.clear();
    };
    for (const SearchMatch& candidate : found.matches) {
      try {
        pixels.push_back(
            encoder.preprocess_one(decode_image(candidate.owner.path, options.decode)));
        decoded.push_back(&candidate);
      } catch (const Error&) {
        // A photo that vanished or broke since indexing cannot be re-scored: it keeps its ITC
        // order, after every re-scored one.
        unreadable.push_back(make_hit(candidate, candidate.term_scores[*rerank_term]));
      }
      if (decoded.size() == kRerankChunk) score_chunk();
    }
    score_chunk();
    std::stable_sort(hits.begin(), hits.end(),
                     [](const QueryHit& a, const QueryHit& b) { return a.score > b.score; });
    hits.insert(hits.end(), std::make_move_iterator(unreadable.begin()),
                std::make_move_iterator(unreadable.end()));
    if (static_cast<std::int64_t>(hits.size()) > options.k) hits.resize(options.k);
    result.hits = std::move(hits);
    phases.rerank_ms = ms_since(started);
  } else {
    for (const SearchMatch& match : found.matches)
      result.hits.push_back(make_hit(match, match.score));
  }
  for (std::size_t i = 0; i < result.hits.size(); ++i)
    result.hits[i].rank = static_cast<int>(i) + 1;
  return result;
}

}  // namespace mmsearch
