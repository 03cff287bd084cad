// `query --preview`: the results' thumbnails inline in the terminal, through the kitty or
// iTerm2 image protocol, or sixel by way of libsixel's img2sixel.
#pragma once

#include <cstdio>
#include <string>

#include "mmsearch/image.h"

namespace mmsearch::cli {

enum class PreviewProtocol { kNone, kKitty, kIterm, kSixel };

// The protocol for --preview VALUE (auto, kitty, iterm, sixel or none). "auto" picks one from
// the environment (KITTY_WINDOW_ID, TERM, TERM_PROGRAM, LC_TERMINAL) when stdout is a terminal,
// else none; `why` then says what was found, for the log. sixel needs img2sixel on PATH
// (Error(kUsage) when asked for by name without it).
PreviewProtocol choose_preview(const std::string& requested, bool stdout_is_terminal,
                               std::string& why);

// Writes `thumbnail` to `out` in that protocol, `rows` text lines high, then a newline.
// Returns false (writing nothing) when it could not (img2sixel failed).
bool print_preview(PreviewProtocol protocol, const RgbImage& thumbnail, int rows, std::FILE* out);

}  // namespace mmsearch::cli
