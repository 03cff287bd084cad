// Encoder (src/encoder.cpp) on the committed tiny model models/dishes-tiny: output shapes as
// the manifest's dims say, L2-normalised projections, tokenisation lengths, batch rows equal
// to single runs, and bf16 inference close to fp32.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "mmsearch/bundle.h"
#include "mmsearch/encoder.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;
using namespace mmsearch;

namespace {

const fs::path kModel = fs::path(MMSEARCH_SOURCE_DIR) / "models" / "dishes-tiny";

Encoder& fp32_encoder() {
  static Encoder encoder(Bundle::open(kModel));
  return encoder;
}

// A smooth colour ramp, different per seed.
RgbImage ramp(int width, int height, int seed) {
  RgbImage image;
  image.width = width;
  image.height = height;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.pixels.push_back(static_cast<std::uint8_t>((x * 255 / width + 60 * seed) % 256));
      image.pixels.push_back(static_cast<std::uint8_t>((y * 255 / height + 30 * seed) % 256));
      image.pixels.push_back(static_cast<std::uint8_t>(40 * seed % 256));
    }
  }
  return image;
}

std::vector<std::int64_t> shape(const torch::Tensor& t) { return t.sizes().vec(); }

void expect_unit_rows(const torch::Tensor& rows, const std::string& what) {
  const torch::Tensor norms = rows.norm(2, -1);
  EXPECT_TRUE(torch::allclose(norms, torch::ones_like(norms), 1e-4, 1e-4))
      << what << " norms " << norms;
}

float cosine(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.flatten().to(torch::kFloat32);
  const torch::Tensor y = b.flatten().to(torch::kFloat32);
  return (x.dot(y) / (x.norm() * y.norm())).item<float>();
}

}  // namespace

TEST(Encoder, PreprocessGivesTheBundlesInputSize) {
  Encoder& encoder = fp32_encoder();
  const int size = encoder.manifest().image.size;
  EXPECT_EQ(shape(encoder.preprocess_one(ramp(50, 30, 1))),
            (std::vector<std::int64_t>{3, size, size}));
  EXPECT_EQ(shape(encoder.preprocess({ramp(50, 30, 1), ramp(200, 300, 2)})),
            (std::vector<std::int64_t>{2, 3, size, size}));
}

TEST(Encoder, ImageOutputsFollowTheManifestDims) {
  Encoder& encoder = fp32_encoder();
  const Dims& dims = encoder.manifest().dims;
  const ImageOutputs out =
      encoder.encode_image(encoder.preprocess({ramp(64, 64, 1), ramp(64, 48, 2)}));
  EXPECT_EQ(shape(out.vision_tokens),
            (std::vector<std::int64_t>{2, dims.vision_tokens, dims.vision_width}));
  EXPECT_EQ(shape(out.image_embeds),
            (std::vector<std::int64_t>{2, dims.image_tokens, dims.hidden}));
  EXPECT_EQ(shape(out.image_embeds_proj),
            (std::vector<std::int64_t>{2, dims.image_tokens, dims.embed}));
  EXPECT_EQ(out.image_embeds_proj.scalar_type(), torch::kFloat32);
  expect_unit_rows(out.image_embeds_proj, "image_embeds_proj");
  // Two different pictures do not give the same vectors.
  EXPECT_LT(cosine(out.image_embeds_proj[0], out.image_embeds_proj[1]), 0.9999f);
}

TEST(Encoder, BatchRowsEqualSingleRuns) {
  Encoder& encoder = fp32_encoder();
  const ImageOutputs both =
      encoder.encode_image(encoder.preprocess({ramp(64, 64, 1), ramp(64, 48, 2)}));
  const ImageOutputs second = encoder.encode_image(encoder.preprocess({ramp(64, 48, 2)}));
  EXPECT_TRUE(torch::allclose(both.image_embeds_proj[1], second.image_embeds_proj[0], 1e-4, 1e-5));

  const TextBatch pair = encoder.tokenize({"pizza margherita", "a bowl of soup"}, 35);
  const TextBatch one = encoder.tokenize({"a bowl of soup"}, 35);
  const TextOutputs pair_out = encoder.encode_text(pair);
  const TextOutputs one_out = encoder.encode_text(one);
  EXPECT_TRUE(
      torch::allclose(pair_out.text_embeds_proj[1][0], one_out.text_embeds_proj[0][0], 1e-4, 1e-5));
}

TEST(Encoder, TokenizeLengthsTruncationAndPadding) {
  Encoder& encoder = fp32_encoder();
  const TextSpec& spec = encoder.manifest().text;
  const std::vector<std::string> texts = {"pizza", "lasagne with ragu and a lot of cheese on top"};

  const TextBatch longest = encoder.tokenize(texts, 0);
  ASSERT_EQ(longest.input_ids.size(0), 2);
  const auto lengths = longest.attention_mask.sum(1);
  const std::int64_t short_len = lengths[0].item<std::int64_t>();
  const std::int64_t long_len = lengths[1].item<std::int64_t>();
  EXPECT_EQ(longest.input_ids.size(1), long_len);  // padded to the longest, no further
  EXPECT_LT(short_len, long_len);
  for (int row = 0; row < 2; ++row) {
    EXPECT_EQ(longest.input_ids[row][0].item<std::int64_t>(), spec.cls_token_id);
    const std::int64_t last = lengths[row].item<std::int64_t>() - 1;
    EXPECT_EQ(longest.input_ids[row][last].item<std::int64_t>(), spec.sep_token_id);
  }
  EXPECT_EQ(longest.input_ids[0][short_len].item<std::int64_t>(), spec.pad_token_id);
  EXPECT_EQ(longest.normalised[1], "lasagne with ragu and a lot of cheese on top");

  const TextBatch truncated = encoder.tokenize(texts, 4);
  EXPECT_EQ(truncated.input_ids.size(1), 4);
  EXPECT_EQ(truncated.input_ids[1][3].item<std::int64_t>(), spec.sep_token_id);

  const TextBatch padded = encoder.tokenize({"pizza"}, spec.max_tokens, /*pad_to_max=*/true);
  EXPECT_EQ(padded.input_ids.size(1), spec.max_tokens);
  EXPECT_EQ(padded.attention_mask.sum().item<std::int64_t>(), short_len);
}

TEST(Encoder, TextAndMultimodalOutputsFollowTheManifestDims) {
  Encoder& encoder = fp32_encoder();
  const Manifest& manifest = encoder.manifest();
  const TextBatch tokens = encoder.tokenize({"pizza", "tiramisu with coffee"}, 35);
  const std::int64_t length = tokens.input_ids.size(1);

  const TextOutputs text = encoder.encode_text(tokens);
  EXPECT_EQ(shape(text.text_embeds), (std::vector<std::int64_t>{2, length, manifest.dims.hidden}));
  EXPECT_EQ(shape(text.text_embeds_proj),
            (std::vector<std::int64_t>{2, length, manifest.dims.embed}));
  expect_unit_rows(text.text_embeds_proj.select(1, 0), "text_embeds_proj CLS");

  const ImageOutputs image =
      encoder.encode_image(encoder.preprocess({ramp(64, 64, 1), ramp(32, 32, 3)}));
  const MultimodalOutputs multimodal = encoder.encode_multimodal(image.vision_tokens, tokens);
  // BLIP-2: one output per query token (models/README.md).
  ASSERT_EQ(manifest.family, Family::kBlip2);
  EXPECT_EQ(shape(multimodal.multimodal_embeds),
            (std::vector<std::int64_t>{2, manifest.dims.query_tokens, manifest.dims.hidden}));
  EXPECT_EQ(shape(multimodal.itm_logits), (std::vector<std::int64_t>{2, manifest.itm ? 2 : 0}));

  EXPECT_THROW(encoder.encode_multimodal(image.vision_tokens.slice(0, 0, 1), tokens), Error);
}

TEST(Encoder, Bf16StaysCloseToFp32) {
  Encoder bf16(Bundle::open(kModel), InferenceDtype::kBFloat16);
  Encoder& fp32 = fp32_encoder();
  const torch::Tensor pixels = fp32.preprocess({ramp(64, 64, 1), ramp(80, 40, 4)});
  const TextBatch tokens = fp32.tokenize({"pizza margherita", "a bowl of soup"}, 35);
  ImageOutputs half_image;
  TextOutputs half_text;
  try {
    half_image = bf16.encode_image(pixels);
    half_text = bf16.encode_text(tokens);
  } catch (const Error& e) {
    GTEST_SKIP() << "bf16 inference not supported here: " << e.what();
  }
  const ImageOutputs full_image = fp32.encode_image(pixels);
  const TextOutputs full_text = fp32.encode_text(tokens);
  EXPECT_EQ(half_image.image_embeds_proj.scalar_type(), torch::kFloat32);  // handed out as fp32
  for (int b = 0; b < 2; ++b) {
    EXPECT_GE(cosine(half_image.image_embeds_proj[b], full_image.image_embeds_proj[b]), 0.99f);
    EXPECT_GE(cosine(half_text.text_embeds_proj[b][0], full_text.text_embeds_proj[b][0]), 0.99f);
  }
}

// Freezing (the default) must not change what the model computes: the frozen fp32 outputs equal
// the stored module's up to float reassociation, and the frozen bf16 path stays as close to
// fp32 as the unfrozen one.
TEST(Encoder, FrozenModulesGiveTheStoredModulesOutputs) {
  Encoder stored(Bundle::open(kModel), InferenceDtype::kFloat32, /*freeze=*/false);
  Encoder& frozen = fp32_encoder();
  const torch::Tensor pixels = frozen.preprocess({ramp(64, 64, 2), ramp(30, 90, 5)});
  const TextBatch tokens = frozen.tokenize({"lasagne al forno", "a slice of cake with cream"}, 35);
  const ImageOutputs a = stored.encode_image(pixels);
  const ImageOutputs b = frozen.encode_image(pixels);
  EXPECT_TRUE(torch::allclose(a.vision_tokens, b.vision_tokens, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a.image_embeds, b.image_embeds, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a.image_embeds_proj, b.image_embeds_proj, 1e-5, 1e-5));
  const TextOutputs ta = stored.encode_text(tokens);
  const TextOutputs tb = frozen.encode_text(tokens);
  EXPECT_TRUE(torch::allclose(ta.text_embeds_proj, tb.text_embeds_proj, 1e-5, 1e-5));
  const MultimodalOutputs ma = stored.encode_multimodal(a.vision_tokens, tokens);
  const MultimodalOutputs mb = frozen.encode_multimodal(a.vision_tokens, tokens);
  EXPECT_TRUE(torch::allclose(ma.multimodal_embeds, mb.multimodal_embeds, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(ma.itm_logits, mb.itm_logits, 1e-5, 1e-5));

  Encoder bf16_stored(Bundle::open(kModel), InferenceDtype::kBFloat16, /*freeze=*/false);
  Encoder bf16_frozen(Bundle::open(kModel), InferenceDtype::kBFloat16);
  try {
    const torch::Tensor unfrozen = bf16_stored.encode_image(pixels).image_embeds_proj;
    const torch::Tensor frozen_bf16 = bf16_frozen.encode_image(pixels).image_embeds_proj;
    for (int row = 0; row < 2; ++row) {
      EXPECT_GE(cosine(frozen_bf16[row], a.image_embeds_proj[row]), 0.99f);
      EXPECT_GE(cosine(frozen_bf16[row], unfrozen[row]), 0.999f);
    }
  } catch (const Error& e) {
    GTEST_SKIP() << "bf16 inference not supported here: " << e.what();
  }
}

TEST(Encoder, DtypeNames) {
  EXPECT_EQ(parse_inference_dtype("fp32"), InferenceDtype::kFloat32);
  EXPECT_EQ(parse_inference_dtype("bfloat16"), InferenceDtype::kBFloat16);
  EXPECT_THROW(parse_inference_dtype("fp16"), Error);
  EXPECT_STREQ(inference_dtype_name(InferenceDtype::kBFloat16), "bf16");
  EXPECT_STREQ(inference_dtype_name(InferenceDtype::kFloat32), "fp32");
}

// auto is bf16 exactly where the CPU multiplies bf16 natively (here, /proc/cpuinfo's flags).
TEST(Encoder, AutoDtypeIsBf16WhereTheCpuHasNativeBf16) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  bool native = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    native = line.find(" avx512_bf16") != std::string::npos ||
             line.find(" amx_bf16") != std::string::npos;
    break;
  }
  EXPECT_EQ(cpu_has_native_bf16(), native);
  EXPECT_EQ(parse_inference_dtype("auto"),
            native ? InferenceDtype::kBFloat16 : InferenceDtype::kFloat32);
  EXPECT_EQ(default_inference_dtype(), parse_inference_dtype("auto"));
}

TEST(Encoder, ThreadSplitFollowsWhereTheDtypeRunsItsMatrixProducts) {
  const ThreadConfig before = current_thread_config();
  configure_threads(2, InferenceDtype::kFloat32);
  ThreadConfig fp32 = current_thread_config();
  configure_threads(2, InferenceDtype::kBFloat16);
  ThreadConfig bf16 = current_thread_config();
  if (fp32.blas_threads < 0) {  // reference BLAS: libtorch gets the cores either way
    EXPECT_EQ(fp32.torch_threads, 2);
    EXPECT_EQ(bf16.torch_threads, 2);
  } else {
    EXPECT_EQ(fp32.torch_threads, 1);  // sgemm in OpenBLAS
    EXPECT_EQ(fp32.blas_threads, 2);
    EXPECT_EQ(bf16.torch_threads, 2);  // bf16 products in oneDNN, in libtorch's pool
    EXPECT_EQ(bf16.blas_threads, 1);
  }
  configure_threads(0, InferenceDtype::kFloat32);  // 0 means at least one
  EXPECT_EQ(current_thread_config().torch_threads, 1);
  at::set_num_threads(before.torch_threads);
}
