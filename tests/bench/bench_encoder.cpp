// How to split the cores between libtorch's OpenMP pool and OpenBLAS's pthread pool, and what
// bf16 buys: times encode_image and encode_text of a bundle under each split. Prints numbers,
// asserts nothing. Usage: bench_encoder BUNDLE_DIR [batch=8] [repeats=3] [--freeze]
// --freeze: only mmsearch's own split per dtype, stored against frozen modules, one JSON object
// per row (scripts/bench.sh).
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "mmsearch/encoder.h"

namespace {

using SetBlasThreads = void (*)(int);

double seconds_of(const std::function<void()>& work, int repeats) {
  work();  // warm-up: loads the module, allocates
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

// mmsearch's split for each dtype, modules as stored against frozen (what Encoder does).
int compare_freezing(const std::string& bundle, int batch, int repeats) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  for (const auto dtype :
       {mmsearch::InferenceDtype::kFloat32, mmsearch::InferenceDtype::kBFloat16}) {
    mmsearch::configure_threads(cores, dtype);
    for (const bool freeze : {false, true}) {
      mmsearch::Encoder encoder(mmsearch::Bundle::open(bundle), dtype, freeze);
      const int size = encoder.manifest().image.size;
      const torch::Tensor pixels = torch::randn({batch, 3, size, size});
      const auto load_start = std::chrono::steady_clock::now();
      encoder.load_modules(true, false, false);
      const double load =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
      const double image = seconds_of([&] { encoder.encode_image(pixels); }, repeats);
      std::printf(
          "{\"dtype\": \"%s\", \"frozen\": %s, \"image_ms_per_img\": %.2f, "
          "\"image_load_s\": %.3f}\n",
          mmsearch::inference_dtype_name(dtype), freeze ? "true" : "false", 1000 * image / batch,
          load);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BUNDLE_DIR [batch] [repeats]\n", argv[0]);
    return 2;
  }
  mmsearch::configure_memory_allocator();  // as the binary does
  const int batch = argc > 2 ? std::stoi(argv[2]) : 8;
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 3;
  if (argc > 4 && std::string(argv[4]) == "--freeze")
    return compare_freezing(argv[1], batch, repeats);
  auto set_blas = reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  std::printf("bundle %s, batch %d, %d cores, OpenBLAS %s\n", argv[1], batch, cores,
              set_blas ? "yes" : "no (reference BLAS)");

  struct Split {
    int torch_threads;
    int blas_threads;
  };
  const Split splits[] = {{1, cores}, {cores, cores}, {cores, 1}, {1, 1}};
  for (const auto dtype :
       {mmsearch::InferenceDtype::kFloat32, mmsearch::InferenceDtype::kBFloat16}) {
    mmsearch::Encoder encoder(mmsearch::Bundle::open(argv[1]), dtype);
    const int size = encoder.manifest().image.size;
    const torch::Tensor pixels = torch::randn({batch, 3, size, size});
    std::vector<std::string> texts(batch, "a margherita pizza with tomato, mozzarella and basil");
    const mmsearch::TextBatch tokens = encoder.tokenize(texts, 35);
    for (const Split& split : splits) {
      at::set_num_threads(split.torch_threads);
      if (set_blas) set_blas(split.blas_threads);
      const double image = seconds_of([&] { encoder.encode_image(pixels); }, repeats);
      const double text = seconds_of([&] { encoder.encode_text(tokens); }, repeats);
      std::printf("%-5s torch=%d blas=%d  image %7.1f ms/img (%5.2f img/s)  text %6.2f ms/text\n",
                  dtype == mmsearch::InferenceDtype::kFloat32 ? "fp32" : "bf16",
                  split.torch_threads, split.blas_threads, 1000 * image / batch, batch / image,
                  1000 * text / batch);
      std::fflush(stdout);
    }
  }
  return 0;
}
