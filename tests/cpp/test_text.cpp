// pre_caption and the bert-base-uncased WordPiece tokenizer against the LAVIS goldens
// (shared/golden/tokenizer/cases.jsonl) and on edge cases the goldens do not cover.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mmsearch/error.h"
#include "mmsearch/text.h"
#include "shared_data.h"

namespace mmsearch {
namespace {

const std::filesystem::path kSharedDir = MMSEARCH_SHARED_DIR;
const std::filesystem::path kVocabFile = kSharedDir / "data" / "bert-base-uncased-vocab.txt";
const std::filesystem::path kCasesFile = kSharedDir / "golden" / "tokenizer" / "cases.jsonl";

// LAVIS Blip2Base.init_tokenizer: bert-base-uncased + bos_token [DEC].
TokenizerOptions blip2_options() {
  TokenizerOptions options;
  options.added_tokens = {{"[DEC]", 30522}};
  return options;
}

// LAVIS BlipBase.init_tokenizer: additionally the additional special token [ENC].
TokenizerOptions blip1_options() {
  TokenizerOptions options;
  options.added_tokens = {{"[DEC]", 30522}, {"[ENC]", 30523}};
  return options;
}

class TextGoldenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kVocabFile) || !std::filesystem::exists(kCasesFile)) return;
    blip2_ = new WordPieceTokenizer(kVocabFile, blip2_options());
    blip1_ = new WordPieceTokenizer(kVocabFile, blip1_options());
    std::ifstream in(kCasesFile, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) cases_.push_back(nlohmann::json::parse(line));
    }
  }
  static void TearDownTestSuite() {
    delete blip2_;
    delete blip1_;
    blip2_ = blip1_ = nullptr;
    cases_.clear();
  }
  void SetUp() override {
    if (blip2_ == nullptr) GTEST_SKIP() << "shared golden data not found under " << kSharedDir;
  }

  static std::vector<std::int64_t> row(const BatchEncoding& batch) { return batch.ids; }

  static WordPieceTokenizer* blip2_;
  static WordPieceTokenizer* blip1_;
  static std::vector<nlohmann::json> cases_;
};

WordPieceTokenizer* TextGoldenTest::blip2_ = nullptr;
WordPieceTokenizer* TextGoldenTest::blip1_ = nullptr;
std::vector<nlohmann::json> TextGoldenTest::cases_;

std::vector<std::string> with_cls_sep(std::vector<std::string> tokens) {
  tokens.insert(tokens.begin(), "[CLS]");
  tokens.push_back("[SEP]");
  return tokens;
}

TEST_F(TextGoldenTest, EveryCaseMatchesEveryField) {
  ASSERT_EQ(cases_.size(), 352u);
  std::map<std::string, int> passed;
  for (const nlohmann::json& c : cases_) {
    const std::string input = c.at("input").get<std::string>();
    const std::string id = "case " + std::to_string(c.at("id").get<int>());
    std::map<std::string, bool> ok;

    const std::string caption = pre_caption(input);
    ok["pre_caption"] = caption == c.at("pre_caption").get<std::string>();

    const Encoding encoded = blip2_->encode(caption);
    ok["input_ids"] = encoded.ids == c.at("input_ids").get<std::vector<std::int64_t>>();
    ok["attention_mask"] = encoded.mask == c.at("attention_mask").get<std::vector<std::int64_t>>();
    ok["tokens"] = with_cls_sep(encoded.tokens) == c.at("tokens").get<std::vector<std::string>>();

    const BatchEncoding padded = blip2_->encode_batch({caption}, 35, true);
    ok["input_ids_max35"] = padded.ids == c.at("input_ids_max35").get<std::vector<std::int64_t>>();
    ok["attention_mask_max35"] =
        padded.mask == c.at("attention_mask_max35").get<std::vector<std::int64_t>>();
    ok["input_ids_trunc32"] = blip2_->encode(caption, 32).ids ==
                              c.at("input_ids_trunc32").get<std::vector<std::int64_t>>();

    const Encoding raw = blip2_->encode(input);
    ok["raw_input_ids"] = raw.ids == c.at("raw_input_ids").get<std::vector<std::int64_t>>();
    ok["raw_tokens"] =
        with_cls_sep(raw.tokens) == c.at("raw_tokens").get<std::vector<std::string>>();

    ok["blip1_input_ids"] =
        blip1_->encode(caption).ids == c.at("blip1_input_ids").get<std::vector<std::int64_t>>();
    ok["blip1_input_ids_max35"] = blip1_->encode_batch({caption}, 35, true).ids ==
                                  c.at("blip1_input_ids_max35").get<std::vector<std::int64_t>>();
    ok["blip1_raw_input_ids"] =
        blip1_->encode(input).ids == c.at("blip1_raw_input_ids").get<std::vector<std::int64_t>>();

    for (const auto& [field, matches] : ok) {
      passed[field] += matches ? 1 : 0;
      EXPECT_TRUE(matches) << id << " field " << field << " input " << nlohmann::json(input).dump()
                           << " pre_caption " << nlohmann::json(caption).dump();
    }
  }
  for (const auto& [field, count] : passed) {
    std::cout << "[ golden   ] " << field << ": " << count << "/" << cases_.size() << "\n";
  }
}

TEST_F(TextGoldenTest, ShowsTheIssueExamples) {
  // "ragù" must become "ragu": accents stripped by NFD.
  EXPECT_EQ(blip2_->tokenize(pre_caption("Ragù")), blip2_->tokenize("ragu"));
  // pre_caption lowercases the whole string (final sigma), the tokenizer one char at a time.
  EXPECT_EQ(pre_caption("ΣΟΦΟΣ"), "σοφος");
  EXPECT_EQ(blip2_->tokenize("ΣΟΦΟΣ"), (std::vector<std::string>{"σ", "##ο", "##φ", "##ο", "##σ"}));
  EXPECT_EQ(pre_caption("İ"), "i\u0307");
}

TEST_F(TextGoldenTest, SpecialTokensAreCaseSensitiveAndPerModel) {
  EXPECT_EQ(blip1_->encode("[ENC] a").ids, (std::vector<std::int64_t>{101, 30523, 1037, 102}));
  EXPECT_EQ(blip2_->tokenize("[ENC]"), (std::vector<std::string>{"[", "en", "##c", "]"}));
  EXPECT_EQ(blip2_->tokenize("a[DEC]b"), (std::vector<std::string>{"a", "[DEC]", "b"}));
  EXPECT_EQ(blip2_->token_to_id("[DEC]"), 30522);
  EXPECT_EQ(blip2_->id_to_token(30522), "[DEC]");
  EXPECT_EQ(blip1_->id_to_token(30523), "[ENC]");
  EXPECT_EQ(blip2_->size(), 30523u);
  EXPECT_EQ(blip1_->size(), 30524u);
  EXPECT_EQ(blip2_->vocab_size(), 30522u);
  EXPECT_THROW(blip2_->id_to_token(30523), Error);
  EXPECT_EQ(blip2_->tokenize("[dec]"), blip2_->tokenize("[Dec]"));
}

TEST_F(TextGoldenTest, CharactersNewerThanPython311AreUnassigned) {
  // The reference ran Python 3.11 (Unicode 14.0), where characters assigned in Unicode 15.0
  // (here CJK Extension H U+31350 and Kawi U+11F04) are category Cn: BertTokenizer drops them
  // as "control" characters, pre_caption leaves them alone.
  EXPECT_EQ(blip2_->tokenize("a\U00031350b"), blip2_->tokenize("ab"));
  EXPECT_EQ(blip2_->tokenize("a\U00011F04b"), blip2_->tokenize("ab"));
  EXPECT_EQ(pre_caption("A\U00031350"), "a\U00031350");
  // Private use (Co) is dropped as well, as transformers' _is_control tests category C*.
  EXPECT_EQ(blip2_->tokenize("a\uE000b"), blip2_->tokenize("ab"));
}

TEST_F(TextGoldenTest, SpecialTokenRevealedByCleaningStaysWhole) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  // Without lowercasing, a control character inside "[CLS]" hides it from the special-token
  // split, clean_text then removes it, and BasicTokenizer keeps the word whole.
  TokenizerOptions cased = blip2_options();
  cased.lowercase = false;
  const WordPieceTokenizer tokenizer(kVocabFile, cased);
  EXPECT_EQ(tokenizer.tokenize(std::string("[CL\0S]", 6)), (std::vector<std::string>{"[CLS]"}));
  // With lowercasing the hidden token is lowercased like any text.
  EXPECT_EQ(blip2_->tokenize(std::string("[CL\0S]", 6)), blip2_->tokenize("[cls]"));
}

TEST_F(TextGoldenTest, EmptyAndPunctuationOnly) {
  EXPECT_EQ(pre_caption(""), "");
  EXPECT_EQ(pre_caption("   "), "");
  EXPECT_EQ(pre_caption("...!!!"), "");
  EXPECT_EQ(blip2_->encode("").ids, (std::vector<std::int64_t>{101, 102}));
  EXPECT_EQ(blip2_->encode(pre_caption("?!.")).tokens, (std::vector<std::string>{"?"}));
  EXPECT_EQ(blip2_->tokenize("?!."), (std::vector<std::string>{"?", "!", "."}));
  const BatchEncoding empty = blip2_->encode_batch({}, 0, false);
  EXPECT_EQ(empty.count, 0);
  EXPECT_TRUE(empty.ids.empty());
}

TEST_F(TextGoldenTest, VeryLongWords) {
  // More than 100 characters is one [UNK]; exactly 100 is still split into pieces.
  EXPECT_EQ(blip2_->tokenize(std::string(101, 'x')), (std::vector<std::string>{"[UNK]"}));
  const std::vector<std::string> hundred = blip2_->tokenize(std::string(100, 'x'));
  EXPECT_GT(hundred.size(), 1u);
  EXPECT_EQ(hundred.front().rfind("x", 0), 0u);
  // The limit counts characters, not bytes: 60 two-byte characters are fine.
  std::string accented;
  for (int i = 0; i < 60; ++i) accented += "é";
  EXPECT_NE(blip2_->tokenize(accented), (std::vector<std::string>{"[UNK]"}));
  // A megabyte-long word costs linear time and gives one [UNK].
  EXPECT_EQ(blip2_->tokenize(std::string(1 << 20, 'a')), (std::vector<std::string>{"[UNK]"}));
}

TEST_F(TextGoldenTest, InvalidUtf8IsAClearInputError) {
  for (const std::string& bad : {std::string("caf\xC3"), std::string("\xFF"),
                                 std::string("\xC0\xAF"),          // overlong "/"
                                 std::string("\xED\xA0\x80"),      // UTF-16 surrogate
                                 std::string("\xF4\x90\x80\x80"),  // above U+10FFFF
                                 std::string("ok \x80 no")}) {
    try {
      pre_caption(bad);
      ADD_FAILURE() << "pre_caption accepted invalid UTF-8";
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInput);
      EXPECT_NE(std::string(error.what()).find("UTF-8"), std::string::npos) << error.what();
    }
    try {
      blip2_->tokenize(bad);
      ADD_FAILURE() << "tokenize accepted invalid UTF-8";
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInput);
    }
  }
  try {
    pre_caption("ok \x80 no");
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("byte offset 3"), std::string::npos) << error.what();
  }
}

TEST_F(TextGoldenTest, TruncationAndPadding) {
  const Encoding full = blip2_->encode("one two three four five");
  ASSERT_EQ(full.ids.size(), 7u);
  const Encoding cut = blip2_->encode("one two three four five", 4);
  EXPECT_EQ(cut.ids, (std::vector<std::int64_t>{101, full.ids[1], full.ids[2], 102}));
  EXPECT_EQ(cut.tokens.size(), 2u);
  EXPECT_EQ(blip2_->encode("one two", 2).ids, (std::vector<std::int64_t>{101, 102}));
  EXPECT_THROW(blip2_->encode("x", 1), Error);
  EXPECT_THROW(blip2_->encode_batch({"x"}, 0, true), Error);

  const BatchEncoding batch = blip2_->encode_batch({"a", "one two three"}, 0, false);
  EXPECT_EQ(batch.count, 2);
  EXPECT_EQ(batch.length, 5);
  EXPECT_EQ(batch.ids,
            (std::vector<std::int64_t>{101, 1037, 102, 0, 0, 101, 2028, 2048, 2093, 102}));
  EXPECT_EQ(batch.mask, (std::vector<std::int64_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1}));
}

TEST(PreCaption, MaxWords) {
  std::string caption;
  for (int i = 0; i < 60; ++i) caption += "w" + std::to_string(i) + " ";
  const std::string kept = pre_caption(caption);
  EXPECT_EQ(kept.substr(0, 6), "w0 w1 ");
  EXPECT_EQ(kept.substr(kept.size() - 4), " w49");
  EXPECT_EQ(pre_caption("a b c", 2), "a b");
  EXPECT_EQ(pre_caption("a b c", 3), "a b c");
  EXPECT_EQ(pre_caption("a b c", 0), "");
  // Only single spaces separate words; a lone tab does not.
  EXPECT_EQ(pre_caption("a\tb c", 1), "a\tb");
  EXPECT_THROW(pre_caption("a", -1), Error);
}

TEST(PreCaption, WhitespaceRules) {
  EXPECT_EQ(pre_caption("a\u3000b"), "a\u3000b");   // single \s kept
  EXPECT_EQ(pre_caption("a\u3000\u3000b"), "a b");  // runs collapsed
  EXPECT_EQ(pre_caption("a\x1c\x1d"
                        "b"),
            "a b");                                // \x1c-\x1f are Python whitespace
  EXPECT_EQ(pre_caption("caption\n"), "caption");  // rstrip("\n")
  EXPECT_EQ(pre_caption("a.b"), "a b");            // punctuation to space
  EXPECT_EQ(pre_caption(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(WordPieceTokenizer, InMemoryVocabAndValidation) {
  const std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]",  "[SEP]", "[MASK]",
                                          "un",    "##aff", "##able", "a",     ","};
  TokenizerOptions options;
  options.cls_id = 2;
  options.sep_id = 3;
  options.pad_id = 0;
  WordPieceTokenizer tokenizer(vocab, options);
  EXPECT_EQ(tokenizer.tokenize("Unaffable, a"),
            (std::vector<std::string>{"un", "##aff", "##able", ",", "a"}));
  EXPECT_EQ(tokenizer.tokenize("unknown"), (std::vector<std::string>{"[UNK]"}));
  EXPECT_EQ(tokenizer.encode("a").ids, (std::vector<std::int64_t>{2, 8, 3}));

  TokenizerOptions missing = options;
  missing.never_split.push_back("[NOPE]");
  EXPECT_THROW(WordPieceTokenizer(vocab, missing), Error);
  TokenizerOptions whole_map = options;  // a bundle's special_tokens map, vocab entries included
  whole_map.added_tokens = {{"[UNK]", 1}, {"[CLS]", 2}, {"[DEC]", 10}};
  const WordPieceTokenizer with_dec(vocab, whole_map);
  EXPECT_EQ(with_dec.size(), 11u);
  EXPECT_EQ(with_dec.encode("a[DEC]").ids, (std::vector<std::int64_t>{2, 8, 10, 3}));
  TokenizerOptions clashing = options;
  clashing.added_tokens = {{"[DEC]", 3}};
  EXPECT_THROW(WordPieceTokenizer(vocab, clashing), Error);
  try {
    WordPieceTokenizer(std::filesystem::path(MMSEARCH_TEST_TMP_DIR) / "no-such-vocab.txt", options);
    ADD_FAILURE() << "missing vocab file accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(error.what()).find("no-such-vocab.txt"), std::string::npos);
  }
}

TEST_F(TextGoldenTest, Throughput) {
  std::vector<std::string> captions;
  for (const nlohmann::json& c : cases_) captions.push_back(c.at("input").get<std::string>());
  constexpr int kCaptions = 10000;
  const auto start = std::chrono::steady_clock::now();
  std::size_t total_ids = 0;
  for (int i = 0; i < kCaptions; ++i) {
    total_ids +=
        blip2_->encode(pre_caption(captions[static_cast<std::size_t>(i) % captions.size()]), 35)
            .ids.size();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ perf     ] pre_caption + encode of " << kCaptions
            << " golden captions: " << seconds << " s (" << total_ids << " ids)\n";
  // Well under a second on one core in Release; generous here for shared or sanitizer builds.
  EXPECT_LT(seconds, 5.0);
}

}  // namespace
}  // namespace mmsearch
