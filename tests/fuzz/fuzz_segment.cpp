// libFuzzer target for the vector segment header parser: any bytes must give a parsed header
// whose arrays lie inside the buffer, or Error(kIndex), never a crash or an out-of-bounds read.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mmsearch/error.h"
#include "mmsearch/segment.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
  // Half the inputs get their header checksum fixed up, so that mutations reach the JSON and
  // the layout checks behind it instead of stopping at the checksum.
  std::vector<std::uint8_t> bytes(input, input + size);
  if (size >= 16 && (size & 1)) {
    std::uint32_t length = 0;
    std::memcpy(&length, bytes.data() + 12, 4);
    if (length <= size && 16 + static_cast<std::size_t>(length) + 8 <= size) {
      const std::uint64_t sum = XXH3_64bits(bytes.data() + 16, length);
      std::memcpy(bytes.data() + 16 + length, &sum, 8);
    }
  }
  const std::uint8_t* data = bytes.data();
  try {
    const mmsearch::SegmentHeader header = mmsearch::parse_segment_header(data, size, "fuzz");
    // Touch the last byte of every array and of its checksums: the parser promised they exist.
    volatile std::uint8_t sink = 0;
    for (const mmsearch::SegmentArray& a : header.arrays) {
      if (a.data_bytes() > 0) sink = sink ^ data[a.offset + a.data_bytes() - 1];
      if (a.blocks() > 0) sink = sink ^ data[a.checksums_offset + a.blocks() * 8 - 1];
    }
  } catch (const mmsearch::Error&) {
  }
  return 0;
}
