// `mmsearch query`: text, image and combined searches over an indexed scope.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/query.h"
#include "mmsearch/render.h"
#include "mmsearch/text.h"
#include "mmsearch/thumbnail.h"
#include "table_cell.h"
#include "terminal_preview.h"
#include "translation_hook.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

// A result's caption as shown: "English (original)" when it was translated.
std::string shown_caption(const QueryHit& hit) {
  if (hit.caption_en.empty() || hit.caption_en == hit.caption) return hit.caption;
  return hit.caption_en + " (" + hit.caption + ")";
}

// Translates the text terms in place (cache first; see translate_cached). Returns each term's
// original text, "" for terms left as they were.
std::vector<std::string> translate_terms(std::vector<QueryTerm>& terms, LazyTranslator& translator,
                                         const IndexStore& store) {
  std::vector<std::string> texts;
  for (const auto& term : terms) {
    if (term.kind == QueryTerm::Kind::kText) texts.push_back(term.value);
  }
  const CachedTranslations translations = translate_cached(store, translator, texts);
  std::vector<std::string> originals(terms.size());
  for (std::size_t i = 0; i < terms.size(); ++i) {
    if (terms[i].kind != QueryTerm::Kind::kText) continue;
    const auto it = translations.english.find(terms[i].value);
    if (it == translations.english.end()) continue;
    const bool cached = !translations.from_model.count(it->first);
    spdlog::info("translated query{}: {} → {}", cached ? " (cached)" : "", terms[i].value,
                 it->second);
    if (it->second.empty()) continue;  // nothing came out: search the original
    originals[i] = terms[i].value;
    terms[i].value = it->second;
  }
  return originals;
}

void write_montage(const std::string& out, const std::vector<QueryTerm>& terms,
                   const std::vector<std::string>& originals, const QueryResult& result,
                   const std::string& model, Against against, const DecodeOptions& decode) {
  std::vector<MontageQueryTerm> query;
  for (const auto& term : terms) {
    MontageQueryTerm q;
    q.weight = term.weight;
    if (term.kind == QueryTerm::Kind::kImage) {
      q.image = decode_image(term.value, decode);
    } else {
      q.text = term.value;
      const std::string& original = originals[&term - terms.data()];
      if (!original.empty()) q.text += " (" + original + ")";
    }
    query.push_back(std::move(q));
  }
  std::vector<MontageResult> results;
  for (const auto& hit : result.hits) {
    MontageResult r;
    try {
      r.image = decode_image(hit.path, decode);
    } catch (const Error& e) {
      spdlog::warn("montage: {}", e.what());
    }
    r.label = fs::path(hit.path).filename().string();
    r.caption = shown_caption(hit);
    r.category = hit.category;
    r.score = hit.score;
    results.push_back(std::move(r));
  }
  MontageOptions options;
  options.title = model + "  -  query -> " + to_string(against);
  write_montage_png(query, results, out, options);
  spdlog::info("montage written to {}", out);
}

}  // namespace

Command register_query(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("query", "Search indexed photos by text, image or both");
  app->footer(
      "Terms may carry a weight: \"2:pizza\", \"-cheese\" or \"-0.5:cheese\" (subtracts).\n"
      "Examples:\n"
      "  mmsearch query --text \"lasagne with ragù\"\n"
      "  mmsearch query --image pizza.jpg -k 10 --in ~/Pictures/dishes\n"
      "  mmsearch query --text pizza --text -mushrooms --json\n"
      "  mmsearch query --image a.jpg --text \"but with basil\" --text-weight 0.3\n"
      "  mmsearch query --image a.jpg --against multimodal --montage result.png\n"
      "  mmsearch query --text \"a dessert\" --rerank 20 --paths | xargs feh\n"
      "  mmsearch query --text \"lasagne al ragù\" --translate it\n"
      "  mmsearch query --text \"a pizza\" --preview     # thumbnails in kitty, iTerm2 or sixel");
  struct Options {
    std::vector<std::string> texts;
    std::vector<std::string> images;
    float text_weight = 0.5f;
    std::int64_t k = 5;
    std::string in;
    std::string model;
    float threshold = -std::numeric_limits<float>::infinity();
    std::string against = "image";
    int rerank = 0;
    bool json = false;
    bool paths = false;
    bool paths0 = false;
    std::string montage;
    bool montage_given = false;  // `--montage ''` is an error, not "no montage"
    bool no_exif = false;
    bool exact = false;
    std::int64_t max_rescored = 0;
    std::int64_t nprobe = 0;
    std::string preview;  // "" = no preview; --preview alone is "auto"
    TranslationRequest translation;
  };
  auto options = std::make_shared<Options>();
  app->add_option("--text,-t", options->texts, "Text term (repeatable, optional W: weight)");
  app->add_option("--image,-i", options->images, "Image term (repeatable, optional W: weight)");
  app->add_option("--text-weight", options->text_weight,
                  "With both text and image terms: share of the text side (0..1)")
      ->check(CLI::Range(0.0f, 1.0f));
  app->add_option("-k,--top", options->k, "Number of results")->check(CLI::Range(1, 100000));
  app->add_option("--in", options->in, "Search under this folder (default: the current one)");
  app->add_option("--model,-m", options->model,
                  "Model (default: the one the folder was indexed with)");
  app->add_option("--threshold", options->threshold, "Drop results scoring below this");
  app->add_option("--against", options->against,
                  "Stored vectors to search: image, text or "
                  "multimodal")
      ->check(CLI::IsMember({"image", "text", "multimodal"}));
  app->add_option("--rerank", options->rerank,
                  "Re-score the top N with the ITM head (text terms, --against image)")
      ->check(CLI::Range(0, 1000));
  app->add_flag("--json", options->json, "Machine-readable results");
  app->add_flag("--paths", options->paths, "Only the result paths, one per line");
  app->add_flag("--paths0", options->paths0,
                "Only the result paths, each ended by a NUL byte (for xargs -0; safe for any "
                "file name)");
  app->add_option("--montage", options->montage, "Also draw the query and results to this PNG")
      ->each([options](const std::string&) { options->montage_given = true; });
  app->add_flag("--no-exif-rotate", options->no_exif, "Ignore EXIF orientation (strict LAVIS)");
  app->add_flag("--exact", options->exact,
                "Exact search: no approximate-search index, and re-score until the top k is "
                "proven exact (BLIP-2: however many candidates it takes)");
  app->add_option("--nprobe", options->nprobe,
                  "Lists of the approximate-search index to probe (default: the index's; more "
                  "is slower and closer to exact)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  app->add_option("--max-rescored", options->max_rescored,
                  "BLIP-2: most candidates re-scored with all query vectors (default 2048)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  auto* preview = app->add_option("--preview", options->preview,
                                  "Thumbnails inline in the terminal: auto (default), kitty, "
                                  "iterm, sixel (needs img2sixel) or none")
                      ->expected(0, 1);
  add_translation_options(app, options->translation, "the text terms");

  return {
      app, [&global, options, preview]() {
        if (preview->count() > 0 && options->preview.empty()) options->preview = "auto";
        if (!options->preview.empty() && (options->json || options->paths || options->paths0)) {
          throw Error(ErrorKind::kUsage,
                      "--preview draws the table; it excludes --json and --paths");
        }
        if (options->texts.empty() && options->images.empty()) {
          throw Error(ErrorKind::kUsage, "give at least one --text or --image");
        }
        if (!std::isfinite(options->threshold) &&
            options->threshold != -std::numeric_limits<float>::infinity()) {
          throw Error(ErrorKind::kUsage, "--threshold: must be a finite number");
        }
        if (options->montage_given && options->montage.empty()) {
          throw Error(ErrorKind::kUsage, "--montage: needs a file name for the PNG");
        }
        if (options->json + options->paths + options->paths0 > 1) {
          throw Error(ErrorKind::kUsage, "--json, --paths and --paths0 exclude each other");
        }
        PreviewProtocol protocol = PreviewProtocol::kNone;
        if (!options->preview.empty()) {
          std::string why;
          protocol = choose_preview(options->preview, ::isatty(STDOUT_FILENO) == 1, why);
          if (protocol == PreviewProtocol::kNone && !why.empty()) {
            spdlog::info("--preview: {}; printing the table only", why);
          }
        }
        const bool combined = !options->texts.empty() && !options->images.empty();
        std::vector<QueryTerm> terms;
        for (const auto& text : options->texts) {
          std::size_t bad = 0;
          if (!is_valid_utf8(text, &bad)) {
            throw Error(ErrorKind::kUsage, "--text: not valid UTF-8 (ill-formed byte at offset " +
                                               std::to_string(bad) + "); pass UTF-8 text");
          }
          const ParsedTerm parsed = parse_weighted_term(text);
          if (parsed.text.find_first_not_of(" \t\r\n\v\f") == std::string::npos) {
            throw Error(ErrorKind::kUsage,
                        "--text: empty or blank; give words to search for, or leave --text out");
          }
          terms.push_back({QueryTerm::Kind::kText, parsed.text,
                           parsed.weight * (combined ? options->text_weight : 1.0f), nullptr});
        }
        for (const auto& image : options->images) {
          // A weight prefix is only taken when the whole argument is not an existing file.
          ParsedTerm parsed{image, 1.0f};
          std::error_code ec;
          if (!fs::exists(image, ec)) parsed = parse_weighted_term(image);
          if (!fs::exists(parsed.text, ec)) {
            throw Error(ErrorKind::kInput, parsed.text + ": query image not found");
          }
          terms.push_back({QueryTerm::Kind::kImage, parsed.text,
                           parsed.weight * (combined ? 1.0f - options->text_weight : 1.0f),
                           nullptr});
        }

        // Located up front: a missing translation bundle is a model error (exit 4) at once.
        std::unique_ptr<LazyTranslator> translator;
        if (options->translation.enabled()) {
          translator = open_translator(global, options->translation);
        }

        QueryOptions query;
        query.against = against_from_string(options->against);
        query.k = options->k;
        query.threshold = options->threshold;
        query.rerank = options->rerank;
        query.decode.apply_exif_orientation = !options->no_exif;
        query.exact = options->exact;
        query.max_rescored = options->max_rescored;
        query.nprobe = options->nprobe;
        const auto started = std::chrono::steady_clock::now();

        // One read-only store for the whole query: model resolution, translations, vectors.
        const IndexStore store = open_index_read_only();
        query.scope = scope_folder(options->in, store, "--in");
        auto encoder =
            open_encoder(global, bundle_for_scope(global, store, query.scope, options->model));
        std::vector<std::string> originals(terms.size());
        if (translator) originals = translate_terms(terms, *translator, store);
        const double open_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                .count();
        const QueryResult result = run_query(*encoder, store, terms, query);
        const QueryPhases& phases = result.phases;
        spdlog::debug(
            "query phases: open {:.1f} ms, load {:.1f} ms, tokenise {:.2f} ms, forward {:.1f} ms, "
            "search {:.1f} ms ({} items, {} re-scored{}), rerank {:.1f} ms",
            open_ms, phases.load_ms, phases.tokenize_ms, phases.forward_ms, phases.search_ms,
            result.searched, result.rescored, result.proven_exact ? "" : ", not proven exact",
            phases.rerank_ms);
        spdlog::debug(
            "search phases: select {:.1f} ms, index {:.1f} ms, scan {:.1f} ms, re-score {:.1f} ms, "
            "owners {:.1f} ms",
            phases.select_ms, phases.ann_ms, phases.scan_ms, phases.rescore_ms, phases.owners_ms);
        if (result.approximate) {
          spdlog::info("approximate search ({} lists probed); --exact scans every item",
                       result.nprobe);
        } else if (!result.proven_exact) {
          spdlog::info(
              "the first stage could not prove these top {} exact within {} "
              "re-scored items; --exact re-scores until it can",
              query.k, result.rescored);
        }
        const auto print_started = std::chrono::steady_clock::now();
        struct PrintTimer {
          std::chrono::steady_clock::time_point start;
          ~PrintTimer() {
            spdlog::debug(
                "query phases: print {:.2f} ms",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count());
          }
        } print_timer{print_started};

        // The montage comes after the results are printed, so that a montage that cannot be
        // written (exit 3) still leaves the answer on stdout.
        auto finish = [&]() -> int {
          if (!options->montage.empty()) {
            try {
              write_montage(options->montage, terms, originals, result, encoder->manifest().name,
                            query.against, query.decode);
            } catch (const Error& e) {
              throw Error(e.kind(), std::string("--montage: ") + e.what());
            }
          }
          return kExitOk;
        };
        if (options->paths || options->paths0) {
          // Bytes as stored; --paths0 ends each with NUL, for names holding a newline.
          for (const auto& hit : result.hits) {
            std::cout << hit.path << (options->paths0 ? '\0' : '\n');
          }
          std::cout.flush();
          return finish();
        }
        if (options->json) {
          nlohmann::json j;
          j["model"] = encoder->manifest().name;
          j["model_id"] = result.model_id;
          put_path(j, "scope", query.scope.string());
          j["against"] = to_string(query.against);
          j["searched"] = result.searched;
          j["rescored"] = result.rescored;
          j["proven_exact"] = result.proven_exact;
          j["approximate"] = result.approximate;
          if (result.approximate) j["nprobe"] = result.nprobe;
          j["phases_ms"] = {{"open", open_ms},
                            {"load", phases.load_ms},
                            {"tokenize", phases.tokenize_ms},
                            {"forward", phases.forward_ms},
                            {"search", phases.search_ms},
                            {"rerank", phases.rerank_ms}};
          j["search_phases_ms"] = {{"select", phases.select_ms},
                                   {"ann", phases.ann_ms},
                                   {"scan", phases.scan_ms},
                                   {"rescore", phases.rescore_ms},
                                   {"owners", phases.owners_ms}};
          if (translator) j["translator"] = translator->id();
          j["terms"] = nlohmann::json::array();
          for (std::size_t i = 0; i < terms.size(); ++i) {
            const QueryTerm& term = terms[i];
            nlohmann::json t = {{"kind", term.kind == QueryTerm::Kind::kText ? "text" : "image"},
                                {"value", term.value},
                                {"weight", term.weight}};
            // A translated term: `value` is the English text searched, `original` the input.
            if (!originals[i].empty()) t["original"] = originals[i];
            j["terms"].push_back(t);
          }
          j["results"] = nlohmann::json::array();
          for (const auto& hit : result.hits) {
            nlohmann::json h = {{"rank", hit.rank},
                                {"score", hit.score},
                                {"caption", hit.caption},
                                {"category", hit.category}};
            put_path(h, "path", hit.path);
            if (!hit.caption_en.empty()) h["caption_en"] = hit.caption_en;
            if (hit.itm_score) h["itm"] = *hit.itm_score;
            if (hit.itc_score) h["itc"] = *hit.itc_score;
            j["results"].push_back(h);
          }
          std::cout << json_text(j) << "\n" << std::flush;
          return finish();
        }
        if (result.hits.empty()) {
          std::printf("No results (searched %lld items).\n",
                      static_cast<long long>(result.searched));
          return finish();
        }
        std::printf("%-4s %-7s %s %s %s\n", "RANK", "SCORE", table_cell("PATH", 40).c_str(),
                    table_cell("CATEGORY", 12).c_str(), "CAPTION");
        for (const auto& hit : result.hits) {
          if (protocol != PreviewProtocol::kNone) {
            try {
              std::fflush(stdout);
              print_preview(protocol, load_thumbnail(hit.path, 192, query.decode), 6, stdout);
            } catch (const Error& e) {
              spdlog::warn("--preview: {}", e.what());
            }
          }
          std::printf("%-4d %-7.4f %s %s %s\n", hit.rank, hit.score,
                      table_cell(display_path(hit.path), 40, true, Cut::kStart).c_str(),
                      table_cell(hit.category, 12).c_str(),
                      table_cell(shown_caption(hit), 70, /*pad=*/false).c_str());
        }
        return finish();
      }};
}

}  // namespace mmsearch::cli
