// Cache-first translation of captions and query texts into English (issue 6).
//
// Every text is looked up first in the store's translation cache, keyed by the translator's
// identity and the source text; only the misses go to the model, all in one call, and are
// written back. The translation bundle is located and identified up front, so a missing bundle
// fails before any work, but its model is loaded only on the first cache miss: a rerun whose
// texts are all cached needs neither the weights nor their load time.
//
// Usage:
//   mmsearch::LazyTranslator translator({"it", ""}, mmsearch::model_search_path(""));
//   auto english = mmsearch::translate_cached(store, translator, {"lasagne al ragù"});
//   english.english.at("lasagne al ragù");  // the English text
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mmsearch/index.h"

namespace mmsearch {

class Translator;

// Which translation model to use: the bundle opus-mt-<source_lang>-en, or the bundle
// `translator` names (a name on the model search path, or a folder). Either one enables
// translation; with both, the bundle must translate from source_lang.
struct TranslationRequest {
  std::string source_lang;  // as OPUS-MT names languages, e.g. "it"
  std::string translator;
  bool enabled() const { return !source_lang.empty() || !translator.empty(); }
};

// One English string per input, in the same order.
using TranslateFunction = std::function<std::vector<std::string>(const std::vector<std::string>&)>;

// A translation bundle found and identified, whose model is loaded on the first translate().
class LazyTranslator {
 public:
  // Locates the bundle on `search_path` and reads its manifest; loads no model. Throws
  // Error(kUsage) when source_lang is not a language code, is English, or is not the bundle's
  // source language; Error(kModel) when no bundle is found (saying where it looked) or its
  // manifest is invalid.
  LazyTranslator(const TranslationRequest& request,
                 const std::vector<std::filesystem::path>& search_path, bool verify_hashes = true);
  ~LazyTranslator();
  LazyTranslator(LazyTranslator&&) noexcept;
  LazyTranslator& operator=(LazyTranslator&&) noexcept;

  // The cache key: "<bundle name>@<first 16 hex digits of the decoder's sha256>" (the manifest's
  // files entry; the file's XXH64 when the manifest lists none), so other weights never reuse
  // an entry.
  const std::string& id() const { return id_; }
  const std::string& name() const { return name_; }
  const std::filesystem::path& dir() const { return dir_; }
  bool loaded() const { return model_ != nullptr; }

  // Loads the model on first use (Error(kModel) when it can't be) and translates; inputs cut
  // at the model's length limit are logged as warnings.
  std::vector<std::string> translate(const std::vector<std::string>& texts);

 private:
  std::filesystem::path dir_;
  std::string name_;
  std::string id_;
  bool verify_hashes_ = true;
  std::unique_ptr<Translator> model_;
};

struct CachedTranslations {
  std::unordered_map<std::string, std::string> english;  // distinct source text -> English
  std::unordered_set<std::string> from_model;  // the texts translated by this call, not cached
  std::int64_t translated() const { return static_cast<std::int64_t>(from_model.size()); }
  std::int64_t cached() const {
    return static_cast<std::int64_t>(english.size() - from_model.size());
  }
};

// English for the distinct non-blank texts (blank ones have no translation and are left out):
// the cached ones from `store`'s translation cache, the others from one call of `translate`,
// which are then written back. Writing back is best effort, through a connection of its own
// with a short busy timeout, so that a read-only store or one busy with another writer never
// fails the caller; those texts are translated again next time. Throws what `translate` throws
// (nothing is cached then), Error(kUsage) for an empty translator id, and Error(kInternal) when
// `translate` returns another number of texts than it was given.
CachedTranslations translate_cached(const IndexStore& store, const std::string& translator_id,
                                    const TranslateFunction& translate,
                                    const std::vector<std::string>& texts);
CachedTranslations translate_cached(const IndexStore& store, LazyTranslator& translator,
                                    const std::vector<std::string>& texts);

}  // namespace mmsearch
