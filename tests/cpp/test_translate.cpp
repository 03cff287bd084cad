// Translator (issue 6): sentencepiece through the dlopen'ed shim in a process that also runs
// libtorch, the MarianTokenizer cases, greedy / beam search against the transformers 4.33
// goldens (deterministic bundles), batching, determinism and the error paths.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mmsearch/error.h"
#include "mmsearch/translate.h"
#include "shared_data.h"

namespace fs = std::filesystem;
using mmsearch::Error;
using mmsearch::ErrorKind;
using mmsearch::MarianTokenizer;
using mmsearch::TranslateOptions;
using mmsearch::Translator;

namespace {

const fs::path kGolden = fs::path(MMSEARCH_SHARED_DIR) / "golden" / "marian";
const fs::path kBundles = fs::path(MMSEARCH_MARIAN_TEST_BUNDLES);

fs::path bundle(const std::string& kind) { return kBundles / kind / "opus-mt-it-en"; }

// index.json is Python's json: it writes -Infinity / NaN (e.g. step_logprobs after the forced
// EOS), which strict JSON parsers refuse; they become null here.
nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const std::string bad : {"-Infinity", "Infinity", "NaN"}) {
    size_t pos = 0;
    while ((pos = s.find(bad, pos)) != std::string::npos) s.replace(pos, bad.size(), "null");
  }
  return nlohmann::json::parse(s);
}

#define REQUIRE_GOLDEN()                                        \
  if (!fs::exists(kGolden / "model" / "index.json") ||          \
      !fs::exists(bundle("det") / "mmsearch.json")) {           \
    GTEST_SKIP() << "no Marian goldens / deterministic bundle"; \
  }

Translator& det(bool bias) {
  static std::unique_ptr<Translator> zero, with_bias;
  auto& slot = bias ? with_bias : zero;
  if (!slot) slot = std::make_unique<Translator>(bundle(bias ? "det-bias" : "det"), false);
  return *slot;
}

std::vector<std::vector<int64_t>> unpad(const nlohmann::json& seqs, int64_t pad) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& row : seqs) {
    std::vector<int64_t> r = row.get<std::vector<int64_t>>();
    // transformers pads after </s> (greedy) or after the hypothesis; the start token is pad too
    while (r.size() > 1 && r.back() == pad) r.pop_back();
    out.push_back(r);
  }
  return out;
}

}  // namespace

TEST(Translate, TokenizerCasesThroughShim) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  if (!fs::exists(kGolden / "tokenizer" / "cases.jsonl")) GTEST_SKIP() << "no goldens";
  const fs::path t = kGolden / "tokenizer";
  MarianTokenizer tok(t / "source.spm", t / "target.spm", t / "vocab.json", 512);
  std::ifstream in(t / "cases.jsonl", std::ios::binary);
  std::string line;
  int n = 0, enc = 0, dec = 0;
  while (std::getline(in, line)) {
    const auto c = nlohmann::json::parse(line);
    ++n;
    const std::string id = c["id"].dump();
    if (c["kind"] == "encode") {
      const std::string text = c["text"].get<std::string>();
      EXPECT_EQ(tok.tokenize(text), c["pieces"].get<std::vector<std::string>>()) << id;
      EXPECT_EQ(tok.encode(text), c["input_ids"].get<std::vector<int64_t>>()) << id;
      if (c.contains("truncated_input_ids")) {
        bool cut = false;
        EXPECT_EQ(tok.encode(text, false, true, &cut),
                  c["truncated_input_ids"].get<std::vector<int64_t>>())
            << id;
        EXPECT_TRUE(cut) << id;
      }
      const auto tgt = c["target_input_ids"].get<std::vector<int64_t>>();
      EXPECT_EQ(tok.encode(text, true), tgt) << id;
      EXPECT_EQ(tok.decode(tgt), c["target_decoded"].get<std::string>()) << id;
      ++enc;
    } else {
      const auto ids = c["ids"].get<std::vector<int64_t>>();
      EXPECT_EQ(tok.decode(ids), c["decoded_skip_special"].get<std::string>()) << id;
      EXPECT_EQ(tok.decode(ids, false), c["decoded_keep_special"].get<std::string>()) << id;
      EXPECT_EQ(tok.decode(ids, true, false),
                c["decoded_skip_special_no_cleanup"].get<std::string>())
          << id;
      ++dec;
    }
  }
  EXPECT_EQ(enc, 410);
  EXPECT_EQ(dec, 82);
}

TEST(Translate, NulInTextIsPassedWithItsLength) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  if (!fs::exists(kGolden / "tokenizer")) GTEST_SKIP() << "no goldens";
  const fs::path t = kGolden / "tokenizer";
  MarianTokenizer tok(t / "source.spm", t / "target.spm", t / "vocab.json");
  const std::string s("a\0b", 3);
  EXPECT_NE(tok.encode(s), tok.encode("a"));
}

void check_generate(bool bias) {
  const auto index = read_json(kGolden / "model" / "index.json");
  const auto& root = bias ? index["supplement_final_logits_bias"] : index;
  std::vector<nlohmann::json> entries(root["sentences"].begin(), root["sentences"].end());
  entries.push_back(root["batch"]);
  Translator& tr = det(bias);
  const int64_t pad = tr.manifest().pad_token_id;
  int identical = 0, total = 0;
  for (const auto& e : entries) {
    std::vector<std::vector<int64_t>> sources;
    for (const auto& text : e["texts"])
      sources.push_back(tr.tokenizer().encode(text.get<std::string>()));
    // the tokenizer gives the golden input_ids (unpadded)
    const auto want_ids = unpad(e["input_ids"], pad);
    ASSERT_EQ(sources, want_ids) << e["name"];
    for (auto it = e["generate"].begin(); it != e["generate"].end(); ++it) {
      const auto& kw = it.value()["kwargs"];
      TranslateOptions o;
      o.num_beams = kw["num_beams"].get<int>();
      o.max_new_tokens = kw["max_new_tokens"].get<int>();
      o.length_penalty = kw.value("length_penalty", 1.0);
      std::vector<double> scores;
      const auto got = tr.generate(sources, o, &scores);
      // compare padded to the golden width
      const auto& want = it.value()["sequences"];
      ASSERT_EQ(got.size(), want.size());
      bool same = true;
      for (size_t r = 0; r < got.size(); ++r) {
        std::vector<int64_t> row = got[r];
        row.resize(want[r].size(), pad);
        same =
            same && got[r].size() <= want[r].size() && row == want[r].get<std::vector<int64_t>>();
        if (it.value().contains("sequences_scores") &&
            it.value()["sequences_scores"][r].is_number()) {
          EXPECT_NEAR(scores[r], it.value()["sequences_scores"][r].get<double>(), 1e-4)
              << e["name"] << " " << it.key();
        }
      }
      EXPECT_TRUE(same) << e["name"] << " " << it.key();
      identical += same;
      ++total;
    }
  }
  EXPECT_EQ(identical, total);
  EXPECT_EQ(total, bias ? 12 : 36);
}

TEST(Translate, GoldenGreedyAndBeamTokenIdentical) {
  REQUIRE_GOLDEN();
  check_generate(false);
}

TEST(Translate, GoldenFinalLogitsBiasSupplement) {
  REQUIRE_GOLDEN();
  if (!fs::exists(bundle("det-bias") / "mmsearch.json")) GTEST_SKIP() << "no det-bias bundle";
  check_generate(true);
}

TEST(Translate, GoldenDecodedTexts) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  REQUIRE_GOLDEN();
  const auto index = read_json(kGolden / "model" / "index.json");
  Translator& tr = det(false);
  for (const auto& e : index["sentences"]) {
    TranslateOptions o;
    o.num_beams = 1;
    o.max_new_tokens = 24;
    const auto got = tr.translate_detailed(e["texts"].get<std::vector<std::string>>(), o);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].text, e["generate"]["greedy"]["decoded"][0].get<std::string>()) << e["name"];
  }
}

TEST(Translate, ManifestGenerationSettingsAreTheDefaults) {
  ASSERT_TRUE(fs::exists(bundle("tiny") / "mmsearch.json"));
  Translator tr(bundle("tiny"));
  const auto& m = tr.manifest();
  EXPECT_EQ(m.num_beams, 4);
  EXPECT_EQ(m.max_length, 64);
  EXPECT_EQ(m.decoder_start_token_id, m.pad_token_id);
  const std::vector<std::string> texts = {"Un piatto di lasagne al ragù a casa.", "Ciao!"};
  const auto a = tr.translate_detailed(texts);
  for (const auto& t : a) {
    ASSERT_FALSE(t.output_ids.empty());
    EXPECT_EQ(t.output_ids.front(), m.decoder_start_token_id);
    EXPECT_LE(static_cast<int>(t.output_ids.size()), m.max_length);
  }
  TranslateOptions explicit_opts;
  explicit_opts.num_beams = 4;
  explicit_opts.max_length = 64;
  explicit_opts.length_penalty = 1.0;
  const auto b = tr.translate_detailed(texts, explicit_opts);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].output_ids, b[i].output_ids);
}

TEST(Translate, BatchedEqualsOneByOneAndDeterministic) {
  Translator tr(bundle("tiny"));
  const std::vector<std::string> texts = {
      "Un piatto di spaghetti alla carbonara al mare con Marco.", "Ciao!", "Che bello!",
      "La nonna prepara polenta in montagna, alle 12:30.", "Oggi piove e fa freddo."};
  for (int beams : {1, 3}) {
    TranslateOptions all;
    all.num_beams = beams;
    all.batch_size = 16;
    TranslateOptions one = all;
    one.batch_size = 1;
    const auto batched = tr.translate_detailed(texts, all);
    const auto single = tr.translate_detailed(texts, one);
    const auto again = tr.translate_detailed(texts, all);
    ASSERT_EQ(batched.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(batched[i].output_ids, single[i].output_ids) << beams << " " << texts[i];
      EXPECT_EQ(batched[i].output_ids, again[i].output_ids);
      EXPECT_EQ(batched[i].text, again[i].text);
    }
  }
  EXPECT_EQ(tr.translate(texts).size(), texts.size());
}

TEST(Translate, EmptyCaptionsGiveEmptyTranslations) {
  Translator tr(bundle("tiny"));
  const auto out = tr.translate_detailed({"", "  \t\n", "Ciao!", ""});
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].text, "");
  EXPECT_TRUE(out[0].output_ids.empty());
  EXPECT_EQ(out[1].text, "");
  EXPECT_FALSE(out[2].output_ids.empty());
  EXPECT_EQ(out[3].text, "");
  EXPECT_TRUE(tr.translate({}).empty());
}

TEST(Translate, LongCaptionsAreTruncatedWithAWarning) {
  Translator tr(bundle("tiny"));
  std::string text;
  for (int i = 0; i < 300; ++i) text += "spaghetti al pomodoro ";
  TranslateOptions o;
  o.num_beams = 1;
  o.max_new_tokens = 5;
  const auto out = tr.translate_detailed({text, "Ciao!"}, o);
  EXPECT_TRUE(out[0].truncated);
  EXPECT_NE(out[0].warning.find("truncated"), std::string::npos);
  EXPECT_EQ(static_cast<int>(out[0].source_ids.size()), tr.manifest().model_max_length);
  EXPECT_EQ(out[0].source_ids.back(), tr.manifest().eos_token_id);
  EXPECT_FALSE(out[1].truncated);
  EXPECT_TRUE(out[1].warning.empty());
}

TEST(Translate, MissingSpmFileIsNamed) {
  const fs::path tmp = fs::path(MMSEARCH_TEST_TMP_DIR) / "translate_missing_spm";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fs::copy(bundle("tiny"), tmp / "b", fs::copy_options::recursive);
  fs::remove(tmp / "b" / "target.spm");
  try {
    Translator tr(tmp / "b", false);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find("target.spm"), std::string::npos) << e.what();
  }
  try {
    MarianTokenizer tok(tmp / "b" / "source.spm", tmp / "b" / "nope.spm", tmp / "b" / "vocab.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.spm"), std::string::npos) << e.what();
  }
  // a corrupt .spm is refused with its name too
  fs::copy_file(tmp / "b" / "vocab.json", tmp / "b" / "target.spm");
  try {
    Translator tr(tmp / "b", false);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target.spm"), std::string::npos) << e.what();
  }
  fs::remove_all(tmp);
}

TEST(Translate, BundleErrors) {
  const fs::path tmp = fs::path(MMSEARCH_TEST_TMP_DIR) / "translate_bad_bundle";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fs::copy(bundle("tiny"), tmp / "b", fs::copy_options::recursive);
  {  // a modified file fails the sha256 check, and only then
    std::ofstream(tmp / "b" / "vocab.json", std::ios::app) << " ";
    EXPECT_THROW(Translator(tmp / "b", true), Error);
    EXPECT_NO_THROW(Translator(tmp / "b", false));
  }
  EXPECT_THROW(Translator(tmp / "nothing"), Error);
  EXPECT_THROW(Translator::locate("no-such-model", {tmp}), Error);
  EXPECT_EQ(Translator::locate("b", {tmp}), tmp / "b");
  fs::remove_all(tmp);
}
