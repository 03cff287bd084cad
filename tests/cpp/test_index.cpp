#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "fresh_dir.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"

namespace fs = std::filesystem;
using namespace mmsearch;

namespace {

fs::path fresh_dir(const std::string& name) { return fresh_test_dir("index", name); }

StoredVectors block(VectorKind kind, int caption_index, int rows, int cols, float seed) {
  StoredVectors v;
  v.kind = kind;
  v.caption_index = caption_index;
  v.rows = rows;
  v.cols = cols;
  for (int i = 0; i < rows * cols; ++i) v.values.push_back(seed + 0.001f * i);
  return v;
}

IndexedFile make_file(const std::string& path, float seed, int captions = 1) {
  IndexedFile f;
  f.state = {path, 1000 + static_cast<std::int64_t>(seed), 123456789, "xxh64:" + path};
  f.category = "cat" + std::to_string(static_cast<int>(seed) % 3);
  f.vectors.push_back(block(VectorKind::kImageProj, -1, 2, 4, seed));
  f.vectors.push_back(block(VectorKind::kImageEmbed, -1, 1, 6, seed));
  for (int c = 0; c < captions; ++c) {
    f.captions.push_back({"caption " + std::to_string(c) + " of " + path, ""});
    f.vectors.push_back(block(VectorKind::kTextProj, c, 1, 4, seed + c));
    f.vectors.push_back(block(VectorKind::kMultimodal, c, 2, 6, seed + c));
  }
  return f;
}

}  // namespace

TEST(IndexStore, RoundTripsFilesCaptionsAndVectors) {
  const fs::path dir = fresh_dir("roundtrip");
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as stored
  IndexedFile f = make_file("/photos/a.jpg", 1.0f, 2);
  f.captions[1].text_en = "english text";
  store.upsert_batch("blip@1", {f, make_file("/photos/b.jpg", 2.0f)});

  const auto state = store.find_file("blip@1", "/photos/a.jpg");
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->size, f.state.size);
  EXPECT_EQ(state->mtime_ns, f.state.mtime_ns);
  EXPECT_EQ(state->content_hash, f.state.content_hash);
  EXPECT_FALSE(store.find_file("blip@1", "/photos/zzz.jpg").has_value());
  EXPECT_FALSE(store.find_file("other@2", "/photos/a.jpg").has_value());

  const auto files = store.list_files("blip@1", "/photos");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].state.path, "/photos/a.jpg");
  ASSERT_EQ(files[0].captions.size(), 2u);
  EXPECT_EQ(files[0].captions[1].text, f.captions[1].text);
  EXPECT_EQ(files[0].captions[1].text_en, "english text");
  EXPECT_EQ(files[0].captions[0].text_en, "");
  EXPECT_EQ(files[0].category, f.category);

  const LoadedVectors image = store.load_vectors("blip@1", "/photos", VectorKind::kImageProj);
  ASSERT_EQ(image.embeddings.count, 2);
  EXPECT_EQ(image.embeddings.vectors_per_item, 2);
  EXPECT_EQ(image.embeddings.dim, 4);
  EXPECT_EQ(image.owners[0].path, "/photos/a.jpg");
  EXPECT_EQ(image.owners[0].caption_index, -1);
  EXPECT_EQ(image.owners[0].caption, f.captions[0].text);  // the file's first caption
  EXPECT_FLOAT_EQ(image.embeddings.item(0)[7], 1.0f + 0.007f);
  EXPECT_FLOAT_EQ(image.embeddings.item(1)[0], 2.0f);

  const LoadedVectors text = store.load_vectors("blip@1", "/photos", VectorKind::kTextProj);
  ASSERT_EQ(text.embeddings.count, 3);  // a.jpg has two captions, b.jpg one
  EXPECT_EQ(text.owners[1].caption_index, 1);
  EXPECT_EQ(text.owners[1].caption, f.captions[1].text);
  EXPECT_EQ(text.owners[1].caption_en, "english text");
  EXPECT_FLOAT_EQ(text.embeddings.item(1)[0], 2.0f);  // seed + caption index

  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(IndexStore, UpsertReplacesEverythingOfThatModelOnly) {
  const fs::path dir = fresh_dir("replace");
  IndexStore store(dir / "index.sqlite3");
  store.upsert_batch("m1", {make_file("/p/a.jpg", 1.0f, 3)});
  store.upsert_batch("m2", {make_file("/p/a.jpg", 5.0f, 1)});
  IndexedFile changed = make_file("/p/a.jpg", 9.0f, 1);
  changed.state.size = 42;
  store.upsert_batch("m1", {changed});

  EXPECT_EQ(store.find_file("m1", "/p/a.jpg")->size, 42);
  EXPECT_EQ(store.load_vectors("m1", "/p", VectorKind::kTextProj).embeddings.count, 1);
  EXPECT_EQ(store.find_file("m2", "/p/a.jpg")->size, 1005);
  EXPECT_FLOAT_EQ(store.load_vectors("m2", "/p", VectorKind::kImageProj).embeddings.values[0],
                  5.0f);
  const auto usage = store.models_in_scope("/p");
  ASSERT_EQ(usage.size(), 2u);
  EXPECT_EQ(store.models(), (std::vector<std::string>{"m1", "m2"}));
}

TEST(IndexStore, ScopePrefixIsAPathPrefixNotAStringPrefix) {
  const fs::path dir = fresh_dir("scope");
  IndexStore store(dir / "index.sqlite3");
  store.upsert_batch(
      "m", {make_file("/a/b/x.jpg", 1), make_file("/a/bc/y.jpg", 2), make_file("/a/b-c/z.jpg", 3),
            make_file("/a/b/sub/w.jpg", 4), make_file("/a/b%/v.jpg", 5), make_file("/A/B/u.jpg", 6),
            make_file("/a/b", 7)});
  std::set<std::string> got;
  for (const auto& f : store.list_files("m", "/a/b")) got.insert(f.state.path);
  EXPECT_EQ(got, (std::set<std::string>{"/a/b", "/a/b/x.jpg", "/a/b/sub/w.jpg"}));
  got.clear();
  for (const auto& f : store.list_files("m", "/a/b/")) got.insert(f.state.path);
  EXPECT_EQ(got.size(), 3u);                             // a trailing slash means the same folder
  EXPECT_EQ(store.list_files("m", "/a/b%").size(), 1u);  // no LIKE wildcards
  EXPECT_EQ(store.list_files("m", "/").size(), 7u);
  EXPECT_EQ(store.file_states("m", "/a/bc").size(), 1u);
  EXPECT_EQ(store.load_vectors("m", "/a/b", VectorKind::kImageProj).embeddings.count, 3);
  EXPECT_TRUE(store.models_in_scope("/elsewhere").empty());
  EXPECT_EQ(store.models_in_scope("/a/b-c").at(0).file_count, 1);
  // The folder's own row, the rows below it, neither its string-prefix siblings.
  EXPECT_EQ(store.models_in_scope("/a/b").at(0).file_count, 3);
  EXPECT_EQ(store.models_in_scope("/a/b/x.jpg").at(0).file_count, 1);
  EXPECT_EQ(store.model_ids_in_scope("/a/b"), std::vector<std::string>{"m"});
  EXPECT_TRUE(store.model_ids_in_scope("/a/b/nothing").empty());
  EXPECT_TRUE(store.model_ids_in_scope("/a/bd").empty());
}

TEST(IndexStore, ModelsInScopeMostFilesFirst) {
  const fs::path dir = fresh_dir("models_in_scope");
  IndexStore store(dir / "index.sqlite3");
  store.upsert_batch("few", {make_file("/p/a.jpg", 1), make_file("/q/a.jpg", 2),
                             make_file("/q/b.jpg", 3), make_file("/q/c.jpg", 4)});
  store.upsert_batch("many", {make_file("/p/a.jpg", 1), make_file("/p/b.jpg", 2)});
  const auto usage = store.models_in_scope("/p");
  ASSERT_EQ(usage.size(), 2u);
  EXPECT_EQ(usage[0].model_id, "many");
  EXPECT_EQ(usage[0].file_count, 2);
  EXPECT_EQ(usage[1].model_id, "few");
  EXPECT_EQ(usage[1].file_count, 1);
  EXPECT_EQ(store.models_in_scope("/").at(0).model_id, "few");  // 4 files against 2
  EXPECT_EQ(store.model_ids_in_scope("/p"), (std::vector<std::string>{"few", "many"}));
  EXPECT_EQ(store.model_ids_in_scope("/q"), std::vector<std::string>{"few"});
}

TEST(IndexStore, ContentHashReuse) {
  const fs::path dir = fresh_dir("reuse");
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);
  IndexedFile original = make_file("/p/original.jpg", 3.0f, 1);
  original.state.content_hash = "xxh64:00000000deadbeef";
  store.upsert_batch("m", {original});
  const auto found = store.find_by_content_hash("m", "xxh64:00000000deadbeef", original.state.size);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->state.path, "/p/original.jpg");
  ASSERT_EQ(found->vectors.size(), original.vectors.size());
  for (const StoredVectors& v : found->vectors) {
    bool matched = false;
    for (const StoredVectors& w : original.vectors) {
      if (w.kind == v.kind && w.caption_index == v.caption_index) {
        EXPECT_EQ(w.values, v.values);
        matched = true;
      }
    }
    EXPECT_TRUE(matched) << to_string(v.kind);
  }
  EXPECT_FALSE(store.find_by_content_hash("m", "xxh64:00000000deadbeef", 1).has_value());
  EXPECT_FALSE(store.find_by_content_hash("other", "xxh64:00000000deadbeef", original.state.size));

  // A rename: the new path reuses the found vectors, then the old path leaves the index.
  IndexedFile renamed = *found;
  renamed.state.path = "/p/renamed.jpg";
  store.upsert_batch("m", {renamed});
  EXPECT_EQ(store.remove_paths("m", {"/p/original.jpg", "/p/never-there.jpg"}), 1);
  EXPECT_EQ(store.load_vectors("m", "/p", VectorKind::kMultimodal).owners.at(0).path,
            "/p/renamed.jpg");
}

TEST(IndexStore, RejectsBadShapesWithoutWritingAnything) {
  const fs::path dir = fresh_dir("shapes");
  IndexStore store(dir / "index.sqlite3");
  IndexedFile bad = make_file("/p/bad.jpg", 1);
  bad.vectors[0].values.pop_back();
  try {
    store.upsert_batch("m", {make_file("/p/good.jpg", 2), bad});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("/p/bad.jpg"), std::string::npos);
  }
  EXPECT_TRUE(store.list_files("m", "/").empty());
  IndexedFile bad_caption = make_file("/p/c.jpg", 1);
  bad_caption.vectors.push_back(block(VectorKind::kTextProj, 5, 1, 4, 0));
  EXPECT_THROW(store.upsert_batch("m", {bad_caption}), Error);
}

TEST(IndexStore, MixedShapesOnLoadAreAnIndexError) {
  const fs::path dir = fresh_dir("mixed");
  IndexStore store(dir / "index.sqlite3");
  IndexedFile other = make_file("/p/b.jpg", 1);
  other.vectors[0] = block(VectorKind::kImageProj, -1, 1, 4, 0);
  // One batch must agree in shape (its segment holds one shape per kind)...
  EXPECT_THROW(store.upsert_batch("m", {make_file("/p/a.jpg", 1), other}), Error);
  // ...two batches may not, and reading them together is an index error.
  store.upsert_batch("m", {make_file("/p/a.jpg", 1)});
  store.upsert_batch("m", {other});
  try {
    store.load_vectors("m", "/p", VectorKind::kImageProj);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
    EXPECT_NE(message.find((dir / "index.sqlite3").string()), std::string::npos) << message;
    EXPECT_NE(message.find("/p/b.jpg"), std::string::npos) << message;
    // The library says what is wrong; which command fixes it is the caller's to say.
    EXPECT_EQ(message.find("mmsearch "), std::string::npos) << message;
    EXPECT_EQ(message.find("--"), std::string::npos) << message;
  }
}

TEST(IndexStore, RefusesNewerSchemaAndForeignDatabases) {
  const fs::path dir = fresh_dir("version");
  { IndexStore store(dir / "index.sqlite3"); }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "index.sqlite3").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr,
                           nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  try {
    IndexStore store(dir / "index.sqlite3");
    FAIL() << "opened a newer schema";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newer mmsearch"), std::string::npos) << e.what();
  }

  // Another program's SQLite database is not touched.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "foreign.db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  EXPECT_THROW(IndexStore(dir / "foreign.db"), Error);

  // Not a database at all.
  std::ofstream(dir / "garbage.sqlite3") << std::string(4096, 'g');
  try {
    IndexStore store(dir / "garbage.sqlite3");
    FAIL() << "opened garbage";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
  }

  // Read-only mode never creates a store.
  EXPECT_THROW(IndexStore(dir / "absent.sqlite3", IndexStore::Mode::kReadOnly), Error);
  EXPECT_FALSE(fs::exists(dir / "absent.sqlite3"));
}

TEST(IndexStore, CreatesParentFoldersAndUsesWal) {
  const fs::path dir = fresh_dir("create");
  const fs::path path = dir / "deep" / "er" / "index.sqlite3";
  { IndexStore store(path); }
  ASSERT_TRUE(fs::exists(path));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  IndexStore read_only(path, IndexStore::Mode::kReadOnly);
  EXPECT_THROW(read_only.upsert_batch("m", {make_file("/x", 1)}), Error);
}

TEST(IndexStore, ReadersSeeCommittedBatchesWhileAWriterIsOpen) {
  const fs::path dir = fresh_dir("readers");
  IndexStore writer(dir / "index.sqlite3");
  writer.upsert_batch("m", {make_file("/p/a.jpg", 1)});
  IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  EXPECT_EQ(reader.list_files("m", "/p").size(), 1u);
  writer.upsert_batch("m", {make_file("/p/b.jpg", 2)});
  EXPECT_EQ(reader.list_files("m", "/p").size(), 2u);
}

// kill -9 at a random moment while a child writes batches: the store must open, pass
// integrity_check, and hold every batch the child reported committed (plus possibly the one
// in flight, complete or absent, never half).
TEST(IndexStore, SurvivesSigkillDuringWrites) {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 4; ++trial) {
    const fs::path dir = fresh_dir("crash" + std::to_string(trial));
    const fs::path path = dir / "index.sqlite3";
    constexpr int kFilesPerBatch = 20;
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(pipe_fds[0]);
      try {
        IndexStore store(path);
        for (int batch = 0;; ++batch) {
          std::vector<IndexedFile> files;
          for (int i = 0; i < kFilesPerBatch; ++i) {
            IndexedFile f = make_file("/c/" + std::to_string(batch) + "/" + std::to_string(i),
                                      static_cast<float>(batch), 1);
            // BLIP-2-sized blocks make each commit take a while, so kills land mid-write.
            f.vectors[0] = block(VectorKind::kImageProj, -1, 32, 256, static_cast<float>(batch));
            files.push_back(std::move(f));
          }
          store.upsert_batch("m", files);
          if (write(pipe_fds[1], &batch, sizeof batch) != sizeof batch) _exit(3);
        }
      } catch (...) {
        _exit(2);
      }
    }
    close(pipe_fds[1]);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(30, 400)(rng)));
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself, status " << status;
    int last_committed = -1, batch = 0;
    while (read(pipe_fds[0], &batch, sizeof batch) == sizeof batch) last_committed = batch;
    close(pipe_fds[0]);

    IndexStore store(path);
    EXPECT_EQ(store.integrity_check(), "ok");
    std::map<int, int> files_per_batch;
    for (const FileListing& f : store.list_files("m", "/c")) {
      const std::string rest = f.state.path.substr(3);
      files_per_batch[std::stoi(rest.substr(0, rest.find('/')))]++;
    }
    for (int b = 0; b <= last_committed; ++b) {
      EXPECT_EQ(files_per_batch[b], kFilesPerBatch) << "committed batch " << b << " lost";
    }
    for (const auto& [b, n] : files_per_batch) {
      EXPECT_EQ(n, kFilesPerBatch) << "batch " << b << " is half written";
      EXPECT_LE(b, last_committed + 1) << "a batch appeared that was never written";
    }
    const LoadedVectors v = store.load_vectors("m", "/c", VectorKind::kImageProj);
    EXPECT_EQ(v.embeddings.count,
              static_cast<std::int64_t>(files_per_batch.size()) * kFilesPerBatch);
    // A rerun resumes: the store still takes writes.
    store.upsert_batch("m", {make_file("/c/after", 1)});
    EXPECT_TRUE(store.find_file("m", "/c/after").has_value());
    std::cout << "trial " << trial << ": " << last_committed + 1 << " batches reported, "
              << files_per_batch.size() << " present\n";
  }
}

TEST(IndexStore, TranslationCacheRoundTripsPerTranslator) {
  const fs::path dir = fresh_dir("translations");
  IndexStore store(dir / "index.sqlite3");
  EXPECT_TRUE(store.find_translations("mt@1", {"ciao"}).empty());
  store.put_translations("mt@1", {{"ciao", "hello"}, {"lasagne al ragù", "lasagna with ragù"}});
  store.put_translations("mt@2", {{"ciao", "hi"}});

  const auto found =
      store.find_translations("mt@1", {"ciao", "ciao", "assente", "lasagne al ragù"});
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found.at("ciao"), "hello");
  EXPECT_EQ(found.at("lasagne al ragù"), "lasagna with ragù");
  EXPECT_EQ(store.find_translations("mt@2", {"ciao"}).at("ciao"), "hi");  // per translator
  EXPECT_TRUE(store.find_translations("mt@3", {"ciao"}).empty());

  // Replacing an entry, an empty translation, and an empty batch.
  store.put_translations("mt@1", {{"ciao", "hello!"}, {"   ", ""}});
  store.put_translations("mt@1", {});
  EXPECT_EQ(store.find_translations("mt@1", {"ciao"}).at("ciao"), "hello!");
  EXPECT_EQ(store.find_translations("mt@1", {"   "}).at("   "), "");
  EXPECT_THROW(store.put_translations("", {{"a", "b"}}), Error);

  // Persistent, readable read-only; writing read-only is refused.
  {
    const IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
    EXPECT_EQ(reader.find_translations("mt@1", {"ciao"}).at("ciao"), "hello!");
  }
  IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  EXPECT_THROW(reader.put_translations("mt@1", {{"a", "b"}}), Error);
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(IndexStore, ModelUsageListsEveryModelWithItsFileCount) {
  const fs::path dir = fresh_dir("usage");
  IndexStore store(dir / "index.sqlite3");
  EXPECT_TRUE(store.model_usage().empty());
  store.upsert_batch("b@2", {make_file("/p/a.jpg", 1)});
  store.upsert_batch("a@1", {make_file("/p/a.jpg", 1), make_file("/q/b.jpg", 2)});
  store.upsert_batch("c@3", {make_file("/p/c.jpg", 3)});
  store.remove_paths("c@3", {"/p/c.jpg"});  // a model whose files are all gone still shows
  const auto usage = store.model_usage();
  ASSERT_EQ(usage.size(), 3u);
  EXPECT_EQ(usage[0].model_id, "a@1");
  EXPECT_EQ(usage[0].file_count, 2);
  EXPECT_EQ(usage[1].model_id, "b@2");
  EXPECT_EQ(usage[1].file_count, 1);
  EXPECT_EQ(usage[2].model_id, "c@3");
  EXPECT_EQ(usage[2].file_count, 0);
  EXPECT_EQ(store.models(), (std::vector<std::string>{"a@1", "b@2", "c@3"}));
}

TEST(IndexStore, RemoveModelDeletesThatModelOnly) {
  const fs::path dir = fresh_dir("remove_model");
  IndexStore store(dir / "index.sqlite3");
  // make_file(..., captions): 2 image blocks + 2 blocks per caption.
  store.upsert_batch("old@1", {make_file("/p/a.jpg", 1, 2), make_file("/p/b.jpg", 2, 1)});
  store.upsert_batch("new@2", {make_file("/p/a.jpg", 5, 1)});
  store.put_translations("mt@1", {{"ciao", "hello"}});

  const RemovedRows removed = store.remove_model("old@1");
  EXPECT_EQ(removed.files, 2);
  EXPECT_EQ(removed.captions, 3);
  EXPECT_EQ(removed.vectors, 2 + 4 + 2 + 2);
  EXPECT_EQ(store.models(), std::vector<std::string>{"new@2"});
  EXPECT_TRUE(store.list_files("old@1", "/").empty());
  EXPECT_FALSE(store.find_file("old@1", "/p/a.jpg").has_value());
  // Nothing of old@1 is left behind in any table, and the rest is untouched.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "index.sqlite3").c_str(), &db), SQLITE_OK);
  // new@2 is left: 1 file, 1 caption, one segment (its 2 image + 2 caption blocks).
  for (const auto& [table, expected] : std::vector<std::pair<std::string, int>>{
           {"files", 1}, {"captions", 1}, {"vectors", 0}, {"segments", 1}}) {
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, ("SELECT count(*) FROM " + table).c_str(), -1, &q, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(q, 0), expected) << table;
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  std::size_t segment_files = 0;
  for (const auto& entry : fs::directory_iterator(dir / "index.sqlite3.segments")) {
    segment_files += entry.path().extension() == ".seg";
  }
  EXPECT_EQ(segment_files, 1u) << "old@1's segment files were not deleted";
  EXPECT_EQ(store.load_vectors("new@2", "/p", VectorKind::kImageProj).embeddings.count, 1);
  EXPECT_EQ(store.find_translations("mt@1", {"ciao"}).at("ciao"), "hello");

  // Unknown (or already removed) models remove nothing; the id can be used again.
  const RemovedRows none = store.remove_model("old@1");
  EXPECT_EQ(none.files + none.captions + none.vectors, 0);
  store.upsert_batch("old@1", {make_file("/p/z.jpg", 9)});
  EXPECT_EQ(store.list_files("old@1", "/p").size(), 1u);
  EXPECT_EQ(store.integrity_check(), "ok");

  IndexStore reader(dir / "index.sqlite3", IndexStore::Mode::kReadOnly);
  EXPECT_THROW(reader.remove_model("new@2"), Error);
}

TEST(IndexStore, VacuumReturnsTheSpaceOfRemovedModels) {
  const fs::path dir = fresh_dir("vacuum");
  const fs::path path = dir / "index.sqlite3";
  IndexStore store(path);
  std::vector<IndexedFile> files;
  for (int i = 0; i < 40; ++i) {
    IndexedFile f = make_file("/p/" + std::to_string(i) + ".jpg", static_cast<float>(i));
    f.vectors[0] = block(VectorKind::kImageProj, -1, 32, 256, static_cast<float>(i));  // 32 KiB
    files.push_back(std::move(f));
  }
  store.upsert_batch("big@1", files);
  store.upsert_batch("small@1", {make_file("/p/0.jpg", 1)});
  EXPECT_EQ(store.free_bytes(), 0);
  const auto segments_bytes = [&] {
    std::uintmax_t bytes = 0;
    for (const auto& entry : fs::directory_iterator(path.string() + ".segments")) {
      bytes += fs::file_size(entry.path());
    }
    return bytes;
  };
  EXPECT_GT(segments_bytes(), 40u * 32 * 256 * 2);  // fp16 vectors
  const RemovedRows removed = store.remove_model("big@1");
  EXPECT_EQ(removed.files, 40);
  // Vectors live in segment files, deleted with the model: their space is back at once.
  EXPECT_LT(segments_bytes(), 32u * 256 * 2);
  // The database keeps the free pages of the removed rows until vacuum().
  const std::int64_t free_before = store.free_bytes();
  // Until a checkpoint, committed pages live in the write-ahead log next to the file.
  const auto disk_usage = [&] {
    std::error_code ec;
    const auto wal = fs::file_size(path.string() + "-wal", ec);
    return fs::file_size(path) + (ec ? 0 : wal);
  };
  const auto size_before = disk_usage();

  const std::int64_t freed = store.vacuum();
  EXPECT_GE(freed, free_before);
  EXPECT_EQ(store.free_bytes(), 0);
  EXPECT_LE(disk_usage(), size_before) << "the store grew on disk";
  EXPECT_EQ(store.list_files("small@1", "/p").size(), 1u);
  EXPECT_EQ(store.integrity_check(), "ok");

  IndexStore reader(path, IndexStore::Mode::kReadOnly);
  try {
    reader.vacuum();
    FAIL() << "vacuumed a read-only store";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
  }
}
