// EXIF Orientation: where to find it in each container, and Pillow's exif_transpose mapping.
//
// Photos from phones store the sensor's pixel order and say in EXIF how to turn them. The user
// sees the turned picture, so decode_image applies it by default (Pillow's
// ImageOps.exif_transpose); LAVIS itself never does (apply_exif_orientation = false).
#include <cstring>
#include <utility>

#include "image_internal.h"

namespace mmsearch::image_detail {
namespace {

std::uint32_t read_u16(const std::uint8_t* p, bool little) {
  return little ? (p[0] | (p[1] << 8)) : ((p[0] << 8) | p[1]);
}
std::uint32_t read_u32(const std::uint8_t* p, bool little) {
  return little ? (p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::uint32_t>(p[3]) << 24))
                : ((static_cast<std::uint32_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]);
}

// Orientation tag (0x0112) of IFD0 in a TIFF-structured block ("II*\0" / "MM\0*" ...).
int orientation_from_tiff(const std::uint8_t* data, std::size_t size) {
  if (size >= 6 && std::memcmp(data, "Exif\0\0", 6) == 0) {
    data += 6;
    size -= 6;
  }
  if (size < 8) return 1;
  bool little;
  if (data[0] == 'I' && data[1] == 'I') {
    little = true;
  } else if (data[0] == 'M' && data[1] == 'M') {
    little = false;
  } else {
    return 1;
  }
  if (read_u16(data + 2, little) != 42) return 1;
  const std::uint32_t ifd = read_u32(data + 4, little);
  if (ifd > size || size - ifd < 2) return 1;
  const std::uint32_t count = read_u16(data + ifd, little);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t entry = ifd + 2 + static_cast<std::size_t>(i) * 12;
    if (entry + 12 > size) return 1;
    if (read_u16(data + entry, little) != 0x0112) continue;
    const std::uint32_t type = read_u16(data + entry + 2, little);
    std::uint32_t value = 0;
    if (type == 3) {  // SHORT
      value = read_u16(data + entry + 8, little);
    } else if (type == 4) {  // LONG
      value = read_u32(data + entry + 8, little);
    }
    return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
  }
  return 1;
}

int orientation_from_jpeg(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 2;  // after SOI
  while (pos + 4 <= size) {
    if (data[pos] != 0xFF) return 1;
    const std::uint8_t marker = data[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // scan data or end: no more metadata
    const std::size_t length = (data[pos + 2] << 8) | data[pos + 3];
    if (length < 2 || pos + 2 + length > size) return 1;
    const std::uint8_t* payload = data + pos + 4;
    const std::size_t payload_size = length - 2;
    if (marker == 0xE1 && payload_size >= 6 && std::memcmp(payload, "Exif\0\0", 6) == 0) {
      return orientation_from_tiff(payload, payload_size);
    }
    pos += 2 + length;
  }
  return 1;
}

int orientation_from_png(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 8;
  while (pos + 12 <= size) {
    const std::uint32_t length = read_u32(data + pos, false);
    if (length > size - pos - 12) return 1;
    const std::uint8_t* type = data + pos + 4;
    if (std::memcmp(type, "eXIf", 4) == 0) return orientation_from_tiff(data + pos + 8, length);
    if (std::memcmp(type, "IDAT", 4) == 0 || std::memcmp(type, "IEND", 4) == 0) return 1;
    pos += 12 + static_cast<std::size_t>(length);
  }
  return 1;
}

int orientation_from_webp(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 12;
  while (pos + 8 <= size) {
    const std::uint32_t length = read_u32(data + pos + 4, true);
    if (length > size - pos - 8) return 1;
    if (std::memcmp(data + pos, "EXIF", 4) == 0)
      return orientation_from_tiff(data + pos + 8, length);
    pos += 8 + static_cast<std::size_t>(length) + (length & 1);
  }
  return 1;
}

}  // namespace

int exif_orientation(ImageFormat format, const std::uint8_t* data, std::size_t size) {
  switch (format) {
    case ImageFormat::kJpeg:
      return orientation_from_jpeg(data, size);
    case ImageFormat::kPng:
      return orientation_from_png(data, size);
    case ImageFormat::kWebp:
      return orientation_from_webp(data, size);
    case ImageFormat::kTiff:
      return orientation_from_tiff(data, size);
    default:
      return 1;
  }
}

RgbImage apply_orientation(RgbImage image, int orientation) {
  if (orientation < 2 || orientation > 8) return image;
  const int w = image.width, h = image.height;
  const bool swap = orientation >= 5;  // transpose, rotate 270/90, transverse
  RgbImage out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(image.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      // Source coordinates of output (x, y) for Pillow's transpose methods.
      int sx = x, sy = y;
      switch (orientation) {
        case 2:
          sx = w - 1 - x;
          break;  // FLIP_LEFT_RIGHT
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;  // ROTATE_180
        case 4:
          sy = h - 1 - y;
          break;  // FLIP_TOP_BOTTOM
        case 5:
          sx = y;
          sy = x;
          break;  // TRANSPOSE
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;  // ROTATE_270 (90 clockwise)
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;  // TRANSVERSE
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;  // ROTATE_90 (90 counter-clockwise)
      }
      const std::uint8_t* s = &image.pixels[(static_cast<std::size_t>(sy) * w + sx) * 3];
      std::uint8_t* d = &out.pixels[(static_cast<std::size_t>(y) * out.width + x) * 3];
      d[0] = s[0];
      d[1] = s[1];
      d[2] = s[2];
    }
  }
  return out;
}

}  // namespace mmsearch::image_detail
