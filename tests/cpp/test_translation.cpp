// Cache-first translation (src/translation.cpp): translate_cached with a counting fake
// translator (dedup, cache hits, read-only and busy stores, errors), and LazyTranslator's
// bundle lookup, identity and lazy loading on a hand-written bundle.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/translation.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;

namespace {

fs::path fresh_dir(const std::string& name) {
  return test_support::fresh_test_dir("translation", name);
}

// Upper-cases its inputs and records every call.
struct FakeTranslator {
  std::vector<std::vector<std::string>> calls;
  TranslateFunction function() {
    return [this](const std::vector<std::string>& texts) {
      calls.push_back(texts);
      std::vector<std::string> out;
      for (std::string text : texts) {
        for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        out.push_back(text);
      }
      return out;
    };
  }
};

using Texts = std::vector<std::string>;

// A translation bundle whose manifest is valid and whose modules are not TorchScript: enough
// to be located and identified, not to be loaded.
fs::path write_fake_bundle(const fs::path& models, const std::string& name,
                           const std::string& source_lang, bool list_files) {
  const fs::path dir = models / name;
  fs::create_directories(dir);
  for (const char* file : {"source.spm", "target.spm", "vocab.json", "encoder.pt", "decoder.pt"}) {
    std::ofstream(dir / file) << "not a model: " << file;
  }
  nlohmann::json j = {
      {"format", "mmsearch-bundle"},
      {"format_version", 1},
      {"family", "marian"},
      {"name", name},
      {"translation", {{"source_lang", source_lang}, {"target_lang", "en"}}},
      {"tokenizer",
       {{"source_spm", "source.spm"},
        {"target_spm", "target.spm"},
        {"vocab", "vocab.json"},
        {"vocab_size", 8},
        {"eos_token_id", 0},
        {"unk_token_id", 1},
        {"pad_token_id", 7},
        {"model_max_length", 16}}},
      {"dims",
       {{"d_model", 8},
        {"encoder_layers", 1},
        {"decoder_layers", 1},
        {"heads", 2},
        {"head_dim", 4},
        {"max_positions", 16}}},
      {"generation",
       {{"decoder_start_token_id", 7},
        {"num_beams", 1},
        {"max_length", 16},
        {"length_penalty", 1.0}}},
  };
  // Every bundle lists its files with their sha256 (read_manifest_file() checks the form, not
  // the bytes, which verification does); one without the decoder's entry is hashed instead.
  j["files"] = nlohmann::json::object();
  if (list_files) j["files"]["decoder.pt"] = std::string(64, 'a');
  std::ofstream(dir / "mmsearch.json") << j.dump(2);
  return dir;
}

}  // namespace

TEST(TranslateCached, DeduplicatesSkipsBlanksAndHitsTheCacheTheSecondTime) {
  const fs::path dir = fresh_dir("dedup");
  IndexStore store(dir / "index.sqlite3");
  FakeTranslator fake;

  const CachedTranslations first =
      translate_cached(store, "fake@1", fake.function(), {"ciao", "pane", "ciao", "  ", ""});
  ASSERT_EQ(fake.calls.size(), 1u);
  EXPECT_EQ(fake.calls[0], (Texts{"ciao", "pane"}));
  EXPECT_EQ(first.english.size(), 2u);
  EXPECT_EQ(first.english.at("ciao"), "CIAO");
  EXPECT_EQ(first.translated(), 2);
  EXPECT_EQ(first.cached(), 0);

  const CachedTranslations second =
      translate_cached(store, "fake@1", fake.function(), {"pane", "vino", "ciao"});
  ASSERT_EQ(fake.calls.size(), 2u);
  EXPECT_EQ(fake.calls[1], (Texts{"vino"}));  // only the miss
  EXPECT_EQ(second.translated(), 1);
  EXPECT_EQ(second.cached(), 2);
  EXPECT_EQ(second.from_model, (std::unordered_set<std::string>{"vino"}));
  EXPECT_EQ(second.english.at("pane"), "PANE");

  translate_cached(store, "fake@1", fake.function(), {"vino", " "});
  EXPECT_EQ(fake.calls.size(), 2u);  // all cached: no call at all
  // Another translator id never sees these entries.
  translate_cached(store, "fake@2", fake.function(), {"vino"});
  EXPECT_EQ(fake.calls.size(), 3u);
}

TEST(TranslateCached, AReadOnlyStoreStillCachesThroughItsOwnConnection) {
  const fs::path dir = fresh_dir("read-only");
  { IndexStore create(dir / "index.sqlite3"); }
  const IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  FakeTranslator fake;
  EXPECT_EQ(translate_cached(reader, "fake@1", fake.function(), {"olio"}).english.at("olio"),
            "OLIO");
  EXPECT_EQ(translate_cached(reader, "fake@1", fake.function(), {"olio"}).cached(), 1);
  EXPECT_EQ(fake.calls.size(), 1u);
}

TEST(TranslateCached, ABusyStoreGivesTheTranslationWithoutCachingIt) {
  const fs::path dir = fresh_dir("busy");
  { IndexStore create(dir / "index.sqlite3"); }
  const IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  sqlite3* other_writer = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "index.sqlite3").c_str(), &other_writer), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other_writer, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  FakeTranslator fake;
  const auto started = std::chrono::steady_clock::now();
  const CachedTranslations busy = translate_cached(reader, "fake@1", fake.function(), {"sale"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(busy.english.at("sale"), "SALE");
  EXPECT_LT(seconds, 3.0);  // a short wait for the lock, not the store's default 5 s

  sqlite3_exec(other_writer, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other_writer);
  EXPECT_EQ(translate_cached(reader, "fake@1", fake.function(), {"sale"}).translated(), 1);
  EXPECT_EQ(fake.calls.size(), 2u);  // not cached the first time
}

TEST(TranslateCached, ErrorsAndAFailingTranslatorCacheNothing) {
  const fs::path dir = fresh_dir("errors");
  IndexStore store(dir / "index.sqlite3");
  FakeTranslator fake;
  EXPECT_EQ(error_of([&] { translate_cached(store, "", fake.function(), {"a"}); }).first,
            ErrorKind::kUsage);
  const TranslateFunction short_by_one = [](const Texts& texts) {
    return Texts(texts.size() - 1, "x");
  };
  const auto [kind, message] = error_of([&] {
    translate_cached(store, "fake@1", short_by_one, {"a", "b"});
  });
  EXPECT_EQ(kind, ErrorKind::kInternal);
  EXPECT_NE(message.find("1 texts for 2"), std::string::npos);
  const TranslateFunction failing = [](const Texts&) -> Texts {
    throw Error(ErrorKind::kModel, "no weights");
  };
  EXPECT_THROW(translate_cached(store, "fake@1", failing, {"a"}), Error);
  EXPECT_TRUE(store.find_translations("fake@1", {"a", "b"}).empty());
  // Nothing to translate: the translator is not called, even a failing one.
  EXPECT_TRUE(translate_cached(store, "fake@1", failing, {" ", ""}).english.empty());
}

TEST(LazyTranslator, LocatesByLanguageOrNameAndIdentifiesWithoutLoading) {
  const fs::path models = fresh_dir("bundles");
  write_fake_bundle(models, "opus-mt-it-en", "it", /*list_files=*/true);
  const fs::path unlisted = write_fake_bundle(models, "mt-unlisted", "it", /*list_files=*/false);

  LazyTranslator by_language({"it", ""}, {models});
  EXPECT_EQ(by_language.name(), "opus-mt-it-en");
  EXPECT_EQ(by_language.dir(), models / "opus-mt-it-en");
  EXPECT_EQ(by_language.id(), "opus-mt-it-en@" + std::string(16, 'a'));
  EXPECT_FALSE(by_language.loaded());

  // No sha256 in the manifest: the decoder file's own hash names the weights.
  LazyTranslator by_folder({"", unlisted.string()}, {});
  EXPECT_EQ(by_folder.id(), "mt-unlisted@" + hash_file(unlisted / "decoder.pt"));

  // The model is loaded on the first texts to translate; these modules can't be.
  EXPECT_TRUE(by_language.translate({}).empty());
  EXPECT_FALSE(by_language.loaded());
  EXPECT_EQ(error_of([&] { by_language.translate({"ciao"}); }).first, ErrorKind::kModel);
  EXPECT_FALSE(by_language.loaded());
}

TEST(LazyTranslator, RequestErrorsNameTheLanguageAndTheBundleButNoFlag) {
  const fs::path models = fresh_dir("request-errors");
  write_fake_bundle(models, "opus-mt-it-en", "it", true);
  auto open_error = [&](const TranslationRequest& request) {
    return error_of([&] { LazyTranslator translator(request, {models}); });
  };
  auto [kind, message] = open_error({"xx", ""});
  EXPECT_EQ(kind, ErrorKind::kModel);
  EXPECT_NE(message.find("no translation model for language 'xx'"), std::string::npos);
  EXPECT_NE(message.find("opus-mt-xx-en"), std::string::npos);
  EXPECT_NE(message.find(models.string()), std::string::npos);  // where it looked
  EXPECT_EQ(message.find("--"), std::string::npos);

  std::tie(kind, message) = open_error({"it/../en", ""});
  EXPECT_EQ(kind, ErrorKind::kUsage);
  EXPECT_NE(message.find("not a language code"), std::string::npos);
  std::tie(kind, message) = open_error({"en", ""});
  EXPECT_EQ(kind, ErrorKind::kUsage);
  EXPECT_NE(message.find("English"), std::string::npos);
  std::tie(kind, message) = open_error({"de", "opus-mt-it-en"});
  EXPECT_EQ(kind, ErrorKind::kUsage);
  EXPECT_NE(message.find("translates from 'it', not from 'de'"), std::string::npos);
  std::tie(kind, message) = open_error({"", "nope"});
  EXPECT_EQ(kind, ErrorKind::kModel);
  EXPECT_NE(message.find("'nope' not found"), std::string::npos);
  EXPECT_EQ(message.find("--"), std::string::npos);
}
