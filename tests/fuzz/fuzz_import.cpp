// libFuzzer target: the parsers of `mmsearch import` on arbitrary bytes — the .npy header, a
// metadata.jsonl line and format.json. Each either parses to a consistent result or throws
// mmsearch::Error(kInput); no crash, no other exception, no memory error. A parsed metadata
// line written back by metadata_line() must parse to the same item. The first byte picks the
// parser, so one corpus covers all three (seed it with exported folders' files, each prefixed
// with 0, 1 or 2).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mmsearch/error.h"
#include "mmsearch/npy.h"
#include "mmsearch/vector_format.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

void fuzz_npy_header(std::string_view bytes) {
  const mmsearch::NpyHeader header = mmsearch::parse_npy_header(bytes, "fuzz.npy");
  check(header.data_offset <= bytes.size());
  check(header.data_offset == mmsearch::npy_header_length(bytes, "fuzz.npy"));
  std::int64_t count = 1;
  for (std::int64_t d : header.shape) {
    check(d >= 0);
    check(!__builtin_mul_overflow(count, d, &count));
  }
  check(count == header.count());
}

void fuzz_metadata_line(std::string_view bytes) {
  const mmsearch::VectorItem item = mmsearch::parse_metadata_line(bytes, "fuzz.jsonl", 1);
  check(!item.file.empty());
  const mmsearch::VectorItem again =
      mmsearch::parse_metadata_line(mmsearch::metadata_line(item), "again.jsonl", 1);
  check(again.file == item.file && again.category == item.category);
  check(again.captions.size() == item.captions.size());
  for (std::size_t c = 0; c < item.captions.size(); ++c) {
    check(again.captions[c].text == item.captions[c].text);
    check(again.captions[c].text_en == item.captions[c].text_en);
  }
}

void fuzz_format_json(std::string_view bytes) {
  const mmsearch::VectorFormat format = mmsearch::parse_format_json(bytes, "format.json");
  check(format.version >= 1 && format.version <= mmsearch::kVectorFormatVersion);
  const mmsearch::VectorFormat again =
      mmsearch::parse_format_json(mmsearch::format_json(format), "again.json");
  check(again.model == format.model && again.items == format.items);
  check(again.checksums == format.checksums);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0:
        fuzz_npy_header(bytes);
        break;
      case 1:
        fuzz_metadata_line(bytes);
        break;
      default:
        fuzz_format_json(bytes);
        break;
    }
  } catch (const mmsearch::Error& e) {
    if (e.kind() != mmsearch::ErrorKind::kInput) std::abort();
  }
  return 0;
}
