// The fused bf16 LayerNorm (src/bf16_layer_norm.cpp): it must agree with an fp32 LayerNorm of
// the same bf16 values to one bf16 rounding, leave every other input to aten, and the graph
// rewrite must replace aten::layer_norm wherever it appears, branches included.
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/jit.h>
#include <torch/torch.h>

#include <limits>

#include "../../src/bf16_layer_norm.h"

using namespace mmsearch;

namespace {

// fp32 LayerNorm of the bf16 values, the exact answer the fused kernel rounds.
torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias, double eps) {
  return at::layer_norm(x.to(torch::kFloat32), {x.size(-1)}, weight.to(torch::kFloat32),
                        bias.to(torch::kFloat32), eps);
}

// Within one bf16 rounding (2^-8 relative) of the exact value, plus a little for the fp32
// reduction order.
void expect_one_rounding(const torch::Tensor& fused, const torch::Tensor& exact) {
  ASSERT_EQ(fused.scalar_type(), torch::kBFloat16);
  ASSERT_EQ(fused.sizes(), exact.sizes());
  const torch::Tensor error = (fused.to(torch::kFloat32) - exact).abs();
  const torch::Tensor bound = exact.abs() * (1.0 / 256) + 1e-5;
  EXPECT_TRUE((error <= bound).all().item<bool>())
      << "worst excess " << (error - bound).max().item<float>();
}

}  // namespace

TEST(FusedLayerNorm, MatchesFp32LayerNormToOneBf16Rounding) {
  torch::manual_seed(7);
  // 768 (ViT-B, BERT), 1024 (ViT-L), and widths that leave a tail past the 16-lane loops.
  for (const std::int64_t width : {768, 1024, 37, 5, 1}) {
    const torch::Tensor x = (torch::randn({3, 11, width}) * 3 + 0.5).to(torch::kBFloat16);
    const torch::Tensor weight = torch::randn({width}).to(torch::kBFloat16);
    const torch::Tensor bias = torch::randn({width}).to(torch::kBFloat16);
    SCOPED_TRACE("width " + std::to_string(width));
    expect_one_rounding(fused_layer_norm(x, {width}, weight, bias, 1e-6),
                        reference(x, weight, bias, 1e-6));
  }
}

// aten's bf16 kernel rounds its intermediates to bf16 (up to 0.05 off on unit-variance rows):
// the fused one must be at least as close to the exact result everywhere it matters.
TEST(FusedLayerNorm, IsAtLeastAsAccurateAsAtensBf16LayerNorm) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({8, 197, 768}).to(torch::kBFloat16);
  const torch::Tensor weight = torch::rand({768}).to(torch::kBFloat16);
  const torch::Tensor bias = torch::randn({768}).to(torch::kBFloat16);
  const torch::Tensor exact = reference(x, weight, bias, 1e-12);
  const torch::Tensor fused_error =
      (fused_layer_norm(x, {768}, weight, bias, 1e-12).to(torch::kFloat32) - exact).abs();
  const torch::Tensor aten_error =
      (at::layer_norm(x, {768}, weight, bias, 1e-12).to(torch::kFloat32) - exact).abs();
  EXPECT_LE(fused_error.max().item<float>(), aten_error.max().item<float>());
  EXPECT_LE(fused_error.mean().item<float>(), aten_error.mean().item<float>());
}

TEST(FusedLayerNorm, RowsFarFromZeroKeepTheirVariance) {
  // A naive E[x^2] - mean^2 cancels to nothing here; the two-pass variance does not.
  const torch::Tensor x =
      (torch::arange(64, torch::kFloat32) * 0.25 + 4096).reshape({1, 64}).to(torch::kBFloat16);
  const torch::Tensor ones = torch::ones({64}, torch::kBFloat16);
  const torch::Tensor zeros = torch::zeros({64}, torch::kBFloat16);
  expect_one_rounding(fused_layer_norm(x, {64}, ones, zeros, 1e-5),
                      reference(x, ones, zeros, 1e-5));
}

TEST(FusedLayerNorm, NonContiguousInputAndMissingAffine) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({40, 6}).to(torch::kBFloat16).t();  // [6, 40], strided
  const torch::Tensor fused = fused_layer_norm(x, {40}, c10::nullopt, c10::nullopt, 1e-5);
  expect_one_rounding(fused, at::layer_norm(x.to(torch::kFloat32), {40}));
}

TEST(FusedLayerNorm, NanRowsStayNanAndOtherRowsAreUntouched) {
  torch::Tensor x = torch::randn({2, 16}).to(torch::kBFloat16);
  x[0][3] = std::numeric_limits<float>::quiet_NaN();
  const torch::Tensor fused = fused_layer_norm(x, {16}, c10::nullopt, c10::nullopt, 1e-5);
  EXPECT_TRUE(fused[0].isnan().all().item<bool>());
  expect_one_rounding(fused[1], at::layer_norm(x[1].to(torch::kFloat32), {16}));
}

TEST(FusedLayerNorm, LeavesEveryOtherInputToAten) {
  torch::manual_seed(11);
  const torch::Tensor x = torch::randn({4, 10, 12});
  const torch::Tensor weight = torch::randn({10, 12});
  // fp32 input: bit-identical to aten.
  EXPECT_TRUE(
      fused_layer_norm(x, {12}, c10::nullopt, c10::nullopt, 1e-5).equal(at::layer_norm(x, {12})));
  // bf16 over the last two dimensions: aten's kernel, not the fused one.
  const torch::Tensor b = x.to(torch::kBFloat16);
  const torch::Tensor wb = weight.to(torch::kBFloat16);
  EXPECT_TRUE(fused_layer_norm(b, {10, 12}, wb, c10::nullopt, 1e-5)
                  .equal(at::layer_norm(b, {10, 12}, wb, c10::nullopt, 1e-5)));
}

TEST(FusedLayerNorm, GraphRewriteReplacesEveryLayerNormIncludingBranches) {
  const auto unit = torch::jit::compile(R"JIT(
def forward(x, w, b, twice: bool):
    y = torch.layer_norm(x, [x.size(-1)], w, b, 1e-6)
    if twice:
        y = torch.layer_norm(y, [y.size(-1)], w, b, 1e-6)
    return y
)JIT");
  torch::jit::Function& forward = unit->get_function("forward");
  const auto graph = torch::jit::toGraphFunction(forward).graph();
  EXPECT_EQ(use_fused_layer_norm(graph), 2);
  EXPECT_EQ(use_fused_layer_norm(graph), 0);  // nothing left to replace
  EXPECT_NE(graph->toString().find("mmsearch::layer_norm"), std::string::npos);
  EXPECT_EQ(graph->toString().find("aten::layer_norm"), std::string::npos);

  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({5, 32}).to(torch::kBFloat16);
  const torch::Tensor w = torch::randn({32}).to(torch::kBFloat16);
  const torch::Tensor b = torch::randn({32}).to(torch::kBFloat16);
  const torch::Tensor once = forward({x, w, b, false}).toTensor();
  EXPECT_TRUE(once.equal(fused_layer_norm(x, {32}, w, b, 1e-6)));
  const torch::Tensor twice = forward({x, w, b, true}).toTensor();
  EXPECT_TRUE(twice.equal(fused_layer_norm(once, {32}, w, b, 1e-6)));
}
