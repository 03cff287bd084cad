#include "vector_kernels.h"

#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define MMSEARCH_X86_KERNELS 1
#endif

namespace mmsearch::kernels {
namespace {

float half_to_float(std::uint16_t bits) {
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}

float dot_f32_portable(const float* a, const float* b, int n) {
  float partial[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int lane = 0; lane < 8; ++lane) partial[lane] += a[i + lane] * b[i + lane];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float p : partial) sum += p;
  return sum;
}

float dot_f16_portable(const std::uint16_t* a, const float* b, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += half_to_float(a[i]) * b[i];
  return sum;
}

float dot_i8_portable(const std::int8_t* a, const float* b, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += static_cast<float>(a[i]) * b[i];
  return sum;
}

#ifdef MMSEARCH_X86_KERNELS
#define MMSEARCH_AVX2 __attribute__((target("avx2,fma,f16c")))

MMSEARCH_AVX2 float horizontal_sum(__m256 v) {
  const __m128 low = _mm256_castps256_ps128(v);
  const __m128 high = _mm256_extractf128_ps(v, 1);
  __m128 sum = _mm_add_ps(low, high);
  sum = _mm_hadd_ps(sum, sum);
  sum = _mm_hadd_ps(sum, sum);
  return _mm_cvtss_f32(sum);
}

MMSEARCH_AVX2 float dot_f32_avx2(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

MMSEARCH_AVX2 float dot_f16_avx2(const std::uint16_t* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 8)));
    acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + i + 8), acc1);
  }
  float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += half_to_float(a[i]) * b[i];
  return sum;
}

MMSEARCH_AVX2 float dot_i8_avx2(const std::int8_t* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m256 x0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
    const __m256 x1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8)));
    acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + i + 8), acc1);
  }
  float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += static_cast<float>(a[i]) * b[i];
  return sum;
}

// F16C is read from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know
// "f16c", so the project would not build with clang (the fuzz targets need it).
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

bool has_avx2() {
  static const bool supported =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  return supported;
}
#endif

using DotF32 = float (*)(const float*, const float*, int);
using DotF16 = float (*)(const std::uint16_t*, const float*, int);
using DotI8 = float (*)(const std::int8_t*, const float*, int);

DotF32 dot_f32() {
#ifdef MMSEARCH_X86_KERNELS
  if (has_avx2()) return dot_f32_avx2;
#endif
  return dot_f32_portable;
}
DotF16 dot_f16() {
#ifdef MMSEARCH_X86_KERNELS
  if (has_avx2()) return dot_f16_avx2;
#endif
  return dot_f16_portable;
}
DotI8 dot_i8() {
#ifdef MMSEARCH_X86_KERNELS
  if (has_avx2()) return dot_i8_avx2;
#endif
  return dot_i8_portable;
}

// out[i] = max_q dot(row i, q) for one encoded row type; `dot` scores one row.
template <typename Row, typename Dot>
void scan_typed(const Row* rows, const float* scales, std::int64_t count, int dim,
                const float* query, int query_rows, float* out, Dot dot) {
  for (std::int64_t i = 0; i < count; ++i) {
    const Row* row = rows + i * dim;
    float best = -std::numeric_limits<float>::infinity();
    for (int q = 0; q < query_rows; ++q) {
      best = std::max(best, dot(row, query + static_cast<std::int64_t>(q) * dim, dim));
    }
    out[i] = scales ? best * scales[i] : best;
  }
}

}  // namespace

void encode_rows(VectorEncoding encoding, const float* values, std::int64_t rows, int dim,
                 std::vector<std::uint8_t>& out, std::vector<float>& scales) {
  const std::int64_t n = rows * dim;
  switch (encoding) {
    case VectorEncoding::kFloat32:
      out.resize(n * sizeof(float));
      std::memcpy(out.data(), values, n * sizeof(float));
      return;
    case VectorEncoding::kFloat16: {
      out.resize(n * sizeof(std::uint16_t));
      auto* halves = reinterpret_cast<std::uint16_t*>(out.data());
      for (std::int64_t i = 0; i < n; ++i) halves[i] = c10::Half(values[i]).x;
      return;
    }
    case VectorEncoding::kInt8: {
      out.resize(n);
      scales.resize(rows);
      auto* bytes = reinterpret_cast<std::int8_t*>(out.data());
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = values + r * dim;
        float max_abs = 0.0f;
        for (int d = 0; d < dim; ++d) max_abs = std::max(max_abs, std::fabs(row[d]));
        const float scale = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
        scales[r] = scale;
        for (int d = 0; d < dim; ++d) {
          const float q = std::nearbyint(row[d] / scale);
          bytes[r * dim + d] = static_cast<std::int8_t>(std::clamp(q, -127.0f, 127.0f));
        }
      }
      return;
    }
  }
}

void decode_rows(ArrayType type, const std::uint8_t* data, const float* scales, std::int64_t first,
                 std::int64_t count, int dim, float* out) {
  const std::int64_t n = count * dim;
  switch (type) {
    case ArrayType::kF32:
      std::memcpy(out, data + first * dim * sizeof(float), n * sizeof(float));
      return;
    case ArrayType::kF16: {
      const auto* halves = reinterpret_cast<const std::uint16_t*>(data) + first * dim;
      for (std::int64_t i = 0; i < n; ++i) out[i] = half_to_float(halves[i]);
      return;
    }
    case ArrayType::kI8: {
      const auto* bytes = reinterpret_cast<const std::int8_t*>(data) + first * dim;
      for (std::int64_t r = 0; r < count; ++r) {
        const float scale = scales[first + r];
        for (int d = 0; d < dim; ++d) out[r * dim + d] = bytes[r * dim + d] * scale;
      }
      return;
    }
    case ArrayType::kI32:
      break;
  }
  throw std::logic_error("decode_rows: not a vector array");
}

void scan_rows(ArrayType type, const std::uint8_t* data, const float* scales, std::int64_t count,
               int dim, const float* query, int query_rows, float* out) {
  switch (type) {
    case ArrayType::kF32:
      scan_typed(reinterpret_cast<const float*>(data), nullptr, count, dim, query, query_rows, out,
                 dot_f32());
      return;
    case ArrayType::kF16:
      scan_typed(reinterpret_cast<const std::uint16_t*>(data), nullptr, count, dim, query,
                 query_rows, out, dot_f16());
      return;
    case ArrayType::kI8:
      // The scale is positive, so the max over queries commutes with it.
      scan_typed(reinterpret_cast<const std::int8_t*>(data), scales, count, dim, query, query_rows,
                 out, dot_i8());
      return;
    case ArrayType::kI32:
      break;
  }
  throw std::logic_error("scan_rows: not a vector array");
}

}  // namespace mmsearch::kernels
