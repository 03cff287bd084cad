// Store throughput (prints numbers; asserts nothing).
//   bench_index [dir=/tmp/mmsearch-bench-index] [files=2000] [batch=32]
// Writes BLIP-sized and BLIP-2-sized records, then times the incremental check of 1,000
// unchanged files (one scope query, and 1,000 point lookups) and loading a scope's vectors.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "mmsearch/index.h"

using namespace mmsearch;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

StoredVectors block(VectorKind kind, int caption, int rows, int cols) {
  StoredVectors v{kind, caption, rows, cols,
                  std::vector<float>(static_cast<std::size_t>(rows) * cols, 0.01f)};
  return v;
}

IndexedFile make_file(const std::string& path, bool blip2) {
  IndexedFile f;
  f.state = {path, 123456, 1700000000000000000LL, "xxh64:0123456789abcdef"};
  f.category = "pizza";
  f.captions.push_back({"A whole pizza cut into slices, topped with tomato and olives.", ""});
  f.vectors.push_back(block(VectorKind::kImageProj, -1, blip2 ? 32 : 1, 256));
  f.vectors.push_back(block(VectorKind::kImageEmbed, -1, 1, 768));
  f.vectors.push_back(block(VectorKind::kTextProj, 0, 1, 256));
  f.vectors.push_back(block(VectorKind::kMultimodal, 0, 1, 768));
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "/tmp/mmsearch-bench-index";
  const int files = argc > 2 ? std::atoi(argv[2]) : 2000;
  const int batch = argc > 3 ? std::atoi(argv[3]) : 32;
  std::filesystem::remove_all(dir);
  IndexStore store(dir / "index.sqlite3");

  for (const bool blip2 : {false, true}) {
    const std::string model = blip2 ? "blip2-like" : "blip-like";
    const std::string root = "/photos/" + model;
    const auto t0 = Clock::now();
    std::vector<IndexedFile> pending;
    for (int i = 0; i < files; ++i) {
      pending.push_back(make_file(root + "/img" + std::to_string(i) + ".jpg", blip2));
      if (static_cast<int>(pending.size()) == batch || i + 1 == files) {
        store.upsert_batch(model, pending);
        pending.clear();
      }
    }
    const double insert_ms = ms_since(t0);
    std::printf(
        "%-10s insert %d files in batches of %d: %8.1f ms  (%.0f files/s, %.2f ms/commit)\n",
        model.c_str(), files, batch, insert_ms, files / (insert_ms / 1e3),
        insert_ms / ((files + batch - 1) / batch));

    auto t1 = Clock::now();
    const auto states = store.file_states(model, root);
    int unchanged = 0;
    for (int i = 0; i < 1000 && i < files; ++i) {
      const auto it = states.find(root + "/img" + std::to_string(i) + ".jpg");
      unchanged += it != states.end() && it->second.size == 123456;
    }
    std::printf("%-10s incremental check, 1,000 unchanged files, one scope query: %6.2f ms (%d)\n",
                model.c_str(), ms_since(t1), unchanged);
    t1 = Clock::now();
    unchanged = 0;
    for (int i = 0; i < 1000 && i < files; ++i) {
      unchanged += store.find_file(model, root + "/img" + std::to_string(i) + ".jpg").has_value();
    }
    std::printf("%-10s incremental check, 1,000 unchanged files, point lookups:   %6.2f ms (%d)\n",
                model.c_str(), ms_since(t1), unchanged);
    t1 = Clock::now();
    const LoadedVectors loaded = store.load_vectors(model, root, VectorKind::kImageProj);
    std::printf("%-10s load_vectors image_proj %lld x %d x %d: %6.1f ms\n", model.c_str(),
                static_cast<long long>(loaded.embeddings.count), loaded.embeddings.vectors_per_item,
                loaded.embeddings.dim, ms_since(t1));
  }
  std::printf("store size: %.1f MB\n", (std::filesystem::file_size(dir / "index.sqlite3") +
                                        (std::filesystem::exists(dir / "index.sqlite3-wal")
                                             ? std::filesystem::file_size(dir / "index.sqlite3-wal")
                                             : 0)) /
                                           1e6);
  return 0;
}
