#include "table_cell.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <vector>

namespace mmsearch::cli {
namespace {

struct CodePoint {
  std::size_t begin, end;  // byte range in the text
  UChar32 value;           // U+FFFD for an ill-formed byte
};

CodePoint next_code_point(std::string_view text, std::size_t at) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  std::int32_t i = static_cast<std::int32_t>(at);
  UChar32 c;
  U8_NEXT(bytes, i, static_cast<std::int32_t>(text.size()), c);
  return {at, static_cast<std::size_t>(i), c < 0 ? 0xFFFD : c};
}

std::size_t columns(UChar32 c) {
  const auto category = static_cast<UCharCategory>(u_charType(c));
  if (category == U_NON_SPACING_MARK || category == U_ENCLOSING_MARK || category == U_FORMAT_CHAR ||
      c == 0x200B) {
    return 0;
  }
  const auto east_asian =
      static_cast<UEastAsianWidth>(u_getIntPropertyValue(c, UCHAR_EAST_ASIAN_WIDTH));
  if (east_asian == U_EA_WIDE || east_asian == U_EA_FULLWIDTH ||
      u_hasBinaryProperty(c, UCHAR_EMOJI_PRESENTATION)) {
    return 2;
  }
  return 1;
}

bool is_control(UChar32 c) { return u_charType(c) == U_CONTROL_CHAR || c == 0x2028 || c == 0x2029; }

}  // namespace

std::string table_cell(std::string_view text, std::size_t width, bool pad, Cut cut) {
  static constexpr std::string_view kEllipsis = "...";
  struct Piece {
    std::string_view bytes;  // a control character becomes a space
    std::size_t columns;
  };
  std::vector<Piece> pieces;
  std::size_t total = 0;
  for (std::size_t at = 0; at < text.size();) {
    const CodePoint cp = next_code_point(text, at);
    at = cp.end;
    // Ill-formed bytes are kept as they are (the terminal shows its replacement character).
    const Piece piece = is_control(cp.value)
                            ? Piece{" ", 1}
                            : Piece{text.substr(cp.begin, cp.end - cp.begin), columns(cp.value)};
    pieces.push_back(piece);
    total += piece.columns;
  }
  const bool fits = total <= width;
  const std::size_t budget = fits ? width : (width > kEllipsis.size() ? width - 3 : 0);
  // The pieces kept: a prefix (Cut::kEnd) or a suffix (Cut::kStart) within the budget.
  std::size_t used = 0, first = 0, last = pieces.size();
  if (!fits && cut == Cut::kEnd) {
    last = 0;
    while (last < pieces.size() && used + pieces[last].columns <= budget)
      used += pieces[last++].columns;
  } else if (!fits) {
    first = pieces.size();
    while (first > 0 && used + pieces[first - 1].columns <= budget) used += pieces[--first].columns;
  } else {
    used = total;
  }
  std::string cell;
  const std::size_t dots = fits ? 0 : std::min(kEllipsis.size(), width - used);
  if (cut == Cut::kStart) cell.append(kEllipsis.substr(0, dots));
  for (std::size_t i = first; i < last; ++i) cell.append(pieces[i].bytes);
  if (cut == Cut::kEnd) cell.append(kEllipsis.substr(0, dots));
  used += dots;
  if (pad && used < width) cell.append(width - used, ' ');
  return cell;
}

}  // namespace mmsearch::cli
