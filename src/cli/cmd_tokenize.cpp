// `mmsearch tokenize`: shows how a model reads a text (normalised caption, WordPiece tokens,
// ids and mask), one JSON line per text.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/text.h"

namespace mmsearch::cli {

Command register_tokenize(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("tokenize", "Show how a model normalises and tokenises text");
  app->footer(
      "Examples:\n"
      "  mmsearch tokenize --model blip-base \"Lasagne al ragù\"\n"
      "  mmsearch tokenize --model blip2-vitL --max-tokens 0 --raw \"[CLS] x\"\n"
      "  mmsearch tokenize -- \"-5 degrees\"\n"
      "  mmsearch tokenize --from-file captions.txt");
  struct Options {
    std::string model;
    std::vector<std::string> texts;
    int max_tokens = -1;
    bool raw = false;
    std::string from_file;
  };
  auto options = std::make_shared<Options>();
  app->add_option("--model,-m", options->model, "Model bundle (default: the default model)");
  app->add_option("--max-tokens", options->max_tokens,
                  "Truncate to this many ids incl. [CLS]/[SEP]; 0 = none (default: the "
                  "model's query limit)");
  app->add_flag("--raw", options->raw, "Skip caption normalisation (pre_caption)");
  app->add_option("texts", options->texts, "Texts to tokenise (after -- when one starts with -)");
  app->add_option("--from-file", options->from_file,
                  "Also tokenise every line of this file ('-': standard input)");

  return {app, [&global, options]() {
            append_texts_from_file(options->from_file, options->texts);
            if (options->texts.empty()) {
              throw Error(ErrorKind::kUsage, options->from_file.empty()
                                                 ? "give at least one text, or --from-file FILE"
                                                 : options->from_file + " holds no text");
            }
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
              std::cout << json_text(line, -1) << "\n";
            }
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
