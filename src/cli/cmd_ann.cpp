// `mmsearch ann build|status|drop|recall`: the approximate-search index of a model.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"

namespace mmsearch::cli {
namespace {

struct AnnArgs {
  std::string action;
  std::string model;
  std::string kind = "image_proj";
  std::int64_t lists = 0;
  std::vector<std::int64_t> nprobe;
  std::int64_t queries = 100;
  std::int64_t k = 10;
  std::uint64_t seed = 1;
  bool json = false;
};

nlohmann::json info_json(const AnnInfo& info) {
  return {{"kind", to_string(info.kind)},
          {"file", info.file_name},
          {"entries", info.entries},
          {"lists", info.lists},
          {"default_nprobe", info.default_nprobe},
          {"bytes", info.bytes},
          {"created_at", info.created_at},
          {"live_items", info.live_items},
          {"uncovered_items", info.uncovered_items}};
}

void print_info(const std::string& model_id, const AnnInfo& info) {
  std::printf(
      "%s %s: %lld entries in %lld lists (probes %lld by default), %.1f MB; %lld of %lld live "
      "items are outside it and scanned exactly\n",
      model_id.c_str(), to_string(info.kind), static_cast<long long>(info.entries),
      static_cast<long long>(info.lists), static_cast<long long>(info.default_nprobe),
      static_cast<double>(info.bytes) / 1e6, static_cast<long long>(info.uncovered_items),
      static_cast<long long>(info.live_items));
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// The query of one sampled file: its first caption's text vector when it has one (what a text
// query is), else its own first-stage vector (an image query), normalised.
std::optional<SearchTerm> query_of(const IndexedFile& file, VectorKind kind, bool& from_text) {
  const StoredVectors* text = nullptr;
  const StoredVectors* image = nullptr;
  for (const StoredVectors& v : file.vectors) {
    if (v.kind == VectorKind::kTextProj && v.caption_index == 0) text = &v;
    if (v.kind == kind) image = &v;
  }
  if (!image) return std::nullopt;
  SearchTerm term;
  term.rule = image->rows > 1 ? ScoreRule::kMaxOverQueries : ScoreRule::kCls;
  std::vector<float> q(image->cols, 0.0f);
  from_text = text && text->cols == image->cols && kind == VectorKind::kImageProj;
  if (from_text) {
    q.assign(text->values.begin(), text->values.begin() + text->cols);
  } else {
    for (int r = 0; r < image->rows; ++r) {
      for (int d = 0; d < image->cols; ++d) q[d] += image->values[r * image->cols + d];
    }
  }
  double norm = 0.0;
  for (float x : q) norm += static_cast<double>(x) * x;
  if (norm <= 0.0) return std::nullopt;
  for (float& x : q) x = static_cast<float>(x / std::sqrt(norm));
  term.query.count = 1;
  term.query.vectors_per_item = 1;
  term.query.dim = image->cols;
  term.query.values = std::move(q);
  return term;
}

int run_recall(const IndexStore& store, const std::string& model_id, VectorKind kind,
               const AnnArgs& args) {
  const auto info = store.ann_info(model_id, kind);
  if (!info) {
    throw Error(ErrorKind::kIndex, model_id + " has no approximate-search index of " +
                                       to_string(kind) + "; run `mmsearch ann build`");
  }
  std::vector<std::int64_t> nprobes = args.nprobe;
  if (nprobes.empty()) nprobes = {info->default_nprobe};
  struct Row {
    std::int64_t nprobe;
    double recall = 0, ann_ms = 0;
  };
  std::vector<Row> rows;
  for (std::int64_t n : nprobes) rows.push_back({n});
  double exact_ms = 0;
  std::int64_t used = 0, from_text = 0;
  for (const IndexedFile& sample : store.sample_files(model_id, args.queries, args.seed)) {
    bool text = false;
    auto term = query_of(sample, kind, text);
    if (!term) continue;
    SearchRequest request;
    request.kind = kind;
    request.k = args.k;
    request.terms = {*term};
    request.excluded_paths = {sample.state.path};
    request.exact = true;
    auto started = std::chrono::steady_clock::now();
    const SearchResult exact = store.search(model_id, "/", request);
    exact_ms += ms_since(started);
    std::set<std::pair<std::string, int>> truth;
    for (const SearchMatch& m : exact.matches) truth.insert({m.owner.path, m.owner.caption_index});
    if (truth.empty()) continue;
    request.exact = false;
    for (Row& row : rows) {
      request.nprobe = row.nprobe;
      started = std::chrono::steady_clock::now();
      const SearchResult approx = store.search(model_id, "/", request);
      row.ann_ms += ms_since(started);
      std::int64_t found = 0;
      for (const SearchMatch& m : approx.matches) {
        found += truth.count({m.owner.path, m.owner.caption_index}) ? 1 : 0;
      }
      row.recall += static_cast<double>(found) / static_cast<double>(truth.size());
    }
    ++used;
    from_text += text ? 1 : 0;
  }
  if (used == 0) throw Error(ErrorKind::kIndex, "no stored vectors to sample queries from");
  const std::string source = from_text == used ? "caption text vectors"
                             : from_text == 0  ? "stored image vectors (no caption vectors)"
                                               : "caption text and stored image vectors";
  if (args.json) {
    nlohmann::json j = {{"model_id", model_id},        {"queries", used},
                        {"query_source", source},      {"k", args.k},
                        {"exact_ms", exact_ms / used}, {"index", info_json(*info)}};
    j["rows"] = nlohmann::json::array();
    for (const Row& r : rows) {
      j["rows"].push_back(
          {{"nprobe", r.nprobe}, {"recall", r.recall / used}, {"ms", r.ann_ms / used}});
    }
    std::cout << json_text(j) << "\n";
    return kExitOk;
  }
  std::printf("%lld queries from %s; recall@%lld against exact search (%.1f ms per query)\n",
              static_cast<long long>(used), source.c_str(), static_cast<long long>(args.k),
              exact_ms / used);
  std::printf("%8s %10s %10s\n", "nprobe", "recall", "ms/query");
  for (const Row& r : rows) {
    std::printf("%8lld %10.4f %10.2f\n", static_cast<long long>(r.nprobe), r.recall / used,
                r.ann_ms / used);
  }
  return kExitOk;
}

int run_ann(const GlobalOptions& global, const AnnArgs& args) {
  const Bundle bundle = open_bundle(global, args.model);
  const std::string model_id = bundle.identity();
  const VectorKind kind = vector_kind_from_string(args.kind);
  if (args.action == "status" || args.action == "recall") {
    const IndexStore store = open_index_read_only();
    if (args.action == "recall") return run_recall(store, model_id, kind, args);
    const auto info = store.ann_info(model_id, kind);
    if (args.json) {
      std::cout << nlohmann::json{{"model_id", model_id},
                                  {"index", info ? info_json(*info) : nlohmann::json()}}
                       .dump(2)
                << "\n";
    } else if (info) {
      print_info(model_id, *info);
    } else {
      std::printf("%s %s: no approximate-search index (queries scan every item)\n",
                  model_id.c_str(), to_string(kind));
    }
    return kExitOk;
  }
  IndexStore store(default_index_path());
  if (args.action == "drop") {
    const bool dropped = store.drop_ann(model_id, kind);
    if (args.json) {
      std::cout << nlohmann::json{{"model_id", model_id}, {"dropped", dropped}}.dump(2) << "\n";
    } else {
      std::printf("%s %s: %s\n", model_id.c_str(), to_string(kind),
                  dropped ? "approximate-search index removed" : "had no approximate-search index");
    }
    return kExitOk;
  }
  const auto started = std::chrono::steady_clock::now();
  const AnnInfo info = store.build_ann(model_id, kind, args.lists);
  if (args.json) {
    nlohmann::json j = {{"model_id", model_id}, {"index", info_json(info)}};
    j["seconds"] = ms_since(started) / 1000.0;
    std::cout << json_text(j) << "\n";
  } else {
    print_info(model_id, info);
    std::printf("built in %.1f s\n", ms_since(started) / 1000.0);
  }
  return kExitOk;
}

}  // namespace

Command register_ann(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("ann", "Build, inspect or drop the approximate-search index");
  app->footer(
      "Queries use a model's approximate-search index (FAISS IVF) when it has one, for the\n"
      "segments it covers; everything written since is scanned exactly. index and import build\n"
      "one by themselves from 1,000,000 items and rebuild it once 10% of the items are outside\n"
      "it. `query --exact` never uses it.\n"
      "Exit codes: 4 unknown model, 5 index problem (no vectors, no index for recall).\n"
      "Examples:\n"
      "  mmsearch ann build --model blip-base\n"
      "  mmsearch ann status --model blip-base --json\n"
      "  mmsearch ann recall --model blip-base --nprobe 16,32,64 --queries 200\n"
      "  mmsearch ann drop --model blip-base");
  auto args = std::make_shared<AnnArgs>();
  app->add_option("action", args->action, "build, status, recall or drop")
      ->required()
      ->check(CLI::IsMember({"build", "status", "recall", "drop"}));
  app->add_option("--model,-m", args->model, "Model bundle (default: the default model)");
  app->add_option("--kind", args->kind, "Stored vectors to index (default image_proj)")
      ->check(CLI::IsMember({"image_proj", "image_embed", "text_proj", "multimodal"}));
  app->add_option("--lists", args->lists, "build: inverted lists (default about sqrt(items))")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 16));
  app->add_option("--nprobe", args->nprobe,
                  "recall: lists probed, e.g. 8,16,32 (default: the "
                  "index's)")
      ->delimiter(',')
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 16));
  app->add_option("--queries", args->queries, "recall: sampled queries (default 100)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000}));
  app->add_option("--k", args->k, "recall: results compared per query (default 10)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000}));
  app->add_option("--seed", args->seed, "recall: which files are sampled");
  app->add_flag("--json", args->json, "Print the result as JSON");
  return {app, [&global, args]() { return run_ann(global, *args); }};
}

}  // namespace mmsearch::cli
