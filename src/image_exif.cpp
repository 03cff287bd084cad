// EXIF Orientation: where to find it in each container, and Pillow's exif_transpose mapping.
//
// Photos from phones store the sensor's pixel order and say in EXIF how to turn them. The user
// sees the turned picture, so decode_image applies it by default (Pillow's
// ImageOps.exif_transpose); LAVIS itself never does (apply_exif_orientation = false).
//
// Finding the EXIF block in each container is ours (a walk over JPEG segments, PNG chunks or
// WebP chunks); the block is parsed by libexif. Pillow 9.4's getexif() reads:
// - JPEG: the first APP1 segment that starts with "Exif\0\0" (libexif on the whole file would
//   give up at an earlier APP1, e.g. XMP);
// - PNG: the eXIf chunk, also after IDAT (Pillow reads the trailing chunks on load), the last
//   one winning; its data is the TIFF structure without the "Exif\0\0" prefix;
// - WebP: the EXIF chunk, with or without that prefix;
// - TIFF: the file's own IFD0.
// Only IFD0's Orientation counts (Pillow's Exif.get(0x0112)); libexif's exif_data_get_entry
// would also look in IFD1 (the thumbnail's), so IFD0 is asked directly.
#include <libexif/exif-data.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

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

constexpr std::uint8_t kExifHeader[6] = {'E', 'x', 'i', 'f', 0, 0};

int valid_or_1(long long value) { return value >= 1 && value <= 8 ? static_cast<int>(value) : 1; }

struct ExifDataUnref {
  void operator()(ExifData* d) const { exif_data_unref(d); }
};

// Orientation in IFD0 of an EXIF block that starts with "Exif\0\0" (libexif wants the
// prefix, or a JPEG). 1 when absent or unreadable, as Pillow's exif_transpose does nothing then.
int orientation_from_exif_block(const std::uint8_t* block, std::size_t size) {
  std::unique_ptr<ExifData, ExifDataUnref> exif(exif_data_new());
  if (!exif) return 1;
  // Read the entries as stored: "following the specification" would add, drop and convert
  // entries after loading.
  exif_data_unset_option(exif.get(), EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
  // libexif reads at most 0xfffe bytes of a block (an APP1 segment's limit) anyway.
  exif_data_load_data(exif.get(), block,
                      static_cast<unsigned int>(std::min<std::size_t>(size, 0xfffe)));
  ExifEntry* entry = exif_content_get_entry(exif->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
  if (entry == nullptr || entry->data == nullptr || entry->components == 0) return 1;
  const ExifByteOrder order = exif_data_get_byte_order(exif.get());
  // Pillow reads the first value of any integer type as an int (the tag is defined with one
  // value); a rational compares equal to its integer value.
  switch (entry->format) {
    case EXIF_FORMAT_BYTE:
      return valid_or_1(entry->data[0]);
    case EXIF_FORMAT_SBYTE:
      return valid_or_1(static_cast<std::int8_t>(entry->data[0]));
    case EXIF_FORMAT_SHORT:
      return valid_or_1(exif_get_short(entry->data, order));
    case EXIF_FORMAT_SSHORT:
      return valid_or_1(exif_get_sshort(entry->data, order));
    case EXIF_FORMAT_LONG:
      return valid_or_1(exif_get_long(entry->data, order));
    case EXIF_FORMAT_SLONG:
      return valid_or_1(exif_get_slong(entry->data, order));
    case EXIF_FORMAT_RATIONAL: {
      const ExifRational r = exif_get_rational(entry->data, order);
      return r.denominator != 0 && r.numerator % r.denominator == 0
                 ? valid_or_1(r.numerator / r.denominator)
                 : 1;
    }
    default:  // ASCII, UNDEFINED, ...: not a number for Pillow either
      return 1;
  }
}

// The same for the TIFF structure alone (PNG eXIf, WebP EXIF without the prefix).
int orientation_from_tiff_structure(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> block(kExifHeader, kExifHeader + 6);
  block.insert(block.end(), data, data + std::min<std::size_t>(size, 0xfffe - 6));
  return orientation_from_exif_block(block.data(), block.size());
}

// TIFF files stay with a small reader of our own: libexif only parses "Exif\0\0" blocks
// (a TIFF file would have to be copied behind that prefix) and reads no more than 0xfffe bytes
// of one, while libtiff writes IFD0 after the image data (sample.tiff in ../shared/data/edge
// has it at offset 481672, so libexif finds no IFD0 there). Pillow reads the file's IFD0
// wherever it is.
int orientation_from_tiff_file(const std::uint8_t* data, std::size_t size) {
  if (size < 8) return 1;
  const bool little = data[0] == 'I';
  const std::uint32_t ifd = read_u32(data + 4, little);
  if (ifd > size || size - ifd < 2) return 1;
  const std::uint32_t count = read_u16(data + ifd, little);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t entry = ifd + 2 + static_cast<std::size_t>(i) * 12;
    if (entry + 12 > size) return 1;
    if (read_u16(data + entry, little) != 0x0112) continue;
    switch (read_u16(data + entry + 2, little)) {  // type; the first value is inline
      case 3:                                      // SHORT
        return valid_or_1(read_u16(data + entry + 8, little));
      case 4:  // LONG
        return valid_or_1(read_u32(data + entry + 8, little));
      default:
        return 1;
    }
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
    if (marker == 0xE1 && payload_size >= 6 && std::memcmp(payload, kExifHeader, 6) == 0) {
      return orientation_from_exif_block(payload, payload_size);
    }
    pos += 2 + length;
  }
  return 1;
}

int orientation_from_png(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 8;
  int orientation = 1;
  while (pos + 12 <= size) {
    const std::uint32_t length = read_u32(data + pos, false);
    if (length > size - pos - 12) break;
    const std::uint8_t* type = data + pos + 4;
    if (std::memcmp(type, "eXIf", 4) == 0) {
      orientation = orientation_from_tiff_structure(data + pos + 8, length);
    }
    if (std::memcmp(type, "IEND", 4) == 0) break;
    pos += 12 + static_cast<std::size_t>(length);
  }
  return orientation;
}

int orientation_from_webp(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 12;
  while (pos + 8 <= size) {
    const std::uint32_t length = read_u32(data + pos + 4, true);
    if (length > size - pos - 8) return 1;
    if (std::memcmp(data + pos, "EXIF", 4) == 0) {
      const std::uint8_t* payload = data + pos + 8;
      return length >= 6 && std::memcmp(payload, kExifHeader, 6) == 0
                 ? orientation_from_exif_block(payload, length)
                 : orientation_from_tiff_structure(payload, length);
    }
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
      return orientation_from_tiff_file(data, size);
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
