// Pillow 9.4 BICUBIC resampling, reproduced bit for bit, and the ToTensor + Normalize step.
//
// LAVIS feeds the model torchvision's Resize on a PIL image, i.e. Pillow's ImagingResample
// (libImaging/Resample.c). Any other cubic filter (OpenCV INTER_CUBIC has no antialiasing when
// shrinking) changes the pixels and therefore the embeddings, so the algorithm is copied here
// step by step: the same double-precision coefficient computation, the same rounding to 22-bit
// fixed point, the same uint8 intermediate between the horizontal and the vertical pass.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mmsearch/error.h"
#include "mmsearch/image.h"

namespace mmsearch {
namespace {

// The two passes are compiled twice on x86-64, for the baseline and for AVX2 (picked at load
// time by the CPU): with 32-bit integer multiplies in vector registers the shrink of a
// 12-megapixel photo runs about three times faster. Integer arithmetic, so both give the same
// bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define MMSEARCH_RESAMPLE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MMSEARCH_RESAMPLE_CLONES
#endif

// Pillow: PRECISION_BITS = 32 - 8 - 2.
constexpr int kPrecisionBits = 22;

// Pillow's bicubic_filter with a = -0.5 (Keys), written in the same operation order so the
// doubles round identically.
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Fixed-point coefficients of one axis: for output index i the taps start at bounds[i].first,
// there are bounds[i].second of them, stored at coeffs[i * ksize ...].
struct AxisCoeffs {
  int ksize = 0;
  std::vector<int> start;
  std::vector<int> count;
  std::vector<std::int32_t> coeffs;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for box = (0, in_size).
AxisCoeffs precompute_coeffs(int in_size, int out_size) {
  constexpr double kFilterSupport = 2.0;  // bicubic
  const double scale = static_cast<double>(in_size) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = kFilterSupport * filterscale;

  AxisCoeffs axis;
  axis.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.start.resize(out_size);
  axis.count.resize(out_size);
  axis.coeffs.assign(static_cast<std::size_t>(out_size) * axis.ksize, 0);
  std::vector<double> weights(axis.ksize);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    // Pillow rounds with (int)(v + 0.5), i.e. truncation toward zero, also for negatives.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      weights[x] = w;
      ww += w;
    }
    std::int32_t* k = &axis.coeffs[static_cast<std::size_t>(xx) * axis.ksize];
    for (int x = 0; x < xmax; ++x) {
      double w = weights[x];
      if (ww != 0.0) w /= ww;
      // normalize_coeffs_8bpc: round half away from zero.
      k[x] = w < 0 ? static_cast<std::int32_t>(-0.5 + w * (1 << kPrecisionBits))
                   : static_cast<std::int32_t>(0.5 + w * (1 << kPrecisionBits));
    }
    axis.start[xx] = xmin;
    axis.count[xx] = xmax;
  }
  return axis;
}

// Pillow's clip8: the accumulator already holds the 0.5 rounding term.
inline std::uint8_t clip8(std::int32_t in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return static_cast<std::uint8_t>(in >> kPrecisionBits);
}

// Horizontal pass over rows [row0, row0 + rows) of `in`.
MMSEARCH_RESAMPLE_CLONES void resample_horizontal(const RgbImage& in, int row0, int rows,
                                                  int out_width, const AxisCoeffs& axis,
                                                  std::vector<std::uint8_t>& out) {
  out.resize(static_cast<std::size_t>(out_width) * rows * 3);
  for (int y = 0; y < rows; ++y) {
    const std::uint8_t* src = &in.pixels[static_cast<std::size_t>(row0 + y) * in.width * 3];
    std::uint8_t* dst = &out[static_cast<std::size_t>(y) * out_width * 3];
    for (int xx = 0; xx < out_width; ++xx) {
      const int xmin = axis.start[xx];
      const int n = axis.count[xx];
      const std::int32_t* k = &axis.coeffs[static_cast<std::size_t>(xx) * axis.ksize];
      const std::uint8_t* p = src + static_cast<std::size_t>(xmin) * 3;
      std::int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < n; ++x) {
        s0 += p[x * 3 + 0] * k[x];
        s1 += p[x * 3 + 1] * k[x];
        s2 += p[x * 3 + 2] * k[x];
      }
      dst[xx * 3 + 0] = clip8(s0);
      dst[xx * 3 + 1] = clip8(s1);
      dst[xx * 3 + 2] = clip8(s2);
    }
  }
}

// Vertical pass; `in` holds rows starting at source row `row0`.
MMSEARCH_RESAMPLE_CLONES void resample_vertical(const std::uint8_t* in, int width, int row0,
                                                int out_height, const AxisCoeffs& axis,
                                                std::vector<std::uint8_t>& out) {
  const std::size_t stride = static_cast<std::size_t>(width) * 3;
  out.resize(stride * out_height);
  std::vector<std::int32_t> acc(stride);
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = axis.start[yy] - row0;
    const int n = axis.count[yy];
    const std::int32_t* k = &axis.coeffs[static_cast<std::size_t>(yy) * axis.ksize];
    // Row-wise accumulation (same sums as Pillow's per-pixel loop, integer so order-free),
    // which walks memory contiguously.
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < n; ++y) {
      const std::uint8_t* src = in + static_cast<std::size_t>(ymin + y) * stride;
      const std::int32_t w = k[y];
      for (std::size_t i = 0; i < stride; ++i) acc[i] += src[i] * w;
    }
    std::uint8_t* dst = &out[static_cast<std::size_t>(yy) * stride];
    for (std::size_t i = 0; i < stride; ++i) dst[i] = clip8(acc[i]);
  }
}

}  // namespace

RgbImage resize_bicubic_pil(const RgbImage& image, int out_width, int out_height) {
  if (out_width <= 0 || out_height <= 0) {
    throw Error(ErrorKind::kUsage, "resize: target size must be positive, got " +
                                       std::to_string(out_width) + "x" +
                                       std::to_string(out_height));
  }
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3) {
    throw Error(ErrorKind::kUsage, "resize: empty or inconsistent source image");
  }
  // Pillow skips an axis whose size does not change (box is the whole image).
  const bool need_horizontal = out_width != image.width;
  const bool need_vertical = out_height != image.height;
  if (!need_horizontal && !need_vertical) return image;

  RgbImage out;
  out.width = out_width;
  out.height = out_height;
  if (!need_vertical) {
    const AxisCoeffs horiz = precompute_coeffs(image.width, out_width);
    resample_horizontal(image, 0, image.height, out_width, horiz, out.pixels);
    return out;
  }
  const AxisCoeffs vert = precompute_coeffs(image.height, out_height);
  if (!need_horizontal) {
    resample_vertical(image.pixels.data(), image.width, 0, out_height, vert, out.pixels);
    return out;
  }
  const AxisCoeffs horiz = precompute_coeffs(image.width, out_width);
  // As Pillow: the horizontal pass only computes the source rows the vertical pass reads.
  const int first_row = vert.start[0];
  const int last_row = vert.start[out_height - 1] + vert.count[out_height - 1];
  std::vector<std::uint8_t> temp;
  resample_horizontal(image, first_row, last_row - first_row, out_width, horiz, temp);
  resample_vertical(temp.data(), out_width, first_row, out_height, vert, out.pixels);
  return out;
}

std::vector<float> normalize_to_chw(const RgbImage& image, const std::array<float, 3>& mean,
                                    const std::array<float, 3>& std) {
  const std::size_t plane = static_cast<std::size_t>(image.width) * image.height;
  if (image.pixels.size() != plane * 3) {
    throw Error(ErrorKind::kUsage, "normalize: inconsistent image buffer");
  }
  std::vector<float> out(plane * 3);
  for (int c = 0; c < 3; ++c) {
    // ToTensor: uint8 -> float32 then / 255 (a float32 division, as torch does); Normalize:
    // (x - mean) / std in float32. A lookup table keeps the exact float32 results.
    float table[256];
    for (int v = 0; v < 256; ++v) {
      const volatile float x = static_cast<float>(v) / 255.0f;
      const volatile float centered = x - mean[c];
      table[v] = centered / std[c];
    }
    float* dst = &out[c * plane];
    for (std::size_t i = 0; i < plane; ++i) dst[i] = table[image.pixels[i * 3 + c]];
  }
  return out;
}

}  // namespace mmsearch
