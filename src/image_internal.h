// Internal helpers shared by the image_*.cpp files. Not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mmsearch/image.h"

namespace mmsearch::image_detail {

enum class ImageFormat { kUnknown, kJpeg, kPng, kGif, kBmp, kTiff, kWebp };

// Identifies the container from its leading bytes (12 are enough).
ImageFormat sniff_format(const std::uint8_t* data, std::size_t size);

// Turns OpenCV's own logging off once per process, unless OPENCV_LOG_LEVEL asks for it: its
// decoders log what they refuse ("imdecode_(''): can't read header ...", libtiff's complaints)
// straight to stderr, while every refusal already reaches the user as one error naming the
// file. Call before any OpenCV codec.
void quiet_opencv_logging();

// Throws Error(kInput) "<name>: <reason>".
[[noreturn]] void fail(const std::string& name, const std::string& reason);

// The decompression-bomb guard, called with header dimensions before any pixel buffer exists.
void check_dimensions(std::int64_t width, std::int64_t height, const std::string& name,
                      const DecodeOptions& options);

// EXIF Orientation (1..8) found in the file's metadata, 1 when absent or unreadable. Reads the
// same places Pillow's getexif() does for each format: JPEG APP1 "Exif", PNG eXIf, WebP EXIF
// (parsed by libexif), TIFF IFD0.
int exif_orientation(ImageFormat format, const std::uint8_t* data, std::size_t size);

// Pillow's ImageOps.exif_transpose pixel mapping for orientation 1..8.
RgbImage apply_orientation(RgbImage image, int orientation);

// GIF through giflib (OpenCV 4.6 has no GIF reader): the first frame, as Pillow 9.4
// composes it.
RgbImage decode_gif_first_frame(const std::uint8_t* data, std::size_t size, const std::string& name,
                                const DecodeOptions& options);

}  // namespace mmsearch::image_detail
