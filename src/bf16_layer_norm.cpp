#include "bf16_layer_norm.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/passes/subgraph_rewrite.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace mmsearch {
namespace {

// The row loops are written so that GCC vectorises them; target_clones picks the widest
// vectors the CPU has at load time, since the baseline x86-64 build has only SSE2.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MMSEARCH_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MMSEARCH_VECTOR_CLONES
#endif

constexpr int kLanes = 16;

MMSEARCH_VECTOR_CLONES
void normalise_rows(const std::uint16_t* in, std::uint16_t* out, const float* weight,
                    const float* bias, std::int64_t first, std::int64_t last, std::int64_t width,
                    float eps, float* row) {
  for (std::int64_t r = first; r < last; ++r) {
    const std::uint16_t* x = in + r * width;
    float partial[kLanes] = {};
    std::int64_t i = 0;
    for (; i + kLanes <= width; i += kLanes) {
      for (int lane = 0; lane < kLanes; ++lane) {
        const std::uint32_t bits = static_cast<std::uint32_t>(x[i + lane]) << 16;
        float value;
        std::memcpy(&value, &bits, sizeof value);
        row[i + lane] = value;
        partial[lane] += value;
      }
    }
    float sum = 0.0f;
    for (; i < width; ++i) {
      const std::uint32_t bits = static_cast<std::uint32_t>(x[i]) << 16;
      std::memcpy(&row[i], &bits, sizeof(float));
      sum += row[i];
    }
    for (float p : partial) sum += p;
    const float mean = sum / static_cast<float>(width);

    // Two passes over the fp32 row: the variance of deviations, not E[x^2] - mean^2, which
    // cancels badly for rows far from zero.
    float square_partial[kLanes] = {};
    i = 0;
    for (; i + kLanes <= width; i += kLanes) {
      for (int lane = 0; lane < kLanes; ++lane) {
        const float d = row[i + lane] - mean;
        square_partial[lane] += d * d;
      }
    }
    float squares = 0.0f;
    for (; i < width; ++i) squares += (row[i] - mean) * (row[i] - mean);
    for (float p : square_partial) squares += p;
    const float inverse_std = 1.0f / std::sqrt(squares / static_cast<float>(width) + eps);

    std::uint16_t* y = out + r * width;
    for (i = 0; i < width; ++i) {
      const float value = (row[i] - mean) * inverse_std * weight[i] + bias[i];
      std::uint32_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      // Round to nearest even, as c10::BFloat16 does; NaN stays a quiet NaN.
      const std::uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
      y[i] = value != value ? std::uint16_t{0x7FC0} : static_cast<std::uint16_t>(rounded);
    }
  }
}

std::vector<float> as_floats(const c10::optional<torch::Tensor>& values, std::int64_t width,
                             float fill) {
  if (!values || !values->defined()) return std::vector<float>(width, fill);
  const torch::Tensor f32 = values->to(torch::kFloat32).contiguous();
  return std::vector<float>(f32.data_ptr<float>(), f32.data_ptr<float>() + width);
}

bool fusable(const torch::Tensor& input, c10::IntArrayRef normalized_shape,
             const c10::optional<torch::Tensor>& weight, const c10::optional<torch::Tensor>& bias) {
  if (input.scalar_type() != torch::kBFloat16 || input.dim() < 1 ||
      input.device().type() != c10::kCPU || normalized_shape.size() != 1 ||
      normalized_shape[0] != input.size(-1) || input.size(-1) < 1) {
    return false;
  }
  for (const auto* affine : {&weight, &bias}) {
    if (*affine && affine->has_value() && (*affine)->defined() &&
        ((*affine)->numel() != input.size(-1) || !(*affine)->is_floating_point())) {
      return false;
    }
  }
  return true;
}

torch::Tensor layer_norm_op(const torch::Tensor& input, c10::IntArrayRef normalized_shape,
                            const c10::optional<torch::Tensor>& weight,
                            const c10::optional<torch::Tensor>& bias, double eps,
                            bool /*cudnn_enable*/) {
  return fused_layer_norm(input, normalized_shape, weight, bias, eps);
}

int count_layer_norms(const torch::jit::Block* block) {
  static const c10::Symbol kLayerNorm = c10::Symbol::fromQualString("aten::layer_norm");
  int count = 0;
  for (const torch::jit::Node* node : block->nodes()) {
    if (node->kind() == kLayerNorm) ++count;
    for (const torch::jit::Block* inner : node->blocks()) count += count_layer_norms(inner);
  }
  return count;
}

TORCH_LIBRARY(mmsearch, library) {
  library.def(
      "layer_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
      "float eps=1e-05, bool cudnn_enable=True) -> Tensor",
      &layer_norm_op);
}

}  // namespace

torch::Tensor fused_layer_norm(const torch::Tensor& input, c10::IntArrayRef normalized_shape,
                               const c10::optional<torch::Tensor>& weight,
                               const c10::optional<torch::Tensor>& bias, double eps) {
  if (!fusable(input, normalized_shape, weight, bias)) {
    return at::layer_norm(input, normalized_shape, weight, bias, eps);
  }
  const torch::Tensor x = input.contiguous();
  const std::int64_t width = x.size(-1);
  const std::int64_t rows = x.numel() / width;
  const std::vector<float> scale = as_floats(weight, width, 1.0f);
  const std::vector<float> shift = as_floats(bias, width, 0.0f);
  torch::Tensor y = torch::empty_like(x, torch::MemoryFormat::Contiguous);
  const auto* in = reinterpret_cast<const std::uint16_t*>(x.data_ptr<at::BFloat16>());
  auto* out = reinterpret_cast<std::uint16_t*>(y.data_ptr<at::BFloat16>());
  // A grain of a few rows keeps the per-thread row buffer warm and the pool busy.
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / width);
  at::parallel_for(0, rows, grain, [&](std::int64_t first, std::int64_t last) {
    std::vector<float> row(width);
    normalise_rows(in, out, scale.data(), shift.data(), first, last, width, static_cast<float>(eps),
                   row.data());
  });
  return y;
}

int use_fused_layer_norm(std::shared_ptr<torch::jit::Graph> graph) {
  const int before = count_layer_norms(graph->block());
  if (before == 0) return 0;
  torch::jit::SubgraphRewriter rewriter;
  rewriter.RegisterRewritePattern(R"IR(
graph(%input, %shape, %weight, %bias, %eps, %cudnn):
  %y = aten::layer_norm(%input, %shape, %weight, %bias, %eps, %cudnn)
  return (%y))IR",
                                  R"IR(
graph(%input, %shape, %weight, %bias, %eps, %cudnn):
  %y = mmsearch::layer_norm(%input, %shape, %weight, %bias, %eps, %cudnn)
  return (%y))IR");
  rewriter.runOnGraph(graph);
  return before - count_layer_norms(graph->block());
}

}  // namespace mmsearch
