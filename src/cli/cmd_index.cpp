// `mmsearch index DIR`: embeds a folder's images and captions into the per-user store.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/indexer.h"
#include "mmsearch/scope_model.h"
#include "progress.h"
#include "translation_hook.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {

nlohmann::json summary_json(const IndexSummary& summary) {
  nlohmann::json j;
  put_path(j, "root", summary.root);
  j["model"] = summary.model_id;
  j["found"] = summary.found;
  j["indexed"] = summary.indexed;
  j["reused"] = summary.reused;
  j["unchanged"] = summary.unchanged;
  j["removed"] = summary.removed;
  j["failed"] = summary.failed;
  j["translated"] = summary.translated;
  j["translations_cached"] = summary.translations_cached;
  j["seconds"] = summary.seconds;
  const EmbedTiming& t = summary.timing;
  j["timing"] = {{"load_seconds", summary.load_seconds},
                 {"embed_seconds", t.seconds},
                 {"decode_wait_seconds", t.decode_wait_seconds},
                 {"image_forward_seconds", t.image_forward_seconds},
                 {"text_forward_seconds", t.text_forward_seconds},
                 {"multimodal_forward_seconds", t.multimodal_forward_seconds},
                 {"commit_seconds", t.commit_seconds},
                 {"first_batch_seconds", t.first_batch_seconds},
                 {"first_batch_forward_seconds", t.first_batch_forward_seconds},
                 {"first_batch_image_forward_seconds", t.first_batch_image_forward_seconds},
                 {"first_batch_items", t.first_batch_items},
                 {"embedded_items", t.items},
                 {"batches", t.batches}};
  j["failures"] = nlohmann::json::array();
  for (const auto& f : summary.failures) {
    nlohmann::json failure = {{"reason", f.reason}};
    put_path(failure, "path", f.path);
    j["failures"].push_back(failure);
  }
  j["warnings"] = summary.warnings;
  return j;
}

namespace {

PruneReport prune(const GlobalOptions& global) {
  std::error_code ec;
  if (!fs::exists(default_index_path(), ec)) return {};  // nothing stored, nothing to create
  IndexStore store(default_index_path());
  return prune_stale_models(store, discover_bundles(model_search_path(global.models_dir), false));
}

void log_timing(const IndexSummary& summary) {
  const EmbedTiming& t = summary.timing;
  if (t.batches == 0) return;
  const double steady = t.seconds - t.first_batch_seconds;
  const std::int64_t steady_items = t.items - t.first_batch_items;
  spdlog::debug(
      "embedding: load {:.2f} s; {} items in {:.2f} s ({:.2f} s forward: image {:.2f}, "
      "text {:.2f}, multimodal {:.2f}; waiting for decode {:.2f}; commit {:.2f}); after the "
      "first batch {:.2f} items/s",
      summary.load_seconds, t.items, t.seconds, t.forward_seconds(), t.image_forward_seconds,
      t.text_forward_seconds, t.multimodal_forward_seconds, t.decode_wait_seconds, t.commit_seconds,
      steady > 0 && steady_items > 0 ? steady_items / steady : 0.0);
}

nlohmann::json prune_json(const PruneReport& report) {
  nlohmann::json j;
  j["pruned"] = nlohmann::json::array();
  for (const auto& p : report.pruned) {
    j["pruned"].push_back({{"model", p.model_id},
                           {"files", p.removed.files},
                           {"captions", p.removed.captions},
                           {"vector_blocks", p.removed.vectors}});
  }
  j["bytes_freed"] = report.bytes_freed;
  return j;
}

void print_prune(const PruneReport& report) {
  for (const auto& p : report.pruned) {
    std::printf("pruned %s: %lld files, %lld captions\n", p.model_id.c_str(),
                static_cast<long long>(p.removed.files),
                static_cast<long long>(p.removed.captions));
  }
  std::printf("pruned %zu model%s, %.1f MB freed\n", report.pruned.size(),
              report.pruned.size() == 1 ? "" : "s", report.bytes_freed / 1e6);
}

}  // namespace

Command register_index(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("index", "Embed a folder of images (and captions) for search");
  app->footer(
      "Captions (optional): DIR/captions.csv, captions.tsv or captions.jsonl with columns\n"
      "file, caption[, category], or a sidecar x.txt next to x.jpg. The category defaults to\n"
      "the first sub-folder under DIR. Re-running only embeds what changed.\n"
      "With --translate LANG, captions are translated to English (offline, opus-mt-LANG-en)\n"
      "and embedded in English; both texts are stored and translations are cached.\n"
      "Examples:\n"
      "  mmsearch index ./dishes\n"
      "  mmsearch index ~/Pictures --model blip2-vitL --batch-size 8\n"
      "  mmsearch index ./dishes --json | jq .failures\n"
      "  mmsearch index ./ricette --translate it\n"
      "  mmsearch index --prune            # drop vectors of re-exported or removed bundles");
  struct Options {
    std::string dir;
    std::string model;
    int batch_size = 16;
    int decode_workers = 1;
    std::int64_t decode_memory_mib = kDefaultDecodeMemoryBytes >> 20;
    bool hidden = false;
    bool json = false;
    bool no_exif = false;
    std::int64_t max_pixels = DecodeOptions{}.max_pixels;
    TranslationRequest translation;
    bool prune = false;
    bool rebuild = false;
    bool confirm_removal = false;
    bool lenient_captions = false;
    std::string vectors = "fp16";
    std::string ann = "auto";
  };
  auto options = std::make_shared<Options>();
  app->add_option("dir", options->dir, "Folder to index (recursively; optional with --prune)");
  app->add_option("--model,-m", options->model, "Model bundle (default: the default model)");
  app->add_option("--batch-size", options->batch_size, "Images per model call and per commit")
      ->check(CLI::Range(1, 1024));
  app->add_option("--decode-workers", options->decode_workers,
                  "Threads decoding images ahead of the model")
      ->check(CLI::Range(1, 64));
  app->add_option("--decode-memory", options->decode_memory_mib,
                  "MiB the decoding workers may hold together, estimated from image headers; "
                  "one larger image is decoded alone")
      ->check(CLI::Range(std::int64_t{16}, std::int64_t{1} << 24))
      ->capture_default_str();
  app->add_flag("--hidden", options->hidden, "Also index hidden files and folders");
  app->add_flag("--json", options->json, "Print the summary as JSON");
  app->add_flag("--rebuild", options->rebuild,
                "Re-embed every file, trusting nothing stored (e.g. after a damaged-store error)");
  app->add_flag("--confirm-removal", options->confirm_removal,
                "Allow a run to remove most or all of a folder's indexed files (refused "
                "otherwise, as the sign of an unmounted drive)");
  app->add_flag("--lenient-captions", options->lenient_captions,
                "Skip damaged rows of the captions file (e.g. an unterminated quote) with a "
                "warning, instead of stopping");
  app->add_option("--vectors", options->vectors,
                  "How new vectors are stored: fp16 (default), fp32 (exact) or int8")
      ->check(CLI::IsMember({"fp16", "fp32", "int8"}));
  app->add_flag("--no-exif-rotate", options->no_exif, "Ignore EXIF orientation (strict LAVIS)");
  add_ann_option(app, options->ann);
  app->add_option("--max-pixels", options->max_pixels, "Refuse larger images (bomb guard)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  add_translation_options(app, options->translation, "captions");
  app->add_flag("--prune", options->prune,
                "Remove the vectors of every model whose bundle is no longer installed or was "
                "re-exported (after indexing DIR, when given)");

  return {app, [&global, options]() {
            if (options->dir.empty()) {
              if (!options->prune) throw Error(ErrorKind::kUsage, "give the folder to index");
              const PruneReport report = prune(global);
              if (options->json) {
                std::cout << json_text(prune_json(report)) << "\n";
              } else {
                print_prune(report);
              }
              return kExitOk;
            }
            // The translator is located (and its id read) up front, so a missing bundle fails
            // before any work; its model is only loaded when some caption is not cached.
            std::shared_ptr<LazyTranslator> translator;
            if (options->translation.enabled()) {
              translator = open_translator(global, options->translation);
            }
            auto encoder = open_encoder(global, options->model);
            IndexStore store(default_index_path());
            store.set_vector_encoding(vector_encoding_from_string(options->vectors));
            IndexOptions index_options;
            index_options.captions.lenient = options->lenient_captions;
            index_options.rebuild = options->rebuild;
            index_options.confirm_removal = options->confirm_removal;
            index_options.include_hidden = options->hidden;
            index_options.batch_size = options->batch_size;
            index_options.decode_workers = options->decode_workers;
            index_options.decode_memory_bytes = options->decode_memory_mib << 20;
            index_options.decode.apply_exif_orientation = !options->no_exif;
            index_options.decode.max_pixels = options->max_pixels;
            if (translator) {
              index_options.translator_id = translator->id();
              index_options.translate = [translator](const std::vector<std::string>& texts) {
                spdlog::info("translating {} caption{} with {}", texts.size(),
                             texts.size() == 1 ? "" : "s", translator->name());
                return translator->translate(texts);
              };
            }
            Progress progress("indexing", !global.quiet);
            index_options.on_progress = [&](const IndexProgress& p) {
              progress.update(p.done, p.total, p.embedded);
            };
            index_options.on_failure = [&](const std::string&, const std::string& reason) {
              progress.finish();
              spdlog::warn("skipped {}", reason);
            };
            const IndexSummary summary = index_folder(*encoder, store, options->dir, index_options);
            progress.finish();
            log_timing(summary);
            for (const auto& warning : summary.warnings) spdlog::warn("{}", warning);
            const auto ann = apply_ann_policy(store, summary.model_id, options->ann);
            // Pruning comes after indexing, so a re-exported bundle's new vectors exist first.
            std::optional<PruneReport> pruned;
            if (options->prune) pruned = prune(global);
            if (options->json) {
              nlohmann::json j = summary_json(summary);
              j["dtype"] = global.dtype;
              j["ann_built"] = ann_json(ann);
              if (pruned) j["prune"] = prune_json(*pruned);
              std::cout << json_text(j) << "\n";
            } else {
              std::printf(
                  "%s with %s: %lld found, %lld indexed, %lld reused, %lld unchanged, "
                  "%lld removed, %lld failed (%.1f s)\n",
                  summary.root.c_str(), encoder->manifest().name.c_str(),
                  static_cast<long long>(summary.found), static_cast<long long>(summary.indexed),
                  static_cast<long long>(summary.reused), static_cast<long long>(summary.unchanged),
                  static_cast<long long>(summary.removed), static_cast<long long>(summary.failed),
                  summary.seconds);
              if (translator) {
                std::printf("translated %lld caption%s with %s (%lld from the cache)\n",
                            static_cast<long long>(summary.translated),
                            summary.translated == 1 ? "" : "s", translator->name().c_str(),
                            static_cast<long long>(summary.translations_cached));
              }
              if (ann) {
                std::printf("approximate-search index: %lld entries in %lld lists\n",
                            static_cast<long long>(ann->entries),
                            static_cast<long long>(ann->lists));
              }
              for (const auto& f : summary.failures) {
                std::printf("failed: %s\n", f.reason.c_str());
              }
              if (pruned) print_prune(*pruned);
            }
            return summary.failed > 0 ? kExitPartial : kExitOk;
          }};
}

}  // namespace mmsearch::cli
