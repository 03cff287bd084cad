// Captions and categories of a folder (src/captions.cpp): the csv / tsv / jsonl tables, sidecar
// files, which source wins, and what a malformed row or file gives.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "mmsearch/captions.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;
using mmsearch::test_support::write_file;

namespace {

fs::path fresh_dir(const std::string& name) {
  return test_support::fresh_test_dir("captions", name);
}

CaptionInfo info_for(const fs::path& root, const std::string& relative) {
  return captions_for(read_caption_table(root), root, root / relative);
}

// Rows only count for files that exist; their content does not matter here.
void touch(const fs::path& root, const std::vector<std::string>& relatives) {
  for (const auto& relative : relatives) write_file(root / relative, "image bytes");
}

CaptionTable lenient_table(const fs::path& root) {
  CaptionOptions options;
  options.lenient = true;
  return read_caption_table(root, options);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

using Captions = std::vector<std::string>;

}  // namespace

TEST(Captions, CsvWithQuotingSeveralRowsPerFileAndCategories) {
  const fs::path root = fresh_dir("csv");
  touch(root, {"a.jpg", "sub/b.jpg"});
  write_file(root / "captions.csv",
             "file,caption,category\n"
             "a.jpg,\"pizza, with basil\",pizza\n"
             "a.jpg,\"a \"\"margherita\"\"\",pizza\n"
             "sub/b.jpg,\"two\nlines\", dessert \n");
  const CaptionTable table = read_caption_table(root);
  EXPECT_EQ(table.source, root / "captions.csv");
  EXPECT_TRUE(table.warnings.empty());

  const CaptionInfo a = captions_for(table, root, root / "a.jpg");
  EXPECT_EQ(a.captions, (Captions{"pizza, with basil", "a \"margherita\""}));
  EXPECT_EQ(a.category, "pizza");
  const CaptionInfo b = captions_for(table, root, root / "sub" / "b.jpg");
  EXPECT_EQ(b.captions, (Captions{"two\nlines"}));
  EXPECT_EQ(b.category, "dessert");  // the table's category, trimmed, over the folder's
}

TEST(Captions, ColumnsInAnyOrderUnderTheirAliasesAndAByteOrderMark) {
  const fs::path root = fresh_dir("aliases");
  touch(root, {"c.png"});
  write_file(root / "captions.csv", "\xEF\xBB\xBFtext,filename\nsoup of the day,c.png\n");
  EXPECT_EQ(info_for(root, "c.png").captions, (Captions{"soup of the day"}));
}

TEST(Captions, TsvKeepsCommasInsideFields) {
  const fs::path root = fresh_dir("tsv");
  touch(root, {"d.jpg"});
  write_file(root / "captions.tsv", "file\tcaption\nd.jpg\tpasta, beans and rosemary\n");
  EXPECT_EQ(info_for(root, "d.jpg").captions, (Captions{"pasta, beans and rosemary"}));
}

TEST(Captions, BadRowsAreSkippedWithAWarningNamingFileAndRow) {
  const fs::path root = fresh_dir("bad-rows");
  touch(root, {"e.jpg", "f.jpg"});
  write_file(root / "captions.csv",
             "file,caption\n"
             "short\n"
             "e.jpg,\xC3\x28 broken utf-8\n"
             "f.jpg,fine\n");
  const CaptionTable table = read_caption_table(root);
  ASSERT_EQ(table.warnings.size(), 2u);
  EXPECT_NE(table.warnings[0].find("captions.csv: line 2: too few columns"), std::string::npos);
  EXPECT_NE(table.warnings[1].find("line 3: not valid UTF-8"), std::string::npos);
  EXPECT_TRUE(captions_for(table, root, root / "e.jpg").captions.empty());
  EXPECT_EQ(captions_for(table, root, root / "f.jpg").captions, (Captions{"fine"}));
}

TEST(Captions, AHeaderWithoutFileOrCaptionIsAnInputError) {
  const fs::path root = fresh_dir("no-header");
  write_file(root / "captions.csv", "name,description\na.jpg,pizza\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("captions.csv"), std::string::npos);
  EXPECT_NE(message.find("'file' and 'caption'"), std::string::npos);
}

TEST(Captions, JsonlLinesAndBadLines) {
  const fs::path root = fresh_dir("jsonl");
  touch(root, {"g.jpg"});
  write_file(root / "captions.jsonl",
             "{\"file\": \"g.jpg\", \"caption\": \"risotto\", \"category\": \"rice\"}\n"
             "\n"
             "not json\n"
             "{\"caption\": \"no file\"}\n"
             "{\"file\": \"g.jpg\", \"caption\": \"  with saffron  \"}\n");
  // A line that is not JSON stops a strict read; lenient, it is skipped like a bad object.
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.jsonl: line 3: not JSON")) << message;
  EXPECT_TRUE(has(message, "--lenient-captions")) << message;

  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 2u);
  EXPECT_NE(table.warnings[0].find("captions.jsonl: line 3"), std::string::npos);
  EXPECT_NE(table.warnings[1].find("line 4"), std::string::npos);
  const CaptionInfo g = captions_for(table, root, root / "g.jpg");
  EXPECT_EQ(g.captions, (Captions{"risotto", "with saffron"}));
  EXPECT_EQ(g.category, "rice");
}

TEST(Captions, CsvIsPreferredOverTsvAndJsonl) {
  const fs::path root = fresh_dir("precedence");
  touch(root, {"h.jpg"});
  write_file(root / "captions.csv", "file,caption\nh.jpg,from csv\n");
  write_file(root / "captions.tsv", "file\tcaption\nh.jpg\tfrom tsv\n");
  write_file(root / "captions.jsonl", "{\"file\": \"h.jpg\", \"caption\": \"from jsonl\"}\n");
  EXPECT_EQ(info_for(root, "h.jpg").captions, (Captions{"from csv"}));
  fs::remove(root / "captions.csv");
  EXPECT_EQ(info_for(root, "h.jpg").captions, (Captions{"from tsv"}));
  fs::remove(root / "captions.tsv");
  EXPECT_EQ(info_for(root, "h.jpg").captions, (Captions{"from jsonl"}));
}

TEST(Captions, SidecarLinesWhenTheTableHasNoCaptions) {
  const fs::path root = fresh_dir("sidecar");
  touch(root, {"k.jpg", "m.jpg"});
  write_file(root / "captions.csv", "file,caption,category\nk.jpg,,soups\nm.jpg,from the table,\n");
  write_file(root / "k.txt", "  minestrone \n\n\r\nwith parmesan\r\n");
  write_file(root / "m.txt", "ignored: the table gives captions\n");
  write_file(root / "dolci" / "n.txt", "tiramisu\n");

  const CaptionInfo k = info_for(root, "k.jpg");
  EXPECT_EQ(k.captions, (Captions{"minestrone", "with parmesan"}));
  EXPECT_EQ(k.category, "soups");
  EXPECT_EQ(info_for(root, "m.jpg").captions, (Captions{"from the table"}));
  const CaptionInfo n = info_for(root, "dolci/n.jpg");
  EXPECT_EQ(n.captions, (Captions{"tiramisu"}));
  EXPECT_EQ(n.category, "dolci");
}

TEST(Captions, AnImageNamedLikeASidecarIsNotItsOwnCaption) {
  const fs::path root = fresh_dir("self-sidecar");
  write_file(root / "photo.txt", "\x89PNG\r\n\x1a\n");
  EXPECT_TRUE(info_for(root, "photo.txt").captions.empty());
}

TEST(Captions, AnInvalidUtf8SidecarIsAnInputErrorNamingIt) {
  const fs::path root = fresh_dir("bad-sidecar");
  write_file(root / "p.txt", "caf\xE9\n");
  const auto [kind, message] = error_of([&] { info_for(root, "p.jpg"); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("p.txt"), std::string::npos);
}

TEST(Captions, CategoryDefaultsToTheFirstSubfolder) {
  const fs::path root = fresh_dir("category");
  EXPECT_EQ(info_for(root, "pizza/napoli/q.jpg").category, "pizza");
  EXPECT_EQ(info_for(root, "r.jpg").category, "");
  // The root given with a trailing slash or unnormalised gives the same answer.
  EXPECT_EQ(
      captions_for(read_caption_table(root), root / "x" / "..", root / "pasta" / "s.jpg").category,
      "pasta");
  EXPECT_TRUE(read_caption_table(root).source.empty());
}

// ---------------------------------------------------------------------------------------------
// Damaged quoting: strict by default, re-sync per row when lenient.

TEST(Captions, AnUnterminatedQuoteIsAnInputErrorNamingFileLineAndTheFlag) {
  const fs::path root = fresh_dir("unterminated");
  touch(root, {"a.jpg", "b.jpg", "c.jpg", "d.jpg"});
  write_file(root / "captions.csv",
             "file,caption\n"
             "a.jpg,fine\n"
             "b.jpg,\"broken caption\n"
             "c.jpg,third\n"
             "d.jpg,fourth\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.csv: line 3: ")) << message;
  EXPECT_TRUE(has(message, "unterminated quote")) << message;
  EXPECT_TRUE(has(message, "--lenient-captions")) << message;

  // Lenient: only the damaged row goes; the rows it had swallowed are read again.
  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 1u) << testing::PrintToString(table.warnings);
  EXPECT_TRUE(has(table.warnings[0], "captions.csv: line 3: ")) << table.warnings[0];
  EXPECT_TRUE(has(table.warnings[0], "skipped")) << table.warnings[0];
  EXPECT_EQ(captions_for(table, root, root / "a.jpg").captions, (Captions{"fine"}));
  EXPECT_TRUE(captions_for(table, root, root / "b.jpg").captions.empty());
  EXPECT_EQ(captions_for(table, root, root / "c.jpg").captions, (Captions{"third"}));
  EXPECT_EQ(captions_for(table, root, root / "d.jpg").captions, (Captions{"fourth"}));
}

TEST(Captions, ARunawayQuoteThatALaterQuoteClosesIsCaughtToo) {
  // libcsv alone accepts this: the quote opened on line 2 closes at `12"` on line 3, giving
  // a.jpg one caption of two lines and b.jpg nothing.
  const fs::path root = fresh_dir("runaway");
  touch(root, {"a.jpg", "b.jpg", "c.jpg"});
  write_file(root / "captions.csv",
             "file,caption\n"
             "a.jpg,\"a broken caption\n"
             "b.jpg,a 12\"\n"
             "c.jpg,ok\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.csv: line 2: ")) << message;
  EXPECT_TRUE(has(message, "line 3, which reads as a row of its own (for 'b.jpg')")) << message;

  // Lenient: read again from line 3, whose bare quote is damage of its own.
  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 2u) << testing::PrintToString(table.warnings);
  EXPECT_TRUE(has(table.warnings[0], "line 2: ")) << table.warnings[0];
  EXPECT_TRUE(has(table.warnings[1], "line 3: a quote inside an unquoted field"))
      << table.warnings[1];
  EXPECT_TRUE(captions_for(table, root, root / "a.jpg").captions.empty());
  EXPECT_TRUE(captions_for(table, root, root / "b.jpg").captions.empty());
  EXPECT_EQ(captions_for(table, root, root / "c.jpg").captions, (Captions{"ok"}));
}

TEST(Captions, AQuoteInsideAnUnquotedFieldIsDamageButADoubledOneIsNot) {
  const fs::path root = fresh_dir("stray-quote");
  touch(root, {"a.jpg", "b.jpg"});
  write_file(root / "captions.csv", "file,caption\na.jpg,\"a 12\"\" pizza\"\nb.jpg,a 12\" pizza\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.csv: line 3: a quote inside an unquoted field")) << message;
  const CaptionTable table = lenient_table(root);
  EXPECT_EQ(captions_for(table, root, root / "a.jpg").captions, (Captions{"a 12\" pizza"}));
  EXPECT_TRUE(captions_for(table, root, root / "b.jpg").captions.empty());
}

TEST(Captions, AQuoteClosedByALaterQuoteFollowedByTextNamesWhereItOpened) {
  const fs::path root = fresh_dir("late-quote");
  touch(root, {"a.jpg", "b.jpg", "c.jpg"});
  write_file(root / "captions.csv",
             "file,caption\n"
             "a.jpg,\"left open\n"
             "b.jpg,plain\n"
             "c.jpg,\"quoted\"\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "line 2: a quoted field runs on to line 4")) << message;
  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 1u) << testing::PrintToString(table.warnings);
  EXPECT_EQ(captions_for(table, root, root / "b.jpg").captions, (Captions{"plain"}));
  EXPECT_EQ(captions_for(table, root, root / "c.jpg").captions, (Captions{"quoted"}));
}

TEST(Captions, LineNumbersCountMultiLineFieldsBlankLinesAndCrLf) {
  const fs::path root = fresh_dir("line-numbers");
  touch(root, {"a.jpg", "b.jpg", "c.jpg"});
  write_file(root / "captions.csv",
             "file,caption\r\n"
             "a.jpg,\"two\r\nlines, one with a comma\"\r\n"
             "\r\n"
             "b.jpg,\"bad\" x\r\n"
             "c.jpg,last\r\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.csv: line 5: a closing quote is followed by other text"))
      << message;

  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 1u) << testing::PrintToString(table.warnings);
  EXPECT_TRUE(has(table.warnings[0], "line 5: ")) << table.warnings[0];
  // A genuine multi-line caption is no runaway: no line of it starts like a row.
  EXPECT_EQ(captions_for(table, root, root / "a.jpg").captions,
            (Captions{"two\r\nlines, one with a comma"}));
  EXPECT_TRUE(captions_for(table, root, root / "b.jpg").captions.empty());
  EXPECT_EQ(captions_for(table, root, root / "c.jpg").captions, (Captions{"last"}));
}

TEST(Captions, ADamagedFieldAfterAMultiLineOneSkipsTheWholeRow) {
  const fs::path root = fresh_dir("whole-row");
  touch(root, {"a.jpg", "b.jpg"});
  write_file(root / "captions.csv",
             "file,caption,category\n"
             "a.jpg,\"one\nmore\",\"open\n"
             "b.jpg,fine,x\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_TRUE(has(message, "captions.csv: line 3: ")) << message;  // the damaged field's line
  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 1u) << testing::PrintToString(table.warnings);
  EXPECT_TRUE(has(table.warnings[0], "lines 2-3")) << table.warnings[0];
  EXPECT_TRUE(captions_for(table, root, root / "a.jpg").captions.empty());
  EXPECT_EQ(captions_for(table, root, root / "b.jpg").captions, (Captions{"fine"}));
}

TEST(Captions, TsvQuotingDamageIsTreatedTheSame) {
  const fs::path root = fresh_dir("tsv-damage");
  touch(root, {"a.jpg", "b.jpg"});
  write_file(root / "captions.tsv", "file\tcaption\na.jpg\t\"open\nb.jpg\tfine\n");
  const auto [kind, message] = error_of([&] { read_caption_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.tsv: line 2: ")) << message;
  EXPECT_TRUE(has(message, "--lenient-captions")) << message;
  const CaptionTable table = lenient_table(root);
  ASSERT_EQ(table.warnings.size(), 1u) << testing::PrintToString(table.warnings);
  EXPECT_EQ(captions_for(table, root, root / "b.jpg").captions, (Captions{"fine"}));
}

TEST(Captions, ADamagedHeaderIsAnErrorEvenWhenLenient) {
  const fs::path root = fresh_dir("bad-header");
  write_file(root / "captions.csv", "\"file,caption\na.jpg,x\n");
  const auto [kind, message] = error_of([&] { lenient_table(root); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "captions.csv: line 1: the header row is damaged")) << message;
}

// ---------------------------------------------------------------------------------------------
// Which rows count: missing files, repeats, header spelling, Unicode forms, limits.

TEST(Captions, RowsForMissingFilesAndExactRepeatsAreWarnedAbout) {
  const fs::path root = fresh_dir("missing-and-repeats");
  touch(root, {"a.jpg", "sub/b.jpg"});
  write_file(root / "captions.csv",
             "file,caption\n"
             "a.jpg,pizza\n"
             "gone.jpg,nobody\n"
             "a.jpg, pizza \n"  // the same caption once trimmed
             "./sub/../sub/b.jpg,pasta\n"
             "../outside.jpg,x\n"
             "a.jpg,another\n");
  const CaptionTable table = read_caption_table(root);
  ASSERT_EQ(table.warnings.size(), 3u);
  EXPECT_TRUE(
      has(table.warnings[0], "captions.csv: line 3: 'gone.jpg' is not a file in the folder"))
      << table.warnings[0];
  EXPECT_TRUE(has(table.warnings[1], "captions.csv: line 4: repeats line 2")) << table.warnings[1];
  EXPECT_TRUE(has(table.warnings[2], "line 6: '../outside.jpg' is not inside the folder"))
      << table.warnings[2];
  EXPECT_EQ(captions_for(table, root, root / "a.jpg").captions, (Captions{"pizza", "another"}));
  EXPECT_EQ(captions_for(table, root, root / "sub" / "b.jpg").captions, (Captions{"pasta"}));
  EXPECT_EQ(table.by_path.count(normalize_index_path(root / "gone.jpg")), 0u);
}

TEST(Captions, ManyWarningsOfOneKindAreCountedInOneLine) {
  const fs::path root = fresh_dir("many-missing");
  std::string csv = "file,caption\n";
  for (int i = 0; i < 25; ++i) csv += "missing" + std::to_string(i) + ".jpg,x\n";
  write_file(root / "captions.csv", csv);
  const CaptionTable table = read_caption_table(root);
  ASSERT_EQ(table.warnings.size(), kMaxWarningsPerKind + 1);
  EXPECT_TRUE(has(table.warnings.back(), "5 more rows name files that are not in the folder"))
      << table.warnings.back();
}

TEST(Captions, HeaderNamesIgnoreCaseSpacesAndAByteOrderMark) {
  const fs::path root = fresh_dir("header-spelling");
  touch(root, {"a.jpg"});
  write_file(root / "captions.csv",
             "\xEF\xBB\xBF"
             "File,Caption,Category\na.jpg,pizza,Pizze\n");
  const CaptionInfo a = info_for(root, "a.jpg");
  EXPECT_EQ(a.captions, (Captions{"pizza"}));
  EXPECT_EQ(a.category, "Pizze");

  write_file(root / "captions.csv",
             "\" \xEF\xBB\xBF"
             "FILE \",  Caption  ,CATEGORY\na.jpg,x,y\n");
  EXPECT_EQ(info_for(root, "a.jpg").captions, (Captions{"x"}));
  write_file(root / "captions.tsv", " FileName \t TEXT\na.jpg\tfrom tsv\n");
  fs::remove(root / "captions.csv");
  EXPECT_EQ(info_for(root, "a.jpg").captions, (Captions{"from tsv"}));
}

TEST(Captions, NfcAndNfdNamesMatchEachOtherAndKeepTheNameOnDisk) {
  const fs::path root = fresh_dir("unicode-forms");
  const std::string nfc_cafe = "caf\xC3\xA9", nfd_cafe = "cafe\xCC\x81";
  // On disk: an NFD folder and file (as macOS writes them), and an NFC file.
  touch(root, {nfd_cafe + "/" + nfd_cafe + ".jpg", "cr\xC3\xA8me.jpg"});
  write_file(root / "captions.csv", "file,caption\n" + nfc_cafe + "/" + nfc_cafe +
                                        ".jpg,an espresso\n"
                                        "cre\xCC\x80me.jpg,a custard\n");
  const CaptionTable table = read_caption_table(root);
  EXPECT_TRUE(table.warnings.empty()) << table.warnings[0];
  EXPECT_EQ(captions_for(table, root, root / nfd_cafe / (nfd_cafe + ".jpg")).captions,
            (Captions{"an espresso"}));
  EXPECT_EQ(captions_for(table, root, root / "cr\xC3\xA8me.jpg").captions, (Captions{"a custard"}));
  // The key is the path as on disk, byte for byte.
  EXPECT_EQ(table.by_path.count(normalize_index_path(root / nfd_cafe / (nfd_cafe + ".jpg"))), 1u);
}

TEST(Captions, CaptionsPerImageAreLimited) {
  const fs::path root = fresh_dir("limits");
  touch(root, {"a.jpg"});
  std::string csv = "file,caption\n";
  for (std::size_t i = 0; i < kMaxCaptionsPerImage + 3; ++i) {
    csv += "a.jpg,caption " + std::to_string(i) + "\n";
  }
  write_file(root / "captions.csv", csv);
  const CaptionTable table = read_caption_table(root);
  EXPECT_EQ(captions_for(table, root, root / "a.jpg").captions.size(), kMaxCaptionsPerImage);
  ASSERT_EQ(table.warnings.size(), 3u);
  EXPECT_TRUE(has(table.warnings[0], "line " + std::to_string(kMaxCaptionsPerImage + 2) +
                                         ": more than 1000 captions for 'a.jpg'"))
      << table.warnings[0];

  // A sidecar at the limit is read; one over it, in lines or bytes, is refused by name.
  std::string lines;
  for (std::size_t i = 0; i < kMaxCaptionsPerImage; ++i)
    lines += "line " + std::to_string(i) + "\n";
  write_file(root / "s.txt", lines);
  EXPECT_EQ(info_for(root, "s.jpg").captions.size(), kMaxCaptionsPerImage);
  write_file(root / "s.txt", lines + "one too many\n");
  auto [kind, message] = error_of([&] { info_for(root, "s.jpg"); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "s.txt: caption file has more than 1000 captions")) << message;
  write_file(root / "s.txt", std::string(kMaxSidecarBytes + 1, 'x'));
  std::tie(kind, message) = error_of([&] { info_for(root, "s.jpg"); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_TRUE(has(message, "s.txt: caption file is larger than 4 MiB")) << message;
}

TEST(Captions, AJsonlNumberOutOfRangeIsARowWarningNotACrash) {
  // Found by fuzz_captions: nlohmann throws out_of_range, not parse_error, for 9e9999, and
  // nothing caught it.
  const fs::path root = fresh_dir("jsonl-out-of-range");
  touch(root, {"a.jpg"});
  write_file(root / "captions.jsonl",
             "{\"file\": \"a.jpg\", \"caption\": \"x\", \"n\": 9e9999}\n"
             "{\"file\": \"a.jpg\", \"caption\": \"y\"}\n");
  const CaptionTable table = read_caption_table(root);
  ASSERT_EQ(table.warnings.size(), 1u) << testing::PrintToString(table.warnings);
  EXPECT_TRUE(has(table.warnings[0], "captions.jsonl: line 1: a number out of range"));
  EXPECT_EQ(captions_for(table, root, root / "a.jpg").captions, (Captions{"y"}));
}
