// `mmsearch translate`: offline translation with a MarianMT (OPUS-MT) bundle (issue 6).
#include <spdlog/spdlog.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/translate.h"

namespace mmsearch::cli {

Command register_translate(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("translate", "Translate texts offline (MarianMT / OPUS-MT)");
  app->footer(
      "Examples:\n"
      "  mmsearch translate --model opus-mt-it-en \"Lasagne al ragù\" \"Un caffè, per favore\"\n"
      "  mmsearch translate --model opus-mt-it-en --beams 1 --json \"Ciao!\"\n"
      "  mmsearch translate --from-file didascalie.txt > captions.txt\n"
      "Export the model first: scripts/export_models.py export opus-mt-it-en");
  struct Options {
    std::string model = "opus-mt-it-en";
    std::vector<std::string> texts;
    bool json = false;
    int beams = 0;
    int max_length = 0;
    double length_penalty = -1e30;
    int batch_size = 16;
    std::string from_file;
  };
  auto options = std::make_shared<Options>();
  app->add_option("--model,-m", options->model,
                  "Translation bundle name or folder (default: opus-mt-it-en)");
  app->add_option("--beams", options->beams,
                  "Beam width; 1 = greedy (default: the model's generation setting)")
      ->check(CLI::Range(1, 64));
  app->add_option("--max-length", options->max_length,
                  "Output length cap in tokens incl. the start token (default: the model's)")
      ->check(CLI::Range(2, 100000));
  app->add_option("--length-penalty", options->length_penalty,
                  "Beam length penalty (default: the model's)");
  app->add_option("--batch-size", options->batch_size, "Texts per model call (default 16)")
      ->check(CLI::Range(1, 4096));
  app->add_flag("--json", options->json,
                "One JSON line per text: source, translation, ids, score, warning");
  app->add_option("texts", options->texts, "Texts to translate (after -- when one starts with -)");
  app->add_option("--from-file", options->from_file,
                  "Also translate every line of this file ('-': standard input)");

  return {app, [&global, options]() {
            append_texts_from_file(options->from_file, options->texts);
            if (options->texts.empty()) {
              throw Error(ErrorKind::kUsage, options->from_file.empty()
                                                 ? "give at least one text, or --from-file FILE"
                                                 : options->from_file + " holds no text");
            }
            const auto dir =
                Translator::locate(options->model, model_search_path(global.models_dir));
            Translator translator(dir, !global.no_verify);
            TranslateOptions o;
            o.num_beams = options->beams;
            o.max_length = options->max_length;
            o.length_penalty = options->length_penalty;
            o.batch_size = options->batch_size;
            const auto results = translator.translate_detailed(options->texts, o);
            for (const auto& r : results) {
              if (!r.warning.empty()) {
                spdlog::warn("{}: {}", r.source.substr(0, 60), r.warning);
              }
              if (options->json) {
                nlohmann::json line;
                line["source"] = r.source;
                line["translation"] = r.text;
                line["model"] = translator.manifest().name;
                line["source_ids"] = r.source_ids;
                line["output_ids"] = r.output_ids;
                line["score"] = r.score;
                line["truncated"] = r.truncated;
                if (!r.warning.empty()) line["warning"] = r.warning;
                std::cout << json_text(line, -1) << "\n";
              } else {
                std::cout << r.text << "\n";
              }
            }
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
