// libFuzzer target for the store reader (src/store*.cpp, src/sqlite_db.cpp, src/segment*.cpp,
// src/ann_index.cpp): a mutated store is written into a scratch folder, opened read-only and
// queried the way the commands read it (models and counts, listings, the incremental check's
// lookups, loading vectors, search, samples, the translation cache, integrity). Any bytes must
// give results or mmsearch::Error (kIndex, or kUsage for a query shape the damaged store no
// longer fits), never a crash, another exception, a sanitizer report, or an allocation beyond
// libFuzzer's -malloc_limit_mb.
//
// Input: either the bytes of the database file alone, or a bundle of the database and the
// files beside it:
//   "mmsfuzz1"  u8 flags  u32le db_size  db bytes  then records { u8 name_size  name
//               u32le size  bytes }  each a file of <db>.segments/ (segments and ANN indexes)
// flags bit 0: after the read-only pass, open the store read-write too (migration, recovery of
// orphan segments and old BLOB vectors) and read it again. Sizes past the end are cut to what
// is there; names keep only [0-9a-zA-Z._-] so nothing is written outside the scratch folder.
// tests/fuzz/make_corpus.py makes seeds of this form from stores the binary wrote.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMagic = "mmsfuzz1";
constexpr std::size_t kMaxModels = 3;
constexpr std::size_t kMaxFiles = 4;  // files whose lookups are tried per model

void check(bool condition) {
  if (!condition) std::abort();
}

using fuzz_support::write_bytes;

const fs::path& scratch() {
  static const fs::path dir = fuzz_support::process_scratch_dir("store");
  return dir;
}

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    const std::size_t n = std::min<std::size_t>(4, size_ - at_);
    std::memcpy(&v, data_ + at_, n);
    at_ += n;
    return v;
  }
  std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  // Up to `n` bytes (fewer at the end).
  std::string_view bytes(std::size_t n) {
    n = std::min(n, size_ - at_);
    std::string_view out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

// Writes the store the input describes; returns whether to open it read-write as well.
bool unpack(const std::uint8_t* data, std::size_t size, const fs::path& db) {
  const fs::path segments = db.string() + ".segments";
  if (size < kMagic.size() || std::memcmp(data, kMagic.data(), kMagic.size()) != 0) {
    write_bytes(db, data, size);
    return false;
  }
  Reader in(data + kMagic.size(), size - kMagic.size());
  const std::uint8_t flags = in.u8();
  const std::string_view db_bytes = in.bytes(in.u32());
  write_bytes(db, reinterpret_cast<const std::uint8_t*>(db_bytes.data()), db_bytes.size());
  for (int files = 0; !in.done() && files < 16; ++files) {
    if (files == 0) fs::create_directories(segments);
    std::string name(in.bytes(in.u8()));
    name.erase(std::remove_if(name.begin(), name.end(),
                              [](char c) {
                                return !(std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                                         c == '_' || c == '-');
                              }),
               name.end());
    const std::string_view bytes = in.bytes(in.u32());
    if (name.empty() || name == "." || name == "..") continue;
    write_bytes(segments / name, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  return (flags & 1) != 0;
}

// MMSEARCH_FUZZ_VERBOSE=1 prints why each read failed and what searches found (to see which
// paths a seed reaches).
bool verbose() {
  static const bool on = std::getenv("MMSEARCH_FUZZ_VERBOSE") != nullptr;
  return on;
}

// Runs one read; a clean failure is fine, anything else is a finding.
template <typename Body>
void attempt(Body&& body) {
  try {
    body();
  } catch (const mmsearch::Error& error) {
    if (verbose()) std::fprintf(stderr, "fuzz_store: %s\n", error.what());
    check(error.kind() == mmsearch::ErrorKind::kIndex ||
          error.kind() == mmsearch::ErrorKind::kUsage);
  }
}

constexpr mmsearch::VectorKind kKinds[] = {
    mmsearch::VectorKind::kImageProj, mmsearch::VectorKind::kImageEmbed,
    mmsearch::VectorKind::kTextProj, mmsearch::VectorKind::kMultimodal};

void search(const mmsearch::IndexStore& store, const std::string& model, const fs::path& scope,
            mmsearch::VectorKind kind, int vectors_per_item, int dim) {
  for (const bool exact : {false, true}) {
    attempt([&] {
      mmsearch::SearchRequest request;
      request.kind = kind;
      request.k = 3;
      request.exact = exact;
      request.max_rescored = exact ? 0 : 2;
      mmsearch::SearchTerm term;
      term.query.count = 1;
      term.query.vectors_per_item = 1;
      term.query.dim = dim;
      term.query.values.assign(static_cast<std::size_t>(dim), 0.0f);
      if (dim > 0) term.query.values[0] = 1.0f;
      term.rule =
          vectors_per_item > 1 ? mmsearch::ScoreRule::kMaxOverQueries : mmsearch::ScoreRule::kCls;
      request.terms.push_back(term);
      if (exact) {
        term.rule = mmsearch::ScoreRule::kMeanOfQueries;
        term.weight = -0.5f;
        request.terms.push_back(term);
      }
      const mmsearch::SearchResult result = store.search(model, scope, request);
      check(static_cast<std::int64_t>(result.matches.size()) <= request.k);
      if (verbose()) {
        std::fprintf(stderr, "fuzz_store: search %s %s in %s: %zu matches of %lld%s\n",
                     model.c_str(), mmsearch::to_string(kind), scope.c_str(), result.matches.size(),
                     static_cast<long long>(result.searched),
                     result.approximate ? " (approximate)" : "");
      }
      for (const mmsearch::SearchMatch& m : result.matches) {
        check(m.term_scores.size() == request.terms.size());
      }
    });
  }
}

void read_model(const mmsearch::IndexStore& store, const std::string& model) {
  std::vector<mmsearch::FileListing> files;
  attempt([&] { files = store.list_files(model, "/"); });
  attempt([&] { (void)store.file_states(model, "/"); });
  for (std::size_t i = 0; i < files.size() && i < kMaxFiles; ++i) {
    const mmsearch::FileState& state = files[i].state;
    attempt([&] {
      if (state.path.empty() || state.path[0] != '/') return;
      (void)store.find_file(model, state.path);
    });
    attempt([&] { (void)store.find_by_content_hash(model, state.content_hash, state.size); });
  }
  attempt([&] {
    std::size_t visited = 0;
    store.visit_files(model, "/", 2, [&](std::vector<mmsearch::IndexedFile>& batch) {
      check(batch.size() <= 2);
      visited += batch.size();
    });
  });
  attempt([&] { (void)store.sample_files(model, 2, 7); });
  // A scope below the root too: the segments not wholly inside it read their rows from SQLite.
  fs::path narrow = "/";
  if (!files.empty() && !files[0].state.path.empty() && files[0].state.path[0] == '/') {
    narrow = fs::path(files[0].state.path).parent_path();
  }
  for (const mmsearch::VectorKind kind : kKinds) {
    attempt([&] { (void)store.ann_info(model, kind); });
    int vectors_per_item = 1, dim = 8;
    attempt([&] {
      const mmsearch::LoadedVectors loaded = store.load_vectors(model, "/", kind);
      const mmsearch::Embeddings& e = loaded.embeddings;
      check(static_cast<std::int64_t>(loaded.owners.size()) == e.count);
      check(e.values.size() == static_cast<std::size_t>(e.count) *
                                   static_cast<std::size_t>(e.vectors_per_item) *
                                   static_cast<std::size_t>(e.dim));
      if (e.count > 0) {
        vectors_per_item = e.vectors_per_item;
        dim = e.dim;
      }
    });
    search(store, model, "/", kind, vectors_per_item, dim);
    if (narrow != "/") search(store, model, narrow, kind, vectors_per_item, dim);
  }
}

void read_store(const mmsearch::IndexStore& store) {
  check(store.schema_version() >= 1 &&
        store.schema_version() <= mmsearch::IndexStore::kSchemaVersion);
  std::vector<std::string> models;
  attempt([&] { models = store.models(); });
  attempt([&] { (void)store.model_usage(); });
  attempt([&] { (void)store.models_in_scope("/"); });
  attempt([&] { (void)store.model_ids_in_scope("/"); });
  for (std::size_t m = 0; m < models.size() && m < kMaxModels; ++m) read_model(store, models[m]);
  attempt([&] { (void)store.find_translations("opus-mt-it-en@0", {"pizza", "", "pizza"}); });
  attempt([&] { (void)store.free_bytes(); });
  attempt([&] { (void)store.integrity_check(); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The store logs its recoveries (moved vectors, removed orphans): noise at thousands of runs.
  static const bool quiet = [] {
    if (!verbose()) spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  const fs::path& dir = scratch();
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const fs::path db = dir / "index.sqlite3";
  const bool read_write = unpack(data, size, db);

  attempt([&] {
    const mmsearch::IndexStore store(db, mmsearch::IndexStore::Mode::kReadOnly, 0);
    read_store(store);
  });
  if (read_write) {
    attempt([&] {
      mmsearch::IndexStore store(db, mmsearch::IndexStore::Mode::kReadWrite, 0);
      read_store(store);
      // Writes that touch no file of the store but run its bookkeeping after a write.
      for (const std::string& model : store.models()) {
        store.remove_paths(model, {"/nonexistent/fuzz.jpg"});
        break;
      }
      store.put_translations("fuzz@0", {{"pizza", "pizza"}});
    });
  }
  fs::remove_all(dir, ec);
  return 0;
}
