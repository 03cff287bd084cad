// resolve_scope_model(), stale_model_ids() and prune_stale_models() on a real store and the
// committed models/dishes-tiny bundle.
#include <gtest/gtest.h>

#include "mmsearch/error.h"
#include "mmsearch/scope_model.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;
using mmsearch::test_support::fresh_test_dir;

namespace {

const fs::path kModels = fs::path(MMSEARCH_SOURCE_DIR) / "models";

IndexedFile one_file(const std::string& path) {
  IndexedFile file;
  file.state = {path, 10, 20, "xxh64:0000000000000001"};
  StoredVectors vectors;
  vectors.rows = 1;
  vectors.cols = 2;
  vectors.values = {1.0f, 0.0f};
  file.vectors.push_back(vectors);
  return file;
}

class ScopeModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_test_dir("scope_model",
                          ::testing::UnitTest::GetInstance()->current_test_info()->name());
    store_ = std::make_unique<IndexStore>(dir_ / "index.sqlite3");
    tiny_ = find_bundle("dishes-tiny", {kModels});
  }
  fs::path dir_;
  std::unique_ptr<IndexStore> store_;
  std::optional<Bundle> tiny_;
};

TEST_F(ScopeModelTest, StatusesByIdentity) {
  EXPECT_EQ(resolve_scope_model(*store_, "/p", {kModels}, "").status,
            ScopeModel::Status::kNotIndexed);
  store_->upsert_batch(tiny_->identity(), {one_file("/p/a.jpg")});
  ScopeModel found = resolve_scope_model(*store_, "/p", {kModels}, "");
  EXPECT_EQ(found.status, ScopeModel::Status::kReady);
  EXPECT_EQ(found.bundle->identity(), tiny_->identity());
  EXPECT_EQ(resolve_scope_model(*store_, "/p", {kModels}, "dishes-tiny").status,
            ScopeModel::Status::kReady);

  // Another folder, indexed by an earlier export of the same bundle name.
  store_->upsert_batch("dishes-tiny@0123456789abcdef", {one_file("/q/a.jpg")});
  for (const std::string requested : {"", "dishes-tiny"}) {
    const ScopeModel old = resolve_scope_model(*store_, "/q", {kModels}, requested);
    EXPECT_EQ(old.status, ScopeModel::Status::kReExported) << requested;
    EXPECT_EQ(old.indexed_id, "dishes-tiny@0123456789abcdef");
  }

  // A folder indexed by a model that is not installed.
  store_->upsert_batch("gone@fedcba9876543210", {one_file("/r/a.jpg")});
  const ScopeModel gone = resolve_scope_model(*store_, "/r", {kModels}, "");
  EXPECT_EQ(gone.status, ScopeModel::Status::kNotInstalled);
  EXPECT_EQ(gone.name, "gone");
  EXPECT_EQ(resolve_scope_model(*store_, "/r", {kModels}, "dishes-tiny").status,
            ScopeModel::Status::kNotIndexedWithModel);
  EXPECT_EQ(error_of([&] { resolve_scope_model(*store_, "/r", {kModels}, "nope"); }).first,
            ErrorKind::kModel);
  EXPECT_EQ(model_name_of("blip-base@3fa94c1d"), "blip-base");
}

TEST_F(ScopeModelTest, SeveralModelsTheOneWithMostFilesWinsAndMessagesCount) {
  // The earlier export holds more of /p than the installed one, but only the installed one can
  // be searched: the scope resolves to it, and the earlier export is named as passed over.
  store_->upsert_batch(tiny_->identity(), {one_file("/p/a.jpg")});
  store_->upsert_batch("dishes-tiny@0123456789abcdef",
                       {one_file("/p/a.jpg"), one_file("/p/b.jpg")});
  const ScopeModel most = resolve_scope_model(*store_, "/p", {kModels}, "");
  EXPECT_EQ(most.status, ScopeModel::Status::kReady);
  EXPECT_EQ(most.indexed_id, tiny_->identity());
  ASSERT_EQ(most.usages.size(), 2u);
  EXPECT_EQ(most.usages[0].file_count, 2);
  ASSERT_EQ(most.passed_over.size(), 1u);
  EXPECT_EQ(most.passed_over[0].indexed_id, "dishes-tiny@0123456789abcdef");
  EXPECT_EQ(most.passed_over[0].status, ScopeModel::Status::kReExported);
  // With nothing usable, the one with most files gives the status, and every model is counted.
  store_->upsert_batch("gone@fedcba9876543210",
                       {one_file("/q/a.jpg"), one_file("/q/b.jpg"), one_file("/q/c.jpg")});
  store_->upsert_batch("dishes-tiny@0123456789abcdef", {one_file("/q/a.jpg")});
  const ScopeModel none = resolve_scope_model(*store_, "/q", {kModels}, "");
  EXPECT_EQ(none.status, ScopeModel::Status::kNotInstalled);
  EXPECT_EQ(none.indexed_id, "gone@fedcba9876543210");
  EXPECT_EQ(none.usages.size(), 2u);
  // Asked for by name, the installed identity is there: ready, without counting.
  const ScopeModel asked = resolve_scope_model(*store_, "/p", {kModels}, "dishes-tiny");
  EXPECT_EQ(asked.status, ScopeModel::Status::kReady);
  EXPECT_TRUE(asked.usages.empty());
  // A model that is not there: the message names the others with their counts.
  store_->upsert_batch("gone@fedcba9876543210", {one_file("/r/a.jpg"), one_file("/r/b.jpg")});
  const ScopeModel other = resolve_scope_model(*store_, "/r", {kModels}, "dishes-tiny");
  EXPECT_EQ(other.status, ScopeModel::Status::kNotIndexedWithModel);
  EXPECT_EQ(describe_usages(other.usages), "gone@fedcba9876543210 (2 files)");
}

TEST_F(ScopeModelTest, PruneRemovesOnlyStaleModels) {
  store_->upsert_batch(tiny_->identity(), {one_file("/p/a.jpg")});
  store_->upsert_batch("dishes-tiny@0123456789abcdef", {one_file("/p/a.jpg")});
  store_->upsert_batch("gone@fedcba9876543210", {one_file("/p/a.jpg"), one_file("/p/b.jpg")});
  const auto installed = discover_bundles({kModels}, false);

  // Without any installed bundle nothing is judged stale: refused, nothing removed.
  EXPECT_EQ(error_of([&] { prune_stale_models(*store_, {}); }).first, ErrorKind::kModel);
  EXPECT_EQ(store_->models().size(), 3u);

  const PruneReport report = prune_stale_models(*store_, installed);
  ASSERT_EQ(report.pruned.size(), 2u);
  EXPECT_EQ(report.pruned[0].model_id, "dishes-tiny@0123456789abcdef");
  EXPECT_EQ(report.pruned[1].model_id, "gone@fedcba9876543210");
  EXPECT_EQ(report.pruned[1].removed.files, 2);
  EXPECT_EQ(store_->models(), std::vector<std::string>{tiny_->identity()});
  EXPECT_TRUE(prune_stale_models(*store_, installed).pruned.empty());
}

}  // namespace
