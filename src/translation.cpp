#include "mmsearch/translation.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/translate.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

// Long enough for a reader to finish, short enough that a query never waits on an indexer.
constexpr int kCacheWriteBusyTimeoutMs = 200;

bool is_language_code(const std::string& lang) {
  return lang.size() >= 2 && lang.size() <= 12 &&
         std::all_of(lang.begin(), lang.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

// The bundle to locate: the one named, else opus-mt-<lang>-en.
std::string bundle_name(const TranslationRequest& request) {
  const std::string& lang = request.source_lang;
  if (!lang.empty()) {
    if (!is_language_code(lang)) {
      throw Error(ErrorKind::kUsage, "'" + lang +
                                         "' is not a language code; give the source language "
                                         "as OPUS-MT names it, e.g. 'it'");
    }
    if (lang == "en") {
      throw Error(ErrorKind::kUsage,
                  "the source language is 'en': English texts need no translation");
    }
  }
  if (!request.translator.empty()) return request.translator;
  if (!lang.empty()) return "opus-mt-" + lang + "-en";
  throw Error(ErrorKind::kUsage, "translation needs a source language or a translation model");
}

void write_back(const IndexStore& store, const std::string& translator_id,
                const std::vector<std::pair<std::string, std::string>>& pairs) {
  try {
    IndexStore writer(store.path(), IndexStore::Mode::kReadWrite, kCacheWriteBusyTimeoutMs);
    writer.put_translations(translator_id, pairs);
  } catch (const Error& e) {
    spdlog::debug("translations not cached: {}", e.what());
  }
}

}  // namespace

LazyTranslator::LazyTranslator(const TranslationRequest& request,
                               const std::vector<fs::path>& search_path, bool verify_hashes)
    : verify_hashes_(verify_hashes) {
  const std::string wanted = bundle_name(request);
  try {
    dir_ = Translator::locate(wanted, search_path);
  } catch (const Error& e) {
    if (request.translator.empty()) {
      throw Error(ErrorKind::kModel,
                  "no translation model for language '" + request.source_lang + "': " + e.what());
    }
    throw;
  }
  const ManifestFile file = read_manifest_file(dir_);  // read once: settings and file hashes
  const TranslatorManifest manifest = read_translator_manifest(file);
  if (!request.source_lang.empty() && !manifest.source_lang.empty() &&
      manifest.source_lang != request.source_lang) {
    throw Error(ErrorKind::kUsage, "translation model " + manifest.name + " (" + dir_.string() +
                                       ") translates from '" + manifest.source_lang +
                                       "', not from '" + request.source_lang + "'");
  }
  name_ = manifest.name;
  const auto listed = file.files.find(manifest.decoder_module);
  const std::string digest = listed != file.files.end() ? listed->second.substr(0, 16)
                                                        : hash_file(dir_ / manifest.decoder_module);
  id_ = manifest.name + "@" + digest;
  spdlog::debug("translator {} from {}", id_, dir_.string());
}

LazyTranslator::~LazyTranslator() = default;
LazyTranslator::LazyTranslator(LazyTranslator&&) noexcept = default;
LazyTranslator& LazyTranslator::operator=(LazyTranslator&&) noexcept = default;

std::vector<std::string> LazyTranslator::translate(const std::vector<std::string>& texts) {
  if (texts.empty()) return {};
  if (!model_) {
    spdlog::info("loading translator {} for {} text{}", name_, texts.size(),
                 texts.size() == 1 ? "" : "s");
    model_ = std::make_unique<Translator>(dir_, verify_hashes_);
  }
  spdlog::debug("translating {} texts with {}", texts.size(), id_);
  std::vector<std::string> english;
  english.reserve(texts.size());
  for (const auto& result : model_->translate_detailed(texts)) {
    if (!result.warning.empty()) {
      spdlog::warn("translating \"{}\": {}", result.source.substr(0, 60), result.warning);
    }
    english.push_back(result.text);
  }
  return english;
}

CachedTranslations translate_cached(const IndexStore& store, const std::string& translator_id,
                                    const TranslateFunction& translate,
                                    const std::vector<std::string>& texts) {
  if (translator_id.empty()) {
    throw Error(ErrorKind::kUsage, "the translation cache needs a translator id");
  }
  std::vector<std::string> wanted;
  std::unordered_set<std::string> seen;
  for (const auto& text : texts) {
    if (!is_blank_text(text) && seen.insert(text).second) wanted.push_back(text);
  }
  CachedTranslations result;
  result.english = store.find_translations(translator_id, wanted);
  std::vector<std::string> missing;
  for (const auto& text : wanted) {
    if (!result.english.count(text)) missing.push_back(text);
  }
  if (missing.empty()) return result;

  const std::vector<std::string> translated = translate(missing);
  if (translated.size() != missing.size()) {
    throw Error(ErrorKind::kInternal, "the translator returned " +
                                          std::to_string(translated.size()) + " texts for " +
                                          std::to_string(missing.size()));
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  for (std::size_t i = 0; i < missing.size(); ++i) {
    result.english[missing[i]] = translated[i];
    result.from_model.insert(missing[i]);
    pairs.emplace_back(missing[i], translated[i]);
  }
  write_back(store, translator_id, pairs);
  return result;
}

CachedTranslations translate_cached(const IndexStore& store, LazyTranslator& translator,
                                    const std::vector<std::string>& texts) {
  return translate_cached(
      store, translator.id(),
      [&translator](const std::vector<std::string>& misses) {
        return translator.translate(misses);
      },
      texts);
}

}  // namespace mmsearch
