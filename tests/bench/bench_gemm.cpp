// The machine's matrix-product peaks, as mmsearch's own thread split sees them: fp32 sgemm
// (OpenBLAS) and bf16 GEMM (oneDNN in libtorch's OpenMP pool), on transformer-shaped products.
// scripts/bench.sh divides the image forward's rate by these. Prints one JSON object per dtype,
// asserts nothing. Usage: bench_gemm [threads=all] [seconds per shape=2]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "mmsearch/encoder.h"

namespace {

struct Shape {
  std::int64_t m, k, n;
};

// GFLOP/s of the fastest run of a × b within the time budget.
double best_gflops(const Shape& shape, torch::ScalarType dtype, double budget_seconds) {
  const torch::Tensor a = torch::randn({shape.m, shape.k}).to(dtype);
  const torch::Tensor b = torch::randn({shape.k, shape.n}).to(dtype);
  torch::Tensor c = torch::mm(a, b);  // warm-up: oneDNN creates its kernel here
  const double flop = 2.0 * shape.m * shape.k * shape.n;
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int run = 0;; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::max(best, flop / std::chrono::duration<double>(t1 - t0).count() / 1e9);
    if (run >= 3 && std::chrono::duration<double>(t1 - start).count() > budget_seconds) break;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int threads = argc > 1 ? std::max(1, std::stoi(argv[1])) : cores;
  const double budget = argc > 2 ? std::stod(argv[2]) : 2.0;
  // ViT-B/16 and ViT-L/14 at batch 8: attention projections and the MLP's two products.
  const Shape shapes[] = {{1576, 768, 768},   {1576, 768, 3072},  {1576, 3072, 768},
                          {2056, 1024, 1024}, {2056, 1024, 4096}, {2056, 4096, 1024}};
  for (const auto dtype :
       {mmsearch::InferenceDtype::kFloat32, mmsearch::InferenceDtype::kBFloat16}) {
    mmsearch::configure_threads(threads, dtype);
    const auto config = mmsearch::current_thread_config();
    const bool bf16 = dtype == mmsearch::InferenceDtype::kBFloat16;
    double peak = 0;
    std::string per_shape;
    for (const Shape& shape : shapes) {
      const double gflops = best_gflops(shape, bf16 ? torch::kBFloat16 : torch::kFloat32, budget);
      peak = std::max(peak, gflops);
      char row[96];
      std::snprintf(row, sizeof row, "%s\"%lldx%lldx%lld\": %.1f", per_shape.empty() ? "" : ", ",
                    static_cast<long long>(shape.m), static_cast<long long>(shape.k),
                    static_cast<long long>(shape.n), gflops);
      per_shape += row;
    }
    std::printf(
        "{\"dtype\": \"%s\", \"peak_gflops\": %.1f, \"torch_threads\": %d, \"blas_threads\": %d, "
        "\"shapes\": {%s}}\n",
        bf16 ? "bf16" : "fp32", peak, config.torch_threads, config.blas_threads, per_shape.c_str());
    std::fflush(stdout);
  }
  return 0;
}
