// Decoding to RGB exactly as Pillow 9.4's Image.open(p).convert("RGB").
//
// Measured against Pillow on ../shared/data (tests/cpp/test_image.cpp): OpenCV's imdecode is
// not used for JPEG and PNG because it differs from Pillow there. JPEG: OpenCV converts CMYK
// with its own formula (Pillow inverts Adobe CMYK and uses its cmyk2rgb), and rotates by EXIF
// unless told otherwise. PNG: Pillow reads 16-bit greyscale as mode "I" and clips on
// convert("RGB"), keeps the high byte of 16-bit colour, and ignores gamma. So JPEG goes through
// libjpeg(-turbo) with Pillow's settings (ISLOW DCT, fancy upsampling, the library's YCbCr->RGB)
// and PNG through libpng; BMP, TIFF and WebP through OpenCV (same pixels as Pillow, see tests);
// GIF through giflib (image_gif.cpp), since OpenCV 4.6 has no GIF reader.
//
// Every decoder reads the header dimensions and applies the pixel limit before allocating the
// pixel buffer, so a decompression bomb costs a few bytes of reading.
// jpeglib.h needs FILE and size_t declared before it.
#include <cstddef>
#include <cstdio>
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "image_internal.h"
#include "mmsearch/error.h"

namespace mmsearch {
namespace image_detail {

void quiet_opencv_logging() {
  static const bool quiet = [] {
    if (!std::getenv("OPENCV_LOG_LEVEL")) {
      cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    }
    return true;
  }();
  (void)quiet;
}

[[noreturn]] void fail(const std::string& name, const std::string& reason) {
  throw Error(ErrorKind::kInput, name + ": " + reason);
}

void check_dimensions(std::int64_t width, std::int64_t height, const std::string& name,
                      const DecodeOptions& options) {
  if (width <= 0 || height <= 0) {
    fail(name, "invalid image size " + std::to_string(width) + "x" + std::to_string(height));
  }
  // Compared by division: a header may claim sides near 2^32 (TIFF), whose product overflows
  // int64 (found by fuzz_image_decode).
  if (width > options.max_pixels / height) {
    const bool product_fits = width <= std::numeric_limits<std::int64_t>::max() / height;
    fail(name, "image is " + std::to_string(width) + "x" + std::to_string(height) +
                   (product_fits ? " = " + std::to_string(width * height) : std::string()) +
                   " pixels, above the limit of " + std::to_string(options.max_pixels) +
                   " (decompression-bomb guard; raise it with --max-pixels)");
  }
  // Buffers are indexed with int widths elsewhere.
  if (width > (1 << 24) || height > (1 << 24)) fail(name, "image side above 16777216 pixels");
  if (options.on_dimensions) options.on_dimensions(width, height);
}

ImageFormat sniff_format(const std::uint8_t* d, std::size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return ImageFormat::kJpeg;
  if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return ImageFormat::kPng;
  if (n >= 6 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0)) {
    return ImageFormat::kGif;
  }
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) {
    return ImageFormat::kWebp;
  }
  if (n >= 4 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0)) {
    return ImageFormat::kTiff;
  }
  // "BM" alone is too weak (text files start with it); also require a known DIB header size.
  if (n >= 18 && d[0] == 'B' && d[1] == 'M') {
    const std::uint32_t dib = d[14] | (d[15] << 8) | (d[16] << 16) | (d[17] << 24);
    if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124) {
      return ImageFormat::kBmp;
    }
  }
  return ImageFormat::kUnknown;
}

}  // namespace image_detail

namespace {

using image_detail::check_dimensions;
using image_detail::fail;
using image_detail::ImageFormat;
using image_detail::quiet_opencv_logging;

// ---------------------------------------------------------------- JPEG (libjpeg-turbo)

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings are silent (the library never prints), except running out of data: Pillow raises
// "image file is truncated" there (LOAD_TRUNCATED_IMAGES is off by default), and a picture
// with a grey bottom half would index as something it is not.
void jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "image file is truncated");
    std::longjmp(err->jump, 1);
  }
}

// Pillow's cmyk2rgb (libImaging/Convert.c, 9.x): RGB = (255 - K) - C * (255 - K) / 255 with
// MULDIV255 rounding.
inline std::uint8_t cmyk_channel(int c, int nk) {
  const int tmp = c * nk + 128;
  const int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

RgbImage decode_jpeg(const std::uint8_t* data, std::size_t size, const std::string& name,
                     const DecodeOptions& options) {
  // Objects with destructors live outside the setjmp region so longjmp skips none of them.
  RgbImage out;
  std::vector<std::uint8_t> row;
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  std::memset(&cinfo, 0, sizeof(cinfo));
  err.message[0] = '\0';
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit;
  err.pub.emit_message = jpeg_emit_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    fail(name, std::string("cannot decode JPEG: ") + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  try {  // the guard throws: free the decoder first (found by fuzz_image_decode as a leak)
    check_dimensions(cinfo.image_width, cinfo.image_height, name, options);
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  // Pillow's mode by component count: 1 -> L, 3 -> RGB, 4 -> CMYK (JpegImagePlugin.SOF).
  bool cmyk = false;
  switch (cinfo.num_components) {
    case 1:
      cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      cinfo.out_color_space = JCS_RGB;
      break;
    case 4:
      cinfo.out_color_space = JCS_CMYK;
      cmyk = true;
      break;
    default:
      jpeg_destroy_decompress(&cinfo);
      fail(name, "unsupported JPEG with " + std::to_string(cinfo.num_components) + " components");
  }
  // Pillow's decoder settings when not in draft mode (these are libjpeg's defaults, set here
  // so a different library default cannot change the pixels).
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  cinfo.do_block_smoothing = TRUE;
  cinfo.scale_num = cinfo.scale_denom = 1;
  jpeg_start_decompress(&cinfo);
  const int width = static_cast<int>(cinfo.output_width);
  const int height = static_cast<int>(cinfo.output_height);
  const int comps = cinfo.output_components;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  row.resize(static_cast<std::size_t>(width) * comps);
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = static_cast<int>(cinfo.output_scanline);
    JSAMPROW rows[1] = {row.data()};
    if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) break;
    std::uint8_t* dst = &out.pixels[static_cast<std::size_t>(y) * width * 3];
    if (comps == 3) {
      std::memcpy(dst, row.data(), row.size());
    } else if (comps == 1) {
      for (int x = 0; x < width; ++x) dst[x * 3] = dst[x * 3 + 1] = dst[x * 3 + 2] = row[x];
    } else if (cmyk) {
      // Pillow opens every 4-component JPEG with rawmode "CMYK;I" (Adobe convention: stored
      // inverted), then converts with cmyk2rgb.
      for (int x = 0; x < width; ++x) {
        const std::uint8_t* p = &row[x * 4];
        const int nk = 255 - (255 - p[3]);
        dst[x * 3 + 0] = cmyk_channel(255 - p[0], nk);
        dst[x * 3 + 1] = cmyk_channel(255 - p[1], nk);
        dst[x * 3 + 2] = cmyk_channel(255 - p[2], nk);
      }
    }
  }
  // jpeg_finish_decompress is skipped on purpose: it would read up to EOI and call a file
  // that lacks only the EOI marker truncated, which Pillow accepts.
  jpeg_destroy_decompress(&cinfo);
  return out;
}

// ---------------------------------------------------------------- PNG (libpng)

struct PngReader {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos;
  std::jmp_buf jump;
  char message[256];
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof(reader->message), "%s", msg);
  std::longjmp(reader->jump, 1);
}

void png_warning_fn(png_structp, png_const_charp) {}  // the library never prints

void png_read_fn(png_structp png, png_bytep out, png_size_t length) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (length > reader->size - reader->pos) png_error(png, "image file is truncated");
  std::memcpy(out, reader->data + reader->pos, length);
  reader->pos += length;
}

RgbImage decode_png(const std::uint8_t* data, std::size_t size, const std::string& name,
                    const DecodeOptions& options) {
  RgbImage out;
  std::vector<std::uint8_t> buffer;
  std::vector<png_bytep> rows;
  PngReader reader{data, size, 0, {}, {}};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_error_fn, png_warning_fn);
  if (png == nullptr) fail(name, "out of memory");
  png_infop info = png_create_info_struct(png);
  if (setjmp(reader.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail(name, std::string("cannot decode PNG: ") + reader.message);
  }
  if (info == nullptr) png_error(png, "out of memory");
  png_set_read_fn(png, &reader, png_read_fn);
  // Dimensions are checked by our own guard below, not by libpng's 1e6-per-side default.
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  // libpng allocates some ancillary chunks (eXIf, text, ICC profiles) at their declared length
  // before reading them, so a 64 KB file could ask for 2 GB (found by fuzz_image_decode),
  // outside the --decode-memory budget. None of them changes the pixels mmsearch reads (EXIF
  // orientation comes from src/image_exif.cpp's own reader), so they are skipped unread.
  static const png_byte kSkippedChunks[] = "eXIf\0iCCP\0iTXt\0tEXt\0zTXt\0sPLT\0pCAL\0sCAL";
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, kSkippedChunks,
                              static_cast<int>(sizeof kSkippedChunks / 5));
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  try {  // as for JPEG: the guard's exception must not leak the read struct
    check_dimensions(width, height, name, options);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  // Pillow maps 16-bit greyscale to mode "I" (32-bit int); every other 16-bit layout is read
  // as 8-bit by keeping the high byte ("RGB;16B", "LA;16B", "RGBA;16B").
  const bool grey16 = color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16;
  if (bit_depth == 16 && !grey16) png_set_strip_16(png);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // Alpha (also a tRNS colour key) is dropped by convert("RGB") without compositing.
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  const std::size_t rowbytes = png_get_rowbytes(png, info);
  buffer.resize(rowbytes * height);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = buffer.data() + y * rowbytes;
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);

  out.width = static_cast<int>(width);
  out.height = static_cast<int>(height);
  out.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  for (png_uint_32 y = 0; y < height; ++y) {
    const std::uint8_t* src = rows[y];
    std::uint8_t* dst = &out.pixels[static_cast<std::size_t>(y) * width * 3];
    for (png_uint_32 x = 0; x < width; ++x) {
      std::uint8_t r, g, b;
      if (grey16) {
        const int v = (src[x * 2] << 8) | src[x * 2 + 1];
        // Pillow's i2rgb clips, and so do we by default (see image.h).
        r = g = b = options.pillow_clip_16bit_grey ? static_cast<std::uint8_t>(v > 255 ? 255 : v)
                                                   : static_cast<std::uint8_t>(v >> 8);
      } else if (channels == 1) {
        r = g = b = src[x];
      } else {
        r = src[x * 3];
        g = src[x * 3 + 1];
        b = src[x * 3 + 2];
      }
      dst[x * 3] = r;
      dst[x * 3 + 1] = g;
      dst[x * 3 + 2] = b;
    }
  }
  return out;
}

// ---------------------------------------------------------------- BMP, TIFF, WebP (OpenCV)

std::uint32_t le16(const std::uint8_t* p) { return p[0] | (p[1] << 8); }
std::uint32_t le32(const std::uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint32_t be16(const std::uint8_t* p) { return (p[0] << 8) | p[1]; }
std::uint32_t be32(const std::uint8_t* p) {
  return (static_cast<std::uint32_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}

// Header dimensions for the formats handed to OpenCV, which has no header-only API; false
// when the header is not readable (the file is then refused: we cannot bound its size).
bool bmp_size(const std::uint8_t* d, std::size_t n, std::int64_t& w, std::int64_t& h) {
  if (n < 26) return false;
  const std::uint32_t dib = le32(d + 14);
  if (dib == 12) {
    w = le16(d + 18);
    h = le16(d + 20);
  } else {
    w = static_cast<std::int32_t>(le32(d + 18));
    h = static_cast<std::int32_t>(le32(d + 22));
    if (h < 0) h = -h;  // top-down bitmap
  }
  return true;
}

bool webp_size(const std::uint8_t* d, std::size_t n, std::int64_t& w, std::int64_t& h) {
  if (n < 30) return false;
  if (std::memcmp(d + 12, "VP8 ", 4) == 0) {
    if (d[23] != 0x9d || d[24] != 0x01 || d[25] != 0x2a) return false;
    w = le16(d + 26) & 0x3fff;
    h = le16(d + 28) & 0x3fff;
    return true;
  }
  if (std::memcmp(d + 12, "VP8L", 4) == 0) {
    if (d[20] != 0x2f) return false;
    const std::uint32_t bits = le32(d + 21);
    w = (bits & 0x3fff) + 1;
    h = ((bits >> 14) & 0x3fff) + 1;
    return true;
  }
  if (std::memcmp(d + 12, "VP8X", 4) == 0) {
    w = (d[24] | (d[25] << 8) | (d[26] << 16)) + 1;
    h = (d[27] | (d[28] << 8) | (d[29] << 16)) + 1;
    return true;
  }
  return false;
}

bool tiff_size(const std::uint8_t* d, std::size_t n, std::int64_t& w, std::int64_t& h) {
  if (n < 8) return false;
  const bool little = d[0] == 'I';
  auto u16 = [&](std::size_t off) { return little ? le16(d + off) : be16(d + off); };
  auto u32 = [&](std::size_t off) { return little ? le32(d + off) : be32(d + off); };
  const std::uint32_t ifd = u32(4);
  if (ifd > n || n - ifd < 2) return false;
  const std::uint32_t count = u16(ifd);
  w = h = -1;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t e = ifd + 2 + static_cast<std::size_t>(i) * 12;
    if (e + 12 > n) return false;
    const std::uint32_t tag = u16(e), type = u16(e + 2);
    if (tag != 256 && tag != 257) continue;
    const std::int64_t value = type == 3 ? u16(e + 8) : u32(e + 8);
    (tag == 256 ? w : h) = value;
  }
  return w >= 0 && h >= 0;
}

// OpenCV 4.6's imdecode writes to std::cerr when a decoder throws, which its BMP reader does
// at the end of the data, and the library must never print. So a BMP is only handed over once
// its pixel data is known to be all there: the size for uncompressed layouts, a walk of the
// run-length codes for RLE4/RLE8.
void validate_bmp(const std::uint8_t* d, std::size_t n, std::int64_t w, std::int64_t h,
                  const std::string& name) {
  if (n < 30) fail(name, "image file is truncated");
  const std::uint32_t offset = le32(d + 10);
  const std::uint32_t dib = le32(d + 14);
  const std::uint32_t bpp = dib == 12 ? le16(d + 24) : le16(d + 28);
  const std::uint32_t compression = dib == 12 ? 0 : (n >= 34 ? le32(d + 30) : 0);
  if (offset > n || offset < 14 + dib) fail(name, "corrupt BMP header");
  if (compression == 0 || compression == 3 || compression == 6) {
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32) {
      fail(name, "unsupported BMP bit depth " + std::to_string(bpp));
    }
    const std::uint64_t stride = ((static_cast<std::uint64_t>(w) * bpp + 31) / 32) * 4;
    if (stride * static_cast<std::uint64_t>(h) > n - offset) fail(name, "image file is truncated");
    return;
  }
  if ((compression == 1 && bpp == 8) || (compression == 2 && bpp == 4)) {
    std::size_t pos = offset;
    for (;;) {
      if (pos + 2 > n) fail(name, "image file is truncated");
      const std::uint8_t count = d[pos], code = d[pos + 1];
      pos += 2;
      if (count > 0) continue;  // encoded run
      if (code == 1) return;    // end of bitmap
      if (code == 0) continue;  // end of line
      if (code == 2) {          // delta
        pos += 2;
        continue;
      }
      std::size_t bytes = compression == 1 ? code : (code + 1) / 2;  // absolute run
      pos += bytes + (bytes & 1);
    }
  }
  fail(name, "unsupported BMP compression " + std::to_string(compression));
}

// OpenCV 4.6's imdecode also prints what its decoders throw straight to std::cerr
// ("imdecode_(''): can't read header: ...", found for TIFFs libtiff refuses), past its logger.
// Nothing else in mmsearch writes to std::cerr, so while any decode runs it has no buffer. The
// buffer is only swapped by the first decode to start and the last to end, so no write can
// race the swap.
class CerrSilenced {
 public:
  CerrSilenced() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (active_++ == 0) saved_ = std::cerr.rdbuf(nullptr);  // writes fail, silently
  }
  ~CerrSilenced() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--active_ == 0) std::cerr.rdbuf(saved_);  // clears the failure state too
  }
  CerrSilenced(const CerrSilenced&) = delete;
  CerrSilenced& operator=(const CerrSilenced&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int active_ = 0;
  static inline std::streambuf* saved_ = nullptr;
};

RgbImage decode_with_opencv(const std::uint8_t* data, std::size_t size, ImageFormat format,
                            const std::string& name, const DecodeOptions& options) {
  std::int64_t w = 0, h = 0;
  const bool known = format == ImageFormat::kBmp    ? bmp_size(data, size, w, h)
                     : format == ImageFormat::kWebp ? webp_size(data, size, w, h)
                                                    : tiff_size(data, size, w, h);
  if (!known) fail(name, "unreadable image header");
  check_dimensions(w, h, name, options);
  if (format == ImageFormat::kBmp) validate_bmp(data, size, w, h, name);
  cv::Mat mat;
  quiet_opencv_logging();
  try {
    const cv::Mat raw(1, static_cast<int>(size), CV_8UC1, const_cast<std::uint8_t*>(data));
    const CerrSilenced quiet;
    // UNCHANGED: keep alpha and depth so the conversion below is Pillow's, not OpenCV's;
    // orientation is applied by us (image_exif.cpp) when asked.
    mat = cv::imdecode(raw, cv::IMREAD_UNCHANGED | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    fail(name, std::string("cannot decode image: ") + e.what());
  }
  if (mat.empty()) fail(name, "cannot decode image (corrupt or unsupported variant)");
  if (mat.depth() == CV_16U) {
    // High byte, as Pillow's ";16" raw modes (convertTo would round, not truncate).
    cv::Mat high(mat.size(), CV_MAKETYPE(CV_8U, mat.channels()));
    for (int y = 0; y < mat.rows; ++y) {
      const std::uint16_t* src = mat.ptr<std::uint16_t>(y);
      std::uint8_t* dst = high.ptr<std::uint8_t>(y);
      for (int i = 0; i < mat.cols * mat.channels(); ++i)
        dst[i] = static_cast<std::uint8_t>(src[i] >> 8);
    }
    mat = high;
  } else if (mat.depth() != CV_8U) {
    fail(name, "unsupported sample type");
  }
  if (mat.cols != w || mat.rows != h) fail(name, "decoded size does not match the header");
  RgbImage out;
  out.width = mat.cols;
  out.height = mat.rows;
  out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * 3);
  const int channels = mat.channels();
  for (int y = 0; y < mat.rows; ++y) {
    const std::uint8_t* src = mat.ptr<std::uint8_t>(y);
    std::uint8_t* dst = &out.pixels[static_cast<std::size_t>(y) * out.width * 3];
    for (int x = 0; x < mat.cols; ++x) {
      const std::uint8_t* p = src + static_cast<std::size_t>(x) * channels;
      if (channels < 3) {
        dst[x * 3] = dst[x * 3 + 1] = dst[x * 3 + 2] = p[0];
      } else {  // BGR or BGRA; alpha dropped
        dst[x * 3] = p[2];
        dst[x * 3 + 1] = p[1];
        dst[x * 3 + 2] = p[0];
      }
    }
  }
  return out;
}

}  // namespace

RgbImage decode_image_from_memory(const std::uint8_t* data, std::size_t size,
                                  const std::string& name_for_errors,
                                  const DecodeOptions& options) {
  const std::string& name = name_for_errors;
  if (data == nullptr || size == 0) fail(name, "empty file");
  const ImageFormat format = image_detail::sniff_format(data, size);
  RgbImage image;
  switch (format) {
    case ImageFormat::kJpeg:
      image = decode_jpeg(data, size, name, options);
      break;
    case ImageFormat::kPng:
      image = decode_png(data, size, name, options);
      break;
    case ImageFormat::kGif:
      image = image_detail::decode_gif_first_frame(data, size, name, options);
      break;
    case ImageFormat::kBmp:
    case ImageFormat::kTiff:
    case ImageFormat::kWebp:
      image = decode_with_opencv(data, size, format, name, options);
      break;
    case ImageFormat::kUnknown:
      fail(name, "not a recognised image (JPEG, PNG, GIF, BMP, TIFF or WebP)");
  }
  if (options.apply_exif_orientation) {
    image = image_detail::apply_orientation(std::move(image),
                                            image_detail::exif_orientation(format, data, size));
  }
  return image;
}

std::int64_t max_image_file_bytes(const DecodeOptions& options) {
  // Even uncompressed RGBA stays within 4 bytes a pixel, plus headers and metadata.
  return std::max<std::int64_t>(std::int64_t{64} << 20, 4 * options.max_pixels + (1 << 20));
}

RgbImage decode_image(const std::filesystem::path& path, const DecodeOptions& options) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below anyway.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail(name, std::string("cannot open: ") + std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(name, std::string("cannot stat: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(name, "is a folder, not an image file");
  if (!S_ISREG(st.st_mode)) {
    fail(name, "is not a regular file (a pipe, socket or device), so it is not read");
  }
  const std::int64_t limit = max_image_file_bytes(options);
  if (st.st_size > limit) {
    fail(name, "file is " + std::to_string(st.st_size) + " bytes, more than an image of at most " +
                   std::to_string(options.max_pixels) + " pixels can take (" +
                   std::to_string(limit) + "); raise --max-pixels to allow it");
  }
  // Sized by fstat, but read to the end within the limit: the file may change meanwhile.
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  for (;;) {
    if (got == bytes.size()) {
      if (static_cast<std::int64_t>(bytes.size()) >= limit) {
        std::uint8_t extra = 0;
        if (::read(fd, &extra, 1) > 0) fail(name, "file grew past the size limit while read");
        break;
      }
      bytes.resize(std::min<std::size_t>(static_cast<std::size_t>(limit), bytes.size() + 65536));
    }
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(name, std::string("read error: ") + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  bytes.resize(got);
  return decode_image_from_memory(bytes.data(), bytes.size(), name, options);
}

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".jpe",  ".png", ".gif",
                                            ".bmp", ".tif",  ".tiff", ".webp"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions),
                     [&](const char* known) { return ext == known; });
}

ImageSniff sniff_image_file(const std::filesystem::path& path) {
  // O_NONBLOCK: a FIFO named like a photo must not hang the walk.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return {ImageSniff::Kind::kUnreadable, std::strerror(errno)};
  std::uint8_t head[18] = {};
  const ssize_t got = ::read(fd, head, sizeof(head));
  const int read_errno = errno;
  ::close(fd);
  if (got < 0) return {ImageSniff::Kind::kUnreadable, std::strerror(read_errno)};
  if (got == 0) return {ImageSniff::Kind::kNotImage, "not an image: the file is empty"};
  if (image_detail::sniff_format(head, static_cast<std::size_t>(got)) == ImageFormat::kUnknown) {
    return {ImageSniff::Kind::kNotImage,
            "not an image: its content is no format mmsearch reads (JPEG, PNG, GIF, BMP, TIFF, "
            "WebP)"};
  }
  return {ImageSniff::Kind::kImage, ""};
}

const char* image_mime_type(const std::uint8_t* data, std::size_t size) {
  switch (image_detail::sniff_format(data, size)) {
    case ImageFormat::kJpeg:
      return "image/jpeg";
    case ImageFormat::kPng:
      return "image/png";
    case ImageFormat::kGif:
      return "image/gif";
    case ImageFormat::kBmp:
      return "image/bmp";
    case ImageFormat::kTiff:
      return "image/tiff";
    case ImageFormat::kWebp:
      return "image/webp";
    case ImageFormat::kUnknown:
      break;
  }
  return "application/octet-stream";
}

bool looks_like_image(const std::filesystem::path& path) {
  return sniff_image_file(path).kind == ImageSniff::Kind::kImage;
}

}  // namespace mmsearch
