// Terminal table cells: widths in columns, not bytes, so that accented, CJK and emoji text
// lines up (printf's %-40s counts bytes).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mmsearch::cli {

enum class Cut {
  kEnd,    // "a long capt..." (captions, categories)
  kStart,  // "...photos/2024/red.png": a path keeps its file name
};

// The text on one line (newlines, tabs and other control characters become spaces), cut to at
// most `width` columns with "..." where it was cut, and padded with spaces to exactly `width`
// unless pad is false (the last column). Cuts fall between characters, never inside one.
// Columns are counted as a terminal shows them: 0 for combining marks and format characters, 2
// for East Asian wide/fullwidth and emoji-presentation characters, 1 otherwise; a byte that is
// not part of valid UTF-8 counts as one (it is shown as U+FFFD).
std::string table_cell(std::string_view text, std::size_t width, bool pad = true,
                       Cut cut = Cut::kEnd);

}  // namespace mmsearch::cli
