// Small previews of photos: for the web page's grid (`serve`) and the terminal (`query
// --preview`). Encoded in memory; nothing is written next to the photos.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "mmsearch/image.h"

namespace mmsearch {

// The image scaled (area average, aspect kept) so that its longer side is at most max_side;
// smaller images are returned as they are.
RgbImage fit_within(const RgbImage& image, int max_side);

// JPEG (quality 1-100) or PNG bytes of an image. Throws Error(kInternal) if encoding fails.
std::string encode_jpeg(const RgbImage& image, int quality = 85);
std::string encode_png(const RgbImage& image);

// Decodes `path` (EXIF orientation and the bomb guard as `decode` says) and fits it within
// max_side. Throws Error(kInput) as decode_image does.
RgbImage load_thumbnail(const std::filesystem::path& path, int max_side,
                        const DecodeOptions& decode = {});

}  // namespace mmsearch
