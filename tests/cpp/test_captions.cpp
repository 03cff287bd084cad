// Captions and categories of a folder (src/captions.cpp): the csv / tsv / jsonl tables, sidecar
// files, which source wins, and what a malformed row or file gives.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

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

using Captions = std::vector<std::string>;

}  // namespace

TEST(Captions, CsvWithQuotingSeveralRowsPerFileAndCategories) {
  const fs::path root = fresh_dir("csv");
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
  write_file(root / "captions.csv", "\xEF\xBB\xBFtext,filename\nsoup of the day,c.png\n");
  EXPECT_EQ(info_for(root, "c.png").captions, (Captions{"soup of the day"}));
}

TEST(Captions, TsvKeepsCommasInsideFields) {
  const fs::path root = fresh_dir("tsv");
  write_file(root / "captions.tsv", "file\tcaption\nd.jpg\tpasta, beans and rosemary\n");
  EXPECT_EQ(info_for(root, "d.jpg").captions, (Captions{"pasta, beans and rosemary"}));
}

TEST(Captions, BadRowsAreSkippedWithAWarningNamingFileAndRow) {
  const fs::path root = fresh_dir("bad-rows");
  write_file(root / "captions.csv",
             "file,caption\n"
             "short\n"
             "e.jpg,\xC3\x28 broken utf-8\n"
             "f.jpg,fine\n");
  const CaptionTable table = read_caption_table(root);
  ASSERT_EQ(table.warnings.size(), 2u);
  EXPECT_NE(table.warnings[0].find("captions.csv: row 2 has too few columns"), std::string::npos);
  EXPECT_NE(table.warnings[1].find("row 3 is not valid UTF-8"), std::string::npos);
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
  write_file(root / "captions.jsonl",
             "{\"file\": \"g.jpg\", \"caption\": \"risotto\", \"category\": \"rice\"}\n"
             "\n"
             "not json\n"
             "{\"caption\": \"no file\"}\n"
             "{\"file\": \"g.jpg\", \"caption\": \"  with saffron  \"}\n");
  const CaptionTable table = read_caption_table(root);
  ASSERT_EQ(table.warnings.size(), 2u);
  EXPECT_NE(table.warnings[0].find("captions.jsonl: line 3"), std::string::npos);
  EXPECT_NE(table.warnings[1].find("line 4"), std::string::npos);
  const CaptionInfo g = captions_for(table, root, root / "g.jpg");
  EXPECT_EQ(g.captions, (Captions{"risotto", "with saffron"}));
  EXPECT_EQ(g.category, "rice");
}

TEST(Captions, CsvIsPreferredOverTsvAndJsonl) {
  const fs::path root = fresh_dir("precedence");
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
