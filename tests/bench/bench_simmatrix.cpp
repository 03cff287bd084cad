// simmatrix and eval at scale: time and peak memory of the streamed paths on a synthetic store
// (prints numbers; asserts nothing).
//   bench_simmatrix [files=20000] [dim=256] [dir=/tmp/mmsearch-bench-simmatrix]
// Each stage runs in its own forked process, so "peak RSS" is that stage's own high-water mark
// (getrusage of the child), not the largest of all stages before it.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "../cpp/synthetic_store.h"
#include "mmsearch/bundle.h"
#include "mmsearch/eval.h"
#include "mmsearch/index.h"
#include "mmsearch/simmatrix.h"

using namespace mmsearch;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs `stage` in a child process and prints its wall time and peak RSS after what it printed.
void run_stage(const char* name, const std::function<std::string()>& stage) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    const auto t0 = Clock::now();
    std::string detail;
    try {
      detail = stage();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s failed: %s\n", name, e.what());
      std::_Exit(1);
    }
    const double s = seconds_since(t0);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("%-44s %8.2f s  peak RSS %8.1f MiB  %s\n", name, s, usage.ru_maxrss / 1024.0,
                detail.c_str());
    std::fflush(stdout);
    std::_Exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::exit(1);
}

std::string mib(std::uintmax_t bytes) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.1f MiB", bytes / 1048576.0);
  return buffer;
}

}  // namespace

int main(int argc, char** argv) {
  test_support::SyntheticStore spec;
  spec.files = argc > 1 ? std::atoll(argv[1]) : 20000;
  spec.dim = argc > 2 ? std::atoi(argv[2]) : 256;
  const fs::path dir = argc > 3 ? argv[3] : "/tmp/mmsearch-bench-simmatrix";
  spec.categories = 20;
  spec.captions_per_file = 1;
  spec.shared_caption_every = 50;
  const fs::path db = dir / "index.sqlite3";
  fs::remove_all(dir);
  fs::create_directories(dir);

  Manifest manifest;  // BLIP: CLS rule on both pairings
  manifest.name = "bench-blip";
  manifest.family = Family::kBlip;
  const long long n = spec.files;
  std::printf("%lld files, %d categories, dim %d, BLIP (cls) rules, %ld CPUs\n", n, spec.categories,
              spec.dim, sysconf(_SC_NPROCESSORS_ONLN));

  run_stage("build store (upsert_batch, 256 per batch)", [&] {
    IndexStore store(db);
    test_support::fill_synthetic_store(store, "bench", spec);
    return "store " + mib(fs::file_size(db));
  });
  run_stage("load_similarity_sides image-image", [&] {
    const IndexStore store(db, IndexStore::Mode::kReadOnly);
    const auto sides =
        load_similarity_sides(store, manifest, "bench", spec.root, SimilarityKind::kImageImage);
    return std::to_string(sides.rows.size()) + " x " + std::to_string(sides.cols.size());
  });
  run_stage("simmatrix --csv image-image (streamed)", [&] {
    const IndexStore store(db, IndexStore::Mode::kReadOnly);
    const auto sides =
        load_similarity_sides(store, manifest, "bench", spec.root, SimilarityKind::kImageImage);
    const fs::path csv = dir / "image-image.csv";
    write_similarity_csv(sides, csv);
    const std::uintmax_t size = fs::file_size(csv);
    fs::remove(csv);
    return std::to_string(n) + " x " + std::to_string(n) + " CSV " + mib(size);
  });
  // For contrast: the whole matrix in memory, as simmatrix held it before streaming (the old
  // eval held three such matrices at once).
  run_stage("whole image-image matrix in memory", [&] {
    const IndexStore store(db, IndexStore::Mode::kReadOnly);
    const SimilarityMatrix m =
        build_similarity_matrix(store, manifest, "bench", spec.root, SimilarityKind::kImageImage);
    return mib(m.scores.size() * sizeof(float)) + " of scores";
  });
  run_stage("simmatrix --sample 2000 image-text (picture)", [&] {
    const IndexStore store(db, IndexStore::Mode::kReadOnly);
    const auto sides = load_similarity_sides(store, manifest, "bench", spec.root,
                                             SimilarityKind::kImageText, {2000, 1});
    const SimilarityMatrix m = compute_similarity_matrix(sides);
    return "2000 x 2000 in memory (" + mib(m.scores.size() * sizeof(float)) + "), no PNG drawn";
  });
  run_stage("eval (streamed, every query)", [&] {
    const IndexStore store(db, IndexStore::Mode::kReadOnly);
    const EvalReport r = evaluate_stored(store, manifest, "bench", spec.root);
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, "%lld + 2 x %lld queries, t->i R@10 %.3f, P@5 %.3f",
                  static_cast<long long>(r.caption_queries),
                  static_cast<long long>(r.image_queries), r.text_to_image.r10,
                  r.image_to_image.precision);
    return std::string(buffer);
  });
  run_stage("eval --sample 1000", [&] {
    const IndexStore store(db, IndexStore::Mode::kReadOnly);
    const EvalReport r = evaluate_stored(store, manifest, "bench", spec.root, {1000, 1});
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, "%lld + 2 x %lld queries, t->i R@10 %.3f, P@5 %.3f",
                  static_cast<long long>(r.caption_queries),
                  static_cast<long long>(r.image_queries), r.text_to_image.r10,
                  r.image_to_image.precision);
    return std::string(buffer);
  });
  fs::remove_all(dir);
  return 0;
}
