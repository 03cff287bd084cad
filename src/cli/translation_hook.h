// `--translate LANG` / `--translator NAME` for `mmsearch index` and `mmsearch query` (issue 6):
// the options, and the library's translator opened with errors that name these flags.
#pragma once

#include <memory>
#include <string>

#include "cli.h"
#include "mmsearch/translation.h"

namespace mmsearch::cli {

// Registers --translate and --translator on `app`; `what` names the texts translated.
void add_translation_options(CLI::App* app, TranslationRequest& request, const std::string& what);

// The translator the request names, located on the --models search path (its model is loaded
// only on the first cache miss). Errors are the library's, prefixed with the flags given and
// with a hint on what to change.
std::unique_ptr<LazyTranslator> open_translator(const GlobalOptions& global,
                                                const TranslationRequest& request);

}  // namespace mmsearch::cli
