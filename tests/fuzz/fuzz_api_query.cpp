// libFuzzer target for the body of `POST /api/query` (mmsearch/api_request.h): any bytes must
// give a checked request or Error(kUsage) (which the server answers with 400), never a crash,
// another exception or a sanitizer report; and what parses must keep the limits it promises.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mmsearch/api_request.h"
#include "mmsearch/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const mmsearch::ApiLimits limits;
  try {
    const mmsearch::ApiQuery query = mmsearch::parse_api_query(body, limits);
    const bool ok =
        !query.terms.empty() && query.terms.size() <= limits.max_terms && query.k >= 1 &&
        query.offset >= 0 && query.offset + query.k <= limits.max_k && query.rerank >= 0 &&
        query.rerank <= limits.max_rerank &&
        std::all_of(query.terms.begin(), query.terms.end(), [](const mmsearch::ApiQueryTerm& t) {
          return std::isfinite(t.weight) && !t.value.empty();
        });
    if (!ok) std::abort();
  } catch (const mmsearch::Error& e) {
    if (e.kind() != mmsearch::ErrorKind::kUsage) std::abort();
  }
  // The base64 reader on its own, on the raw bytes.
  try {
    mmsearch::decode_base64(body);
  } catch (const mmsearch::Error& e) {
    if (e.kind() != mmsearch::ErrorKind::kUsage) std::abort();
  }
  return 0;
}
