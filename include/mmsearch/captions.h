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
//
// Header names are matched after trimming spaces and a UTF-8 byte order mark, ignoring ASCII
// case (`File,Caption` as spreadsheets write it); aliases: `filename`/`path`, `text`.
//
// Damaged quoting (csv, tsv). libcsv reads the file in strict mode, fed one line at a time so
// that every field is known by the line it starts on. A table is damaged where
//   * libcsv cannot parse it: a closing quote followed by other text, a quote inside an
//     unquoted field (RFC 4180 wants `"a 12"" pizza"`), or a quoted field still open at the
//     end of the file (an unterminated quote); or
//   * a quoted field runs away: one of its later lines reads as a row of its own (split at the
//     delimiter, its `file` column names a file in DIR). This catches an unterminated quote
//     that libcsv closes, silently, at some later quote that happens to end a field; a genuine
//     multi-line caption has no line that starts like a row, and is kept.
// Strict (the default): damage is Error(kInput) naming the file, the line where the damaged
// field starts, the reason and `--lenient-captions`. Lenient (CaptionOptions::lenient): the
// damaged row, from its first line to the line where its damaged field starts, is skipped with
// a warning, and parsing starts afresh on the next line (re-sync), so every row before and
// after it is kept. A damaged header row is an error in both modes.
// captions.jsonl: a line that is not JSON is damage in the same sense (an error, or a warning
// and the line skipped when lenient).
//
// Row warnings (either mode; named by captions file and line; the row is skipped unless said):
// too few columns, not valid UTF-8, a jsonl value that is not a {"file": ...} object, a `file`
// outside DIR or naming no file in it, an exact repeat of an earlier row (same file, same
// caption: kept once), and captions beyond kMaxCaptionsPerImage for one image. After
// kMaxWarningsPerKind warnings of one kind the rest are counted in one line.
//
// File names are matched by their Unicode NFC form, component by component, so a row typed in
// NFC finds a file stored in NFD (as macOS writes names) and the reverse. The table's key is
// the name as found on disk; the files' stored paths are never rewritten.
//
// Limits, so one image's captions cannot take unbounded memory when embedded: at most
// kMaxCaptionsPerImage captions per image (table rows beyond it are skipped with a warning);
// a sidecar larger than kMaxSidecarBytes, or with more captions than that, is refused as a
// whole: Error(kInput) naming it, which scan_folder reports as a warning (the image keeps its
// category and gets no captions).
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mmsearch {

constexpr std::size_t kMaxCaptionsPerImage = 1000;
constexpr std::size_t kMaxSidecarBytes = std::size_t{4} << 20;  // 4 MiB
constexpr std::size_t kMaxWarningsPerKind = 20;

struct CaptionInfo {
  std::vector<std::string> captions;
  std::string category;
};

struct CaptionTable {
  std::filesystem::path source;                // the captions file read, empty when none
  std::map<std::string, CaptionInfo> by_path;  // key: normalize_index_path(DIR / file on disk)
  std::vector<std::string> warnings;           // rows skipped or repeated, by file and line
};

struct CaptionOptions {
  // Damaged rows (see above) are skipped with a warning instead of stopping the run
  // (`index --lenient-captions`).
  bool lenient = false;
};

// Reads the folder's captions file, if any. Throws Error(kInput) for a file that cannot be
// read, a header without `file` and `caption` columns, and (unless options.lenient) damage.
CaptionTable read_caption_table(const std::filesystem::path& root,
                                const CaptionOptions& options = {});

// Captions and category for one image: the table's entry, else its sidecar, else none; the
// category falls back to the first sub-folder under root. Throws Error(kInput) naming the
// sidecar when it is not valid UTF-8 or over the limits above.
CaptionInfo captions_for(const CaptionTable& table, const std::filesystem::path& root,
                         const std::filesystem::path& image);

}  // namespace mmsearch
