// libFuzzer target for the bundle weight-file parser (src/weight_layout.cpp): any bytes must
// give a layout whose tensors lie inside the buffer, or Error(kModel), never a crash or an
// out-of-bounds read.
#include <cstddef>
#include <cstdint>

#include "mmsearch/error.h"
#include "mmsearch/weight_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const mmsearch::WeightLayout layout = mmsearch::parse_weight_layout(data, size, "fuzz");
    volatile std::uint8_t sink = 0;
    for (const auto& [name, entry] : layout.tensors) {
      if (entry.bytes > 0) sink = sink ^ data[entry.offset + entry.bytes - 1];
    }
  } catch (const mmsearch::Error&) {
  }
  return 0;
}
