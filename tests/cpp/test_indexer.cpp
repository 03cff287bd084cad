// Indexing a folder (src/index_plan.cpp, src/indexer.cpp): the plan on a temp folder against a
// fake store state (unchanged / touched / renamed / deleted / caption changed / duplicate),
// reuse of stored vectors, and whole runs of index_folder with models/dishes-tiny.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "mmsearch/bundle.h"
#include "mmsearch/encoder.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/index_plan.h"
#include "mmsearch/indexer.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;
using mmsearch::test_support::write_file;

namespace {

fs::path fresh_dir(const std::string& name) {
  return test_support::fresh_test_dir("indexer", name);
}

// A small noisy PNG; every call draws other noise, and the first row differs per seed.
void write_image(const fs::path& path, int seed) {
  fs::create_directories(path.parent_path());
  cv::Mat image(24, 32, CV_8UC3);
  cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(255));
  image.row(0).setTo(cv::Scalar(seed * 37 % 256, seed * 71 % 256, seed * 13 % 256));
  ASSERT_TRUE(cv::imwrite(path.string(), image));
}

FileState state_of(const fs::path& path) {
  FileState state;
  state.path = normalize_index_path(path);
  state.size = static_cast<std::int64_t>(fs::file_size(path));
  state.mtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       fs::last_write_time(path).time_since_epoch())
                       .count();
  state.content_hash = hash_file(path);
  return state;
}

StoredVectors block(VectorKind kind, int caption_index, float value) {
  return {kind, caption_index, 1, 2, {value, -value}};
}

// A stored record as the indexer writes it: image vectors, and per caption a text and a
// multimodal block whose values tell the caption apart.
IndexedFile stored_record(const FileState& state, const std::string& category,
                          const std::vector<Caption>& captions) {
  IndexedFile file;
  file.state = state;
  file.category = category;
  file.captions = captions;
  file.vectors.push_back(block(VectorKind::kImageProj, -1, 1));
  file.vectors.push_back(block(VectorKind::kImageEmbed, -1, 2));
  for (int c = 0; c < static_cast<int>(captions.size()); ++c) {
    file.vectors.push_back(block(VectorKind::kTextProj, c, 10 + c));
    file.vectors.push_back(block(VectorKind::kMultimodal, c, 20 + c));
  }
  return file;
}

FileListing listing_of(const IndexedFile& file) {
  FileListing listing;
  listing.state = file.state;
  listing.category = file.category;
  listing.captions = file.captions;
  return listing;
}

// What a store would hold: listings by path, records by content.
struct FakeStore {
  std::vector<FileListing> listings;
  std::map<std::string, IndexedFile> by_hash;
  int lookups = 0;

  void add(const IndexedFile& file) {
    listings.push_back(listing_of(file));
    by_hash.emplace(file.state.content_hash, file);
  }
  ContentLookup lookup() {
    return [this](const std::string& hash, std::int64_t size) -> std::optional<IndexedFile> {
      ++lookups;
      const auto it = by_hash.find(hash);
      if (it == by_hash.end() || it->second.state.size != size) return std::nullopt;
      return it->second;
    };
  }
};

std::vector<std::string> names(const std::vector<FileJob>& jobs) {
  std::vector<std::string> out;
  for (const auto& job : jobs) out.push_back(job.path.filename().string());
  return out;
}

using Names = std::vector<std::string>;

}  // namespace

TEST(IndexPlan, ScanFindsImagesByContentWithCaptionsAndCategories) {
  const fs::path root = fresh_dir("scan");
  write_image(root / "pasta" / "a.png", 1);
  write_image(root / "b.png", 2);
  fs::rename(root / "b.png", root / "b.notanimage");  // found by content, not by name
  write_image(root / ".hidden" / "c.png", 3);
  write_file(root / "notes.txt", "not an image");
  write_file(root / "captions.csv", "file,caption\npasta/a.png,lasagne\nmissing.png,x\nbad\n");

  const FolderScan scan = scan_folder(root / "pasta" / "..", /*include_hidden=*/false);
  EXPECT_EQ(scan.root, normalize_index_path(root));
  ASSERT_EQ(scan.images.size(), 2u);
  EXPECT_EQ(scan.images[0].path.filename(), "b.notanimage");
  EXPECT_EQ(scan.images[1].path.filename(), "a.png");
  EXPECT_EQ(scan.images[1].info.captions, (Names{"lasagne"}));
  EXPECT_EQ(scan.images[1].info.category, "pasta");
  ASSERT_EQ(scan.warnings.size(), 2u);  // missing.png and the short row
  EXPECT_EQ(caption_texts(scan), (Names{"lasagne"}));

  EXPECT_EQ(scan_folder(root, /*include_hidden=*/true).images.size(), 3u);
}

TEST(IndexPlan, AnUnreadableSidecarIsAWarningAndKeepsTheFolderCategory) {
  const fs::path root = fresh_dir("bad-sidecar");
  write_image(root / "soups" / "a.png", 1);
  write_file(root / "soups" / "a.txt", "caf\xE9\n");
  const FolderScan scan = scan_folder(root, false);
  ASSERT_EQ(scan.images.size(), 1u);
  EXPECT_TRUE(scan.images[0].info.captions.empty());
  EXPECT_EQ(scan.images[0].info.category, "soups");
  ASSERT_EQ(scan.warnings.size(), 1u);
  EXPECT_NE(scan.warnings[0].find("a.txt"), std::string::npos);
}

TEST(IndexPlan, SortsFilesIntoUnchangedReuseEmbedDuplicatesAndVanished) {
  const fs::path root = fresh_dir("plan");
  write_image(root / "pasta" / "same.png", 1);
  write_image(root / "pasta" / "touched.png", 2);
  write_image(root / "pasta" / "recaptioned.png", 3);
  write_image(root / "renamed-new.png", 4);
  write_image(root / "fresh.png", 5);
  fs::copy_file(root / "fresh.png", root / "fresh-copy.png");
  write_file(root / "captions.csv",
             "file,caption\n"
             "pasta/same.png,lasagne\n"
             "pasta/touched.png,spaghetti\n"
             "pasta/recaptioned.png,new caption\n");

  FakeStore store;
  store.add(stored_record(state_of(root / "pasta" / "same.png"), "pasta", {{"lasagne", ""}}));
  FileState touched = state_of(root / "pasta" / "touched.png");
  touched.mtime_ns -= 1'000'000'000;  // the file was touched since it was indexed
  store.add(stored_record(touched, "pasta", {{"spaghetti", ""}}));
  store.add(
      stored_record(state_of(root / "pasta" / "recaptioned.png"), "pasta", {{"old caption", ""}}));
  // renamed-new.png was indexed as renamed-old.png, which is gone.
  FileState renamed = state_of(root / "renamed-new.png");
  renamed.path = normalize_index_path(root / "renamed-old.png");
  store.add(stored_record(renamed, "", {}));

  const FolderScan scan = scan_folder(root, false);
  const IndexPlan plan = plan_index(scan, {}, store.listings, store.lookup());
  EXPECT_EQ(plan.unchanged, 1);
  EXPECT_EQ(names(plan.reuse), (Names{"touched.png", "renamed-new.png"}));
  EXPECT_EQ(names(plan.embed), (Names{"fresh-copy.png", "recaptioned.png"}));
  EXPECT_EQ(names(plan.duplicates), (Names{"fresh.png"}));
  EXPECT_TRUE(plan.failures.empty());
  EXPECT_EQ(store.lookups, 5);  // every file but the unchanged one was hashed and looked up
  for (const auto& job : plan.embed) EXPECT_FALSE(job.state.content_hash.empty());
  EXPECT_EQ(plan.embed[1].info.captions, (Names{"new caption"}));
  EXPECT_EQ(plan.embed[1].english, (Names{""}));

  const RemovalPlan removals = plan_removals(scan, store.listings);
  ASSERT_EQ(removals.remove.size(), 1u);
  EXPECT_EQ(removals.remove[0].path, normalize_index_path(root / "renamed-old.png"));
  EXPECT_TRUE(removals.unverifiable.empty());
}

// A stored file leaves when it is gone or no longer yielded by the walk (not an image now,
// hidden now); it stays when the walk lists it, reports it as a failure, or could not read its
// folder.
TEST(IndexPlan, RemovalsCoverGoneAndExcludedFilesButNotUnreadableFolders) {
  const fs::path root = fresh_dir("plan-removals");
  write_image(root / "kept.png", 1);
  write_file(root / "was-an-image.png", "now some text");
  write_image(root / ".hidden" / "h.png", 2);
  write_file(root / "notes.txt", "not an image, not named like one");
  FakeStore store;
  for (const char* name : {"kept.png", "was-an-image.png", ".hidden/h.png", "gone.png"}) {
    FileState state;
    state.path = normalize_index_path(root / name);
    state.size = 1;
    store.add(stored_record(state, "", {}));
  }
  FolderScan scan = scan_folder(root, false);
  ASSERT_EQ(scan.failures.size(), 1u);  // was-an-image.png is named like an image
  EXPECT_NE(scan.failures[0].reason.find("not an image"), std::string::npos);
  EXPECT_EQ(scan.failures[0].path, normalize_index_path(root / "was-an-image.png"));
  RemovalPlan removals = plan_removals(scan, store.listings);
  Names removed;
  for (const auto& state : removals.remove) removed.push_back(fs::path(state.path).filename());
  EXPECT_EQ(removed, (Names{"h.png", "gone.png"}));

  // The hidden folder, unreadable now: what is stored under it stays.
  scan.unreadable_folders.push_back(normalize_index_path(root / ".hidden"));
  removals = plan_removals(scan, store.listings);
  ASSERT_EQ(removals.remove.size(), 1u);
  EXPECT_EQ(fs::path(removals.remove[0].path).filename(), "gone.png");
}

TEST(IndexPlan, RemovingMostOfAFolderIsRefusedUnlessConfirmed) {
  const fs::path root = fresh_dir("plan-mass-removal");
  FolderScan empty = scan_folder(root, false);  // an empty mount point
  EXPECT_THROW(check_removal_share(empty, 3, 3, false), Error);
  EXPECT_NO_THROW(check_removal_share(empty, 3, 3, true));
  try {
    check_removal_share(empty, 3, 3, false);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find("--confirm-removal"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("mounted"), std::string::npos);
  }
  write_image(root / "one.png", 1);
  const FolderScan one = scan_folder(root, false);
  EXPECT_NO_THROW(check_removal_share(one, 3, 2, false));    // a few photos deleted
  EXPECT_NO_THROW(check_removal_share(one, 40, 12, false));  // under half
  EXPECT_THROW(check_removal_share(one, 40, 21, false), Error);
  EXPECT_NO_THROW(check_removal_share(one, 12, 9, false));  // under the minimum
  EXPECT_NO_THROW(check_removal_share(empty, 0, 0, false));
}

TEST(IndexPlan, ATranslationChangeMakesAFileChangedAndAVanishedFileAFailure) {
  const fs::path root = fresh_dir("plan-translation");
  write_image(root / "a.png", 1);
  write_image(root / "b.png", 2);
  write_file(root / "captions.csv", "file,caption\na.png,pane\n");
  FakeStore store;
  store.add(stored_record(state_of(root / "a.png"), "", {{"pane", ""}}));
  const FolderScan scan = scan_folder(root, false);
  fs::remove(root / "b.png");  // gone between the scan and the plan

  const IndexPlan plan = plan_index(scan, {{"pane", "bread"}}, store.listings, store.lookup());
  EXPECT_EQ(plan.unchanged, 0);
  // The stored record's caption has no English, so its vectors don't fit: embed again.
  EXPECT_EQ(names(plan.embed), (Names{"a.png"}));
  EXPECT_EQ(plan.embed[0].english, (Names{"bread"}));
  EXPECT_EQ(plan.embed[0].embed_text(0), "bread");
  ASSERT_EQ(plan.failures.size(), 1u);
  EXPECT_EQ(plan.failures[0].path, normalize_index_path(root / "b.png"));
  EXPECT_NE(plan.failures[0].reason.find("cannot stat"), std::string::npos);
}

TEST(IndexPlan, ReuseRecordCopiesImageVectorsAndMatchingCaptionVectors) {
  FileState state{"/photos/a.png", 10, 20, "xxh64:0000000000000001"};
  const IndexedFile stored = stored_record(state, "old", {{"x", ""}, {"y", "Y"}});
  FileJob job;
  job.state = state;
  job.state.path = "/photos/b.png";
  job.info.category = "new";
  job.info.captions = {"y"};
  job.english = {"Y"};

  const std::optional<IndexedFile> record = reuse_record(job, stored);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->state.path, "/photos/b.png");
  EXPECT_EQ(record->category, "new");
  ASSERT_EQ(record->captions.size(), 1u);
  EXPECT_EQ(record->captions[0].text_en, "Y");
  ASSERT_EQ(record->vectors.size(), 4u);
  EXPECT_EQ(record->vectors[0].kind, VectorKind::kImageProj);
  EXPECT_EQ(record->vectors[2].kind, VectorKind::kTextProj);
  EXPECT_EQ(record->vectors[2].caption_index, 0);  // renumbered for the new record
  EXPECT_EQ(record->vectors[2].values[0], 11.0f);  // from the stored caption 1 ("y")
  EXPECT_EQ(record->vectors[3].values[0], 21.0f);

  job.english = {""};  // same text, other English: its vectors were made from other text
  EXPECT_FALSE(reuse_record(job, stored));
  job.info.captions = {};
  job.english = {};
  ASSERT_TRUE(reuse_record(job, stored));
  EXPECT_EQ(reuse_record(job, stored)->vectors.size(), 2u);
}

namespace {

struct IndexerRun : ::testing::Test {
  void SetUp() override {
    dir = fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    root = dir / "photos";
    write_image(root / "pasta" / "a.png", 1);
    write_image(root / "pasta" / "b.png", 2);
    write_image(root / "dolci" / "c.png", 3);
    fs::copy_file(root / "dolci" / "c.png", root / "dolci" / "c-copy.png");
    write_file(root / "broken.png", "\x89PNG\r\n\x1a\n truncated");
    write_file(root / "captions.csv",
               "file,caption\n"
               "pasta/a.png,lasagne al ragu\n"
               "pasta/a.png,pasta al forno\n"
               "dolci/c.png,tiramisu\n"
               "dolci/c-copy.png,tiramisu\n");
    write_file(root / "pasta" / "b.txt", "spaghetti\n");
    store = std::make_unique<IndexStore>(dir / "index.sqlite3");
    options.batch_size = 2;
    options.on_progress = [this](const IndexProgress& p) { progress.push_back(p); };
    options.on_failure = [this](const std::string& path, const std::string&) {
      failed_paths.push_back(path);
    };
  }

  static Encoder& encoder() {
    static Encoder instance(Bundle::open(fs::path(MMSEARCH_SOURCE_DIR) / "models" / "dishes-tiny"));
    return instance;
  }
  IndexSummary run() { return index_folder(encoder(), *store, root, options); }
  std::string model_id() { return encoder().bundle().identity(); }
  std::map<std::string, FileListing> listed() {
    std::map<std::string, FileListing> out;
    for (auto& listing : store->list_files(model_id(), root)) {
      out.emplace(fs::path(listing.state.path).lexically_relative(root).string(), listing);
    }
    return out;
  }

  fs::path dir, root;
  std::unique_ptr<IndexStore> store;
  IndexOptions options;
  std::vector<IndexProgress> progress;
  std::vector<std::string> failed_paths;
};

}  // namespace

TEST_F(IndexerRun, EmbedsOnceThenLeavesEverythingUnchanged) {
  const IndexSummary first = run();
  EXPECT_EQ(first.found, 5);
  EXPECT_EQ(first.indexed, 3);
  EXPECT_EQ(first.reused, 1);  // the copy reuses the first copy's vectors
  EXPECT_EQ(first.unchanged, 0);
  EXPECT_EQ(first.failed, 1);
  ASSERT_EQ(first.failures.size(), 1u);
  EXPECT_EQ(first.failures[0].path, normalize_index_path(root / "broken.png"));
  EXPECT_EQ(failed_paths, (Names{first.failures[0].path}));
  EXPECT_EQ(first.model_id, model_id());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().done, 5);
  EXPECT_EQ(progress.back().total, 5);
  EXPECT_EQ(progress.back().embedded, 3);

  const auto files = listed();
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files.at("pasta/a.png").captions.size(), 2u);
  EXPECT_EQ(files.at("pasta/a.png").category, "pasta");
  EXPECT_EQ(files.at("pasta/b.png").captions[0].text, "spaghetti");
  // The copy's vectors are the original's.
  const LoadedVectors images =
      store->load_vectors(model_id(), root / "dolci", VectorKind::kImageProj);
  ASSERT_EQ(images.embeddings.count, 2);
  const std::size_t item_size = static_cast<std::size_t>(images.embeddings.vectors_per_item) *
                                static_cast<std::size_t>(images.embeddings.dim);
  EXPECT_TRUE(std::equal(images.embeddings.item(0), images.embeddings.item(0) + item_size,
                         images.embeddings.item(1)));

  progress.clear();
  const IndexSummary second = run();
  EXPECT_EQ(second.unchanged, 4);
  EXPECT_EQ(second.indexed + second.reused + second.removed, 0);
  EXPECT_EQ(second.failed, 1);  // still broken
  EXPECT_EQ(progress.back().done, 5);
}

TEST_F(IndexerRun, TouchRenameDeleteRecaptionAndCorruption) {
  run();
  // Touched: hashed again, reuses its own vectors.
  fs::last_write_time(root / "pasta" / "b.png",
                      fs::last_write_time(root / "pasta" / "b.png") - std::chrono::hours(1));
  IndexSummary summary = run();
  EXPECT_EQ(summary.reused, 1);
  EXPECT_EQ(summary.unchanged, 3);
  EXPECT_EQ(summary.indexed, 0);

  // Renamed (with its sidecar) and one deleted: the rename reuses, the deletion leaves.
  fs::rename(root / "pasta" / "b.png", root / "pasta" / "b2.png");
  fs::rename(root / "pasta" / "b.txt", root / "pasta" / "b2.txt");
  fs::remove(root / "dolci" / "c-copy.png");
  summary = run();
  EXPECT_EQ(summary.removed, 2);
  EXPECT_EQ(summary.reused, 1);
  EXPECT_EQ(summary.indexed, 0);
  EXPECT_EQ(summary.unchanged, 2);
  auto files = listed();
  EXPECT_EQ(files.count("pasta/b.png"), 0u);
  EXPECT_EQ(files.at("pasta/b2.png").captions[0].text, "spaghetti");

  // A new caption: the model runs again for that file.
  write_file(root / "pasta" / "b2.txt", "spaghetti al pomodoro\n");
  summary = run();
  EXPECT_EQ(summary.indexed, 1);
  EXPECT_EQ(summary.unchanged, 2);
  EXPECT_EQ(listed().at("pasta/b2.png").captions[0].text, "spaghetti al pomodoro");

  // An indexed file replaced by a corrupt one fails and leaves the index.
  write_file(root / "dolci" / "c.png", "\x89PNG\r\n\x1a\n corrupt now");
  summary = run();
  EXPECT_EQ(summary.failed, 2);
  files = listed();
  EXPECT_EQ(files.count("dolci/c.png"), 0u);
  EXPECT_EQ(files.size(), 2u);
}

TEST_F(IndexerRun, TranslatesCaptionsOnceAndThenFromTheCache) {
  int calls = 0;
  options.translator_id = "fake@1";
  options.translate = [&calls](const std::vector<std::string>& texts) {
    ++calls;
    std::vector<std::string> out;
    for (const auto& text : texts) out.push_back("EN " + text);
    return out;
  };
  IndexSummary summary = run();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(summary.translated, 4);  // tiramisu once
  EXPECT_EQ(summary.translations_cached, 0);
  EXPECT_EQ(listed().at("dolci/c.png").captions[0].text_en, "EN tiramisu");

  summary = run();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(summary.translated, 0);
  EXPECT_EQ(summary.translations_cached, 4);
  EXPECT_EQ(summary.unchanged, 4);

  // Without translation the English text goes: every captioned file is embedded again.
  options.translate = nullptr;
  summary = run();
  EXPECT_EQ(summary.unchanged, 0);
  EXPECT_EQ(summary.indexed + summary.reused, 4);
  EXPECT_EQ(listed().at("dolci/c.png").captions[0].text_en, "");

  // A translator failure stops the run before the index changes.
  options.translator_id = "fake@2";
  options.translate = [](const std::vector<std::string>&) -> std::vector<std::string> {
    throw Error(ErrorKind::kModel, "no weights");
  };
  EXPECT_THROW(run(), Error);
  EXPECT_EQ(listed().size(), 4u);
}

TEST_F(IndexerRun, ARootThatIsNotAFolderIsAnInputError) {
  root = root / "pasta" / "a.png";
  EXPECT_EQ(error_of([&] { run(); }).first, ErrorKind::kInput);
}
