// Internal: encoding of stored vectors (fp32, fp16, int8 with a per-vector scale) and the scan
// kernels that score encoded rows against fp32 query vectors. The scans are memory-bound; the
// x86-64 AVX2/FMA/F16C versions are picked at run time, with portable loops elsewhere.
#pragma once

#include <cstdint>
#include <vector>

#include "mmsearch/segment.h"

namespace mmsearch::kernels {

// Encodes `rows` rows of `dim` floats into `out` (resized); int8 also fills `scales`.
void encode_rows(VectorEncoding encoding, const float* values, std::int64_t rows, int dim,
                 std::vector<std::uint8_t>& out, std::vector<float>& scales);
// Decodes rows [first, first + count) of an encoded array into `out` (count * dim floats).
void decode_rows(ArrayType type, const std::uint8_t* data, const float* scales, std::int64_t first,
                 std::int64_t count, int dim, float* out);

// out[i] = max over the query rows q of (row i . q), for rows [0, count) of an encoded array
// (`data` and `scales` point at row 0 of the range). query: query_rows x dim floats.
void scan_rows(ArrayType type, const std::uint8_t* data, const float* scales, std::int64_t count,
               int dim, const float* query, int query_rows, float* out);

}  // namespace mmsearch::kernels
