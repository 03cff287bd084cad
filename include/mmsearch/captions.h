// Captions and categories for a folder being indexed.
//
// Sources, first match wins per image:
//   1. DIR/captions.csv, DIR/captions.tsv (header row with columns `file`, `caption` and an
//      optional `category`; RFC 4180 quoting) or DIR/captions.jsonl (one object per line with
//      the same keys). `file` is relative to DIR. Several rows for one file give several
//      captions.
//   2. A sidecar text file next to the image: `x.txt` for `x.jpg`; each non-empty line is a
//      caption.
// The category, when no captions file gives one, is the first sub-folder under DIR
// (`dishes/pizza/a.jpg` -> "pizza"); files directly in DIR have none.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mmsearch {

struct CaptionInfo {
  std::vector<std::string> captions;
  std::string category;
};

struct CaptionTable {
  std::filesystem::path source;                // the captions file read, empty when none
  std::map<std::string, CaptionInfo> by_path;  // key: normalize_index_path(DIR / file)
  std::vector<std::string> warnings;           // malformed rows, named by file and line
};

// Reads the folder's captions file, if any. A malformed file throws Error(kInput) naming it
// and the line; a malformed row is skipped with a warning.
CaptionTable read_caption_table(const std::filesystem::path& root);

// Captions and category for one image: the table's entry, else its sidecar, else none; the
// category falls back to the first sub-folder under root.
CaptionInfo captions_for(const CaptionTable& table, const std::filesystem::path& root,
                         const std::filesystem::path& image);

}  // namespace mmsearch
