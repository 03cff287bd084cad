// `mmsearch tokenize`: shows how a model reads a text (normalised caption, WordPiece tokens,
// ids and mask), one JSON line per text.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "mmsearch/text.h"

namespace mmsearch::cli {

Command register_tokenize(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("tokenize", "Show how a model normalises and tokenises text");
  app->footer(
      "Examples:\n"
      "  mmsearch tokenize --model blip-base \"Lasagne al ragù\"\n"
      "  mmsearch tokenize --model blip2-vitL --max-tokens 0 --raw \"[CLS] x\"");
  struct Options {
    std::string model;
    std::vector<std::string> texts;
    int max_tokens = -1;
    bool raw = false;
  };
  auto options = std::make_shared<Options>();
  app->add_option("--model,-m", options->model, "Model bundle (default: the default model)");
  app->add_option("--max-tokens", options->max_tokens,
                  "Truncate to this many ids incl. [CLS]/[SEP]; 0 = none (default: the "
                  "model's query limit)");
  app->add_flag("--raw", options->raw, "Skip caption normalisation (pre_caption)");
  app->add_option("texts", options->texts, "Texts to tokenise")->required();

  return {app, [&global, options]() {
            // Only the manifest and vocab are needed: no TorchScript module is loaded.
            Encoder encoder(open_bundle(global, options->model));
            const Manifest& manifest = encoder.manifest();
            const int max_tokens =
                options->max_tokens >= 0 ? options->max_tokens : manifest.text.max_tokens;
            const WordPieceTokenizer& tokenizer = encoder.tokenizer();
            for (const auto& text : options->texts) {
              const std::string normalised =
                  options->raw || manifest.text.normalise != "lavis-pre-caption"
                      ? text
                      : pre_caption(text, manifest.text.max_words);
              const Encoding encoding = tokenizer.encode(normalised, max_tokens);
              nlohmann::json line;
              line["text"] = text;
              line["normalised"] = normalised;
              line["tokens"] = encoding.tokens;
              line["ids"] = encoding.ids;
              line["mask"] = encoding.mask;
              std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                        << "\n";
            }
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
