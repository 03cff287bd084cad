// `--translate LANG` / `--translator NAME` for `mmsearch index` and `mmsearch query` (issue 6):
// which translation bundle to use, its cache id, and a translator that loads the model only
// when a text is missing from the cache.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/translate.h"

namespace mmsearch::cli {

// What the user asked for: --translate LANG and/or --translator NAME (either enables it).
struct TranslationRequest {
  std::string lang;
  std::string translator;
  bool enabled() const { return !lang.empty() || !translator.empty(); }
};

inline void add_translation_options(CLI::App* app, TranslationRequest& request,
                                    const std::string& what) {
  app->add_option("--translate", request.lang,
                  "Translate " + what +
                      " from LANG (e.g. it) to English with the offline bundle opus-mt-LANG-en "
                      "before embedding");
  app->add_option("--translator", request.translator,
                  "Translation bundle name or folder (default: opus-mt-LANG-en)");
}

// The located bundle and the id its cache entries are stored under:
// "<bundle name>@<first 16 hex digits of decoder.pt's sha256>" (the manifest's files entry;
// the file's XXH64 when the manifest has none). The model is not loaded here.
class LazyTranslator {
 public:
  LazyTranslator(const GlobalOptions& global, const TranslationRequest& request) {
    std::string name = request.translator;
    if (!request.lang.empty()) {
      const std::string& lang = request.lang;
      const bool code_like = lang.size() >= 2 && lang.size() <= 12 &&
                             std::all_of(lang.begin(), lang.end(), [](unsigned char c) {
                               return std::isalnum(c) || c == '_';
                             });
      if (!code_like) {
        throw Error(ErrorKind::kUsage, "--translate '" + lang +
                                           "' is not a language code; give the source "
                                           "language as OPUS-MT names it, e.g. --translate it");
      }
      if (lang == "en") {
        throw Error(ErrorKind::kUsage,
                    "--translate en: English texts need no translation; leave --translate out");
      }
      if (name.empty()) name = "opus-mt-" + lang + "-en";
    }
    try {
      dir_ = Translator::locate(name, model_search_path(global.models_dir));
    } catch (const Error& e) {
      if (request.translator.empty()) {
        throw Error(ErrorKind::kModel,
                    "--translate " + request.lang + ": no translation model for language '" +
                        request.lang + "': " + e.what() + " (or name a bundle with --translator)");
      }
      throw;
    }
    const TranslatorManifest manifest = read_translator_manifest(dir_);
    if (!request.lang.empty() && !manifest.source_lang.empty() &&
        manifest.source_lang != request.lang) {
      throw Error(ErrorKind::kUsage, "--translator " + name + " translates from '" +
                                         manifest.source_lang + "', not from '" + request.lang +
                                         "'");
    }
    name_ = manifest.name;
    verify_ = !global.no_verify;
    std::string digest;
    try {
      nlohmann::json j;
      std::ifstream in(dir_ / "mmsearch.json", std::ios::binary);
      in >> j;
      if (j.contains("files") && j["files"].contains(manifest.decoder_module)) {
        digest = j["files"][manifest.decoder_module].get<std::string>().substr(0, 16);
      }
    } catch (const std::exception&) {
    }
    if (digest.empty()) digest = hash_file(dir_ / manifest.decoder_module);
    id_ = manifest.name + "@" + digest;
    spdlog::debug("translator {} from {}", id_, dir_.string());
  }

  const std::string& id() const { return id_; }
  const std::string& name() const { return name_; }
  bool loaded() const { return translator_ != nullptr; }

  // Translates (loading the model on first use); logs truncation warnings.
  std::vector<std::string> operator()(const std::vector<std::string>& texts) {
    if (texts.empty()) return {};
    if (!translator_) {
      spdlog::info("loading translator {} for {} text{}", name_, texts.size(),
                   texts.size() == 1 ? "" : "s");
      translator_ = std::make_unique<Translator>(dir_, verify_);
    }
    spdlog::debug("translating {} texts with {}", texts.size(), id_);
    std::vector<std::string> out;
    out.reserve(texts.size());
    for (const auto& r : translator_->translate_detailed(texts)) {
      if (!r.warning.empty()) {
        spdlog::warn("translating \"{}\": {}", r.source.substr(0, 60), r.warning);
      }
      out.push_back(r.text);
    }
    return out;
  }

 private:
  std::filesystem::path dir_;
  std::string name_;
  std::string id_;
  bool verify_ = true;
  std::unique_ptr<Translator> translator_;
};

}  // namespace mmsearch::cli
