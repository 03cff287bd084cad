// Internal: pieces of the segment format shared by segment_header.cpp (parsing, kept free of
// libtorch for the fuzzer) and segment.cpp (building and mapping).
#pragma once

#include <cstdint>
#include <vector>

#include "mmsearch/segment.h"

namespace mmsearch {

// What to do about a damaged segment; every corruption message ends with it.
inline constexpr const char* kRebuildAdvice =
    "re-index the folder with `mmsearch index DIR --rebuild` to rewrite its vectors";

// The fixed prefix, the header JSON and its checksum, ready to be written at offset 0.
std::vector<std::uint8_t> serialize_segment_prefix(const SegmentHeader& header);
// Bytes the prefix takes for a header JSON of this length.
std::size_t segment_prefix_bytes(std::size_t header_json_bytes);

}  // namespace mmsearch
