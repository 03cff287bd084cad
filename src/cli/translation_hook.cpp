#include "translation_hook.h"

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"

namespace mmsearch::cli {

void add_translation_options(CLI::App* app, TranslationRequest& request, const std::string& what) {
  app->add_option("--translate", request.source_lang,
                  "Translate " + what +
                      " from LANG (e.g. it) to English with the offline bundle opus-mt-LANG-en "
                      "before embedding");
  app->add_option("--translator", request.translator,
                  "Translation bundle name or folder (default: opus-mt-LANG-en)");
}

std::unique_ptr<LazyTranslator> open_translator(const GlobalOptions& global,
                                                const TranslationRequest& request) {
  try {
    return std::make_unique<LazyTranslator>(request, model_search_path(global.models_dir),
                                            !global.no_verify);
  } catch (const Error& e) {
    std::string flags;
    if (!request.source_lang.empty()) flags = "--translate " + request.source_lang;
    if (!request.translator.empty()) {
      flags += (flags.empty() ? "" : " ") + std::string("--translator ") + request.translator;
    }
    std::string hint;
    if (request.source_lang == "en") {
      hint = "; leave --translate out";
    } else if (e.kind() == ErrorKind::kModel && request.translator.empty()) {
      hint = " (or name a bundle with --translator)";
    }
    throw Error(e.kind(), flags + ": " + e.what() + hint);
  }
}

}  // namespace mmsearch::cli
