// The text parts of the vector folder format that `mmsearch import` reads and
// `mmsearch export-vectors` writes (models/README.md, "Vector import/export format"): the
// lines of metadata.jsonl and format.json. Kept apart from the streaming in vector_import.h so
// that the parsers can be fuzzed without the store (tests/fuzz/fuzz_import.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "mmsearch/index.h"

namespace mmsearch {

inline constexpr const char* kVectorFormatName = "mmsearch-vectors";
inline constexpr int kVectorFormatVersion = 1;  // the newest version this build reads and writes

inline constexpr const char* kFormatFileName = "format.json";
inline constexpr const char* kMetadataFileName = "metadata.jsonl";

// One line of metadata.jsonl: {"file": ..., "captions": [...], "captions_en": [...],
// "category": ...}; only "file" is required.
struct VectorItem {
  std::string file;  // as written: absolute, or relative to the import root
  std::string category;
  std::vector<Caption> captions;  // text_en from "captions_en" ("" when absent)
};

// Parses one line (without its newline; a trailing '\r' is ignored). Keys other than the four
// are ignored, so later versions can add some. Throws Error(kInput) "<source>:<line_number>:
// <reason>" for bad JSON, a missing or empty "file", a value of the wrong type, or
// "captions_en" not as long as "captions".
VectorItem parse_metadata_line(std::string_view line, const std::string& source,
                               std::int64_t line_number);
// The line for `item` (no newline): "captions" only with captions, "captions_en" only when some
// caption has an English text, "category" only when not empty.
std::string metadata_line(const VectorItem& item);

// format.json. A folder without it is version 1 of the format without checksums.
struct VectorFormat {
  int version = kVectorFormatVersion;
  std::string model;                             // identity of the bundle that wrote it, or ""
  std::int64_t items = -1;                       // -1 when not given
  std::int64_t captions = -1;                    // -1 when not given
  std::map<std::string, std::string> checksums;  // file name -> "xxh64:<16 hex>"
  std::string created_by;                        // e.g. "mmsearch 0.1.0"; informational
};

// Throws Error(kInput) naming `source` for text that is not a JSON object, another "format",
// a "format_version" newer than kVectorFormatVersion (saying which mmsearch reads it), or
// fields of the wrong type.
VectorFormat parse_format_json(std::string_view text, const std::string& source);
std::string format_json(const VectorFormat& format);

}  // namespace mmsearch
