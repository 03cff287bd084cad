// Runs a bundle's TorchScript modules: pixels and token ids in, LAVIS extract_features
// outputs out. Each module is loaded on first use, so a text query never loads the vision
// encoder. Tensors follow models/README.md (float32 out, [B, ...] batches).
#pragma once

#include <torch/script.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mmsearch/bundle.h"
#include "mmsearch/image.h"
#include "mmsearch/text.h"

namespace mmsearch {

enum class InferenceDtype { kFloat32, kBFloat16 };

// "fp32" / "bf16" -> dtype, "auto" -> default_inference_dtype(); throws Error(kUsage) otherwise.
InferenceDtype parse_inference_dtype(const std::string& name);
const char* inference_dtype_name(InferenceDtype dtype);  // "fp32" / "bf16"

// Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16), as oneDNN needs for
// bf16 to be faster than fp32 rather than emulated.
bool cpu_has_native_bf16();
// bf16 on such CPUs, fp32 elsewhere. bf16 keeps the stored embeddings within cosine 0.999 of
// fp32 on the shared photos and runs ~2x faster (docs/PERFORMANCE.md); exact LAVIS fidelity is
// fp32's.
InferenceDtype default_inference_dtype();

// Process-wide thread set-up, done once by the binary (not by library calls): libtorch's
// OpenMP pool and OpenBLAS's pthread pool would otherwise both spin on every core and fight
// (3x slower measured on 2 cores). `threads` is the number of cores mmsearch may use. Where
// the matrix products run decides the split, so it depends on the dtype (bench_encoder,
// blip-base, 2 cores, one run):
// * fp32: sgemm runs in OpenBLAS, so OpenBLAS gets every core and libtorch one thread
//   (4.32 img/s, against 3.22 with both pools at 2).
// * bf16: matrix products run in oneDNN inside libtorch's OpenMP pool, so libtorch gets every
//   core and OpenBLAS one thread (8.62 img/s, against 4.38 with the fp32 split).
// Without OpenBLAS (the reference BLAS has no thread pool) libtorch gets every core.
void configure_threads(int threads, InferenceDtype dtype = InferenceDtype::kFloat32);
// Process-wide allocator set-up, done once by the binary before any model runs. glibc's default
// gives every large activation its own mmap and unmaps it when freed, so each forward faults
// its activations in again, page by page (~0.8M faults per 24 blip-base images). Keeping blocks
// up to 32 MiB in the heap, and up to 256 MiB of free heap before trimming, made indexing
// 9-35 % faster (blip-base and blip2-vitL, bf16 and fp32) for +1-8 % peak RSS
// (docs/PERFORMANCE.md). A no-op without glibc.
void configure_memory_allocator();

// What configure_threads chose, for logs and benchmarks.
struct ThreadConfig {
  int torch_threads = 0;
  int blas_threads = 0;  // -1 when the BLAS is not OpenBLAS
};
ThreadConfig current_thread_config();

// A tokenised text batch, row-major [count, length] int64, as the modules take it.
struct TextBatch {
  std::vector<std::string> normalised;  // pre_caption output per text
  torch::Tensor input_ids;              // int64 [B, L]
  torch::Tensor attention_mask;         // int64 [B, L]
};

struct ImageOutputs {
  torch::Tensor vision_tokens;      // [B, Nv, Dv]
  torch::Tensor image_embeds;       // [B, Ni, D]
  torch::Tensor image_embeds_proj;  // [B, Ni, E], L2-normalised
};

struct TextOutputs {
  torch::Tensor text_embeds;       // [B, L, D]
  torch::Tensor text_embeds_proj;  // [B, L, E], L2-normalised
};

struct MultimodalOutputs {
  torch::Tensor multimodal_embeds;  // [B, M, D]
  torch::Tensor itm_logits;         // [B, 2], or [B, 0] when the bundle has no ITM head
};

class Encoder {
 public:
  // freeze: modules are frozen after loading (torch::jit::freeze), which is faster and gives
  // the same outputs (tests/cpp/test_encoder.cpp); false runs them as stored. Frozen bf16
  // modules also run a fused LayerNorm (src/bf16_layer_norm.h).
  Encoder(Bundle bundle, InferenceDtype dtype = InferenceDtype::kFloat32, bool freeze = true);

  const Bundle& bundle() const { return bundle_; }
  const Manifest& manifest() const { return bundle_.manifest(); }
  const WordPieceTokenizer& tokenizer() const;

  // Resize + normalise decoded images to the bundle's input: float32 [B, 3, S, S].
  torch::Tensor preprocess(const std::vector<RgbImage>& images) const;
  // One image, [3, S, S]; thread-safe, for decoding workers.
  torch::Tensor preprocess_one(const RgbImage& image) const;

  // pre_caption (per the manifest) + WordPiece. max_tokens 0 = no truncation, padded to the
  // longest (what LAVIS extract_features does); N > 0 truncates to N ids and pads to the
  // longest, or to N when pad_to_max is set.
  TextBatch tokenize(const std::vector<std::string>& texts, int max_tokens,
                     bool pad_to_max = false) const;

  // Loads the modules a caller is about to use, so that loading can be timed apart from the
  // first forward; encode_* load what they need anyway. Only what is asked is loaded: a text
  // query never reads the image or multimodal weights.
  void load_modules(bool image, bool text, bool multimodal);

  ImageOutputs encode_image(const torch::Tensor& pixels);
  TextOutputs encode_text(const TextBatch& batch);
  // Row b pairs vision_tokens[b] with text b.
  MultimodalOutputs encode_multimodal(const torch::Tensor& vision_tokens, const TextBatch& batch);

 private:
  torch::jit::Module& module(const std::string& file, std::optional<torch::jit::Module>& slot);
  // Format-2 bundles: fills the module's weights from weights.bin.
  void put_weights(torch::jit::Module& module, const std::string& file);
  std::vector<torch::IValue> run(torch::jit::Module& module, std::vector<torch::IValue> inputs,
                                 std::size_t expected_outputs, const std::string& file);
  // Throws Error(kModel) unless `value` is a tensor of the `expected` sizes (-1: any).
  void check_output(const torch::IValue& value, const char* name,
                    std::vector<std::int64_t> expected, const std::string& file) const;

  Bundle bundle_;
  InferenceDtype dtype_;
  bool freeze_;
  mutable std::once_flag tokenizer_once_;
  mutable std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::optional<torch::jit::Module> image_module_;
  std::optional<torch::jit::Module> text_module_;
  std::optional<torch::jit::Module> multimodal_module_;
};

}  // namespace mmsearch
