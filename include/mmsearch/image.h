// Image decoding and LAVIS-exact preprocessing.
//
// Pipeline: decode_image() -> RGB uint8 (as Pillow's Image.open(p).convert("RGB"), with EXIF
// orientation applied unless disabled) -> resize_bicubic_pil() (bit-exact Pillow 9.4 BICUBIC)
// -> normalize_to_chw() (ToTensor + Normalize, float32 [3,H,W]).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace mmsearch {

// An 8-bit RGB image, row-major, interleaved: pixels[(y * width + x) * 3 + c].
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;
};

struct DecodeOptions {
  // Rotate/flip by the EXIF Orientation tag, as the user sees the photo. false = strict LAVIS.
  bool apply_exif_orientation = true;
  // Decompression-bomb guard: images with more pixels than this are refused (Error kInput).
  std::int64_t max_pixels = 178956970;  // Pillow's hard limit (2 * MAX_IMAGE_PIXELS)
  // 16-bit greyscale PNG: Pillow opens it as mode "I" and convert("RGB") clips every value
  // above 255 to white, so LAVIS sees an almost white picture. By default we do the same, so
  // that vectors equal LAVIS's; false keeps the high byte instead (value >> 8, what Pillow does
  // for every other 16-bit PNG layout and closer to what a viewer shows).
  bool pillow_clip_16bit_grey = true;
  // Called with the header's dimensions once the bomb guard has passed and before any pixel
  // buffer exists (GIF: again for the canvas); may block, which is how `index` keeps its
  // concurrent decodes within --decode-memory.
  std::function<void(std::int64_t width, std::int64_t height)> on_dimensions;
};

// Decodes JPEG, PNG (8/16 bit, grey, palette, alpha), WebP, BMP, TIFF and GIF (first frame) to
// RGB exactly as Pillow 9.4's Image.open(p).convert("RGB") does (alpha dropped without
// compositing, grey replicated, palette expanded, CMYK JPEG as Pillow converts it; see
// pillow_clip_16bit_grey for the one chosen difference). The format is found from the content,
// not the name. Truncated files are refused, as Pillow does by default. Throws Error(kInput)
// whose message is "<name>: <reason>" (unreadable, empty, not an image, corrupt, truncated,
// above max_pixels); the pixel limit is checked on the header before any pixel buffer exists.
RgbImage decode_image(const std::filesystem::path& path, const DecodeOptions& options = {});
RgbImage decode_image_from_memory(const std::uint8_t* data, std::size_t size,
                                  const std::string& name_for_errors,
                                  const DecodeOptions& options = {});

// True when the file's leading bytes are a known image signature (indexing finds images by
// content, not by extension). Never throws; unreadable files return false.
bool looks_like_image(const std::filesystem::path& path);

// The MIME type of an image's bytes by the same signatures decoding uses ("image/jpeg", ...),
// "application/octet-stream" for anything else.
const char* image_mime_type(const std::uint8_t* data, std::size_t size);

// Whether a name ends in an image extension (.jpg .jpeg .jpe .png .gif .bmp .tif .tiff .webp,
// any case): such a file that is not an image is reported, where other non-images are ignored.
bool has_image_extension(const std::filesystem::path& path);

// What a file's leading bytes say, for the folder walk: an image, not an image ("reason" says
// why: empty, unknown format), or unreadable ("reason" is the OS's).
struct ImageSniff {
  enum class Kind { kImage, kNotImage, kUnreadable } kind = Kind::kNotImage;
  std::string reason;
};
ImageSniff sniff_image_file(const std::filesystem::path& path);

// Pillow 9.4 Image.resize((out_width, out_height), BICUBIC): separable, antialiased when
// shrinking, fixed-point, uint8 between passes. Bit-exact.
RgbImage resize_bicubic_pil(const RgbImage& image, int out_width, int out_height);

// torchvision ToTensor + Normalize: float32 CHW, (pixel / 255 - mean[c]) / std[c].
std::vector<float> normalize_to_chw(const RgbImage& image, const std::array<float, 3>& mean,
                                    const std::array<float, 3>& std);

}  // namespace mmsearch
