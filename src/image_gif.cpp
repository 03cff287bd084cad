// GIF decoding (first frame) through giflib, since OpenCV 4.6 has no GIF reader. giflib reads
// the records and decodes the LZW data; the composition is ours, to match Pillow 9.4's
// Image.open(p).convert("RGB") (GifImagePlugin, measured in tests/cpp/test_image.cpp):
// - the canvas is the logical screen, grown to hold the first frame where the frame reaches
//   past it (Pillow 9.4 grows its size; a 0x0 screen takes the frame's size);
// - it is filled with the frame's transparent index, else 0, and the frame is drawn at its
//   offset; convert("RGB") ignores transparency, so we do too;
// - the palette is the local one, else the global one; indices past its end, and images
//   without any palette, keep Pillow's initial grey ramp (index i -> (i, i, i));
// - a byte that starts no record is skipped, as Pillow skips it; image data that ends before
//   the frame's last pixel is "truncated" (Pillow without LOAD_TRUNCATED_IMAGES).
// Only the first frame is read: nothing after its image data is looked at.
#include <gif_lib.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "image_internal.h"

namespace mmsearch::image_detail {
namespace {

struct MemorySource {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos;
};

// giflib's InputFunc: a short read makes giflib report D_GIF_ERR_READ_FAILED.
int read_memory(GifFileType* gif, GifByteType* out, int length) {
  auto* src = static_cast<MemorySource*>(gif->UserData);
  const std::size_t n =
      std::min(static_cast<std::size_t>(std::max(length, 0)), src->size - src->pos);
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
  return static_cast<int>(n);
}

struct GifCloser {
  void operator()(GifFileType* gif) const { DGifCloseFile(gif, nullptr); }
};

// Every giflib read error names the cause; running out of bytes (READ_FAILED, or an LZW
// stream that ends early: EOF_TOO_SOON, or an empty data sub-block before the end code:
// IMAGE_DEFECT) is what Pillow calls a truncated file.
[[noreturn]] void fail_gif(const std::string& name, int error) {
  const char* what = GifErrorString(error);
  const std::string detail = what != nullptr ? what : ("error " + std::to_string(error));
  if (error == D_GIF_ERR_READ_FAILED || error == D_GIF_ERR_EOF_TOO_SOON ||
      error == D_GIF_ERR_IMAGE_DEFECT) {
    fail(name, "image file is truncated (giflib: " + detail + ")");
  }
  fail(name, "cannot decode GIF (giflib: " + detail + ")");
}

}  // namespace

RgbImage decode_gif_first_frame(const std::uint8_t* data, std::size_t size, const std::string& name,
                                const DecodeOptions& options) {
  MemorySource src{data, size, 0};
  int error = D_GIF_SUCCEEDED;
  // DGifOpen reads the signature, the logical screen descriptor and the global palette.
  std::unique_ptr<GifFileType, GifCloser> gif(DGifOpen(&src, read_memory, &error));
  if (!gif) fail_gif(name, error);
  const int screen_w = gif->SWidth, screen_h = gif->SHeight;
  // The bomb guard on the screen before anything else is read (a 0x0 screen waits for the
  // frame, which then gives the size).
  if (screen_w > 0 || screen_h > 0) check_dimensions(screen_w, screen_h, name, options);

  int transparent = -1;
  for (;;) {
    GifRecordType record;
    if (DGifGetRecordType(gif.get(), &record) == GIF_ERROR) {
      if (gif->Error == D_GIF_ERR_WRONG_RECORD) continue;  // a stray byte, as Pillow skips it
      fail_gif(name, gif->Error);
    }
    if (record == TERMINATE_RECORD_TYPE) fail(name, "GIF has no image frame");
    if (record == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* block = nullptr;  // block[0] is the sub-block length
      if (DGifGetExtension(gif.get(), &code, &block) == GIF_ERROR) fail_gif(name, gif->Error);
      // Graphic control extension: the last one before the frame with the transparency flag
      // set gives the fill index.
      if (code == GRAPHICS_EXT_FUNC_CODE && block != nullptr && block[0] >= 4 && (block[1] & 1)) {
        transparent = block[4];
      }
      while (block != nullptr) {
        if (DGifGetExtensionNext(gif.get(), &block) == GIF_ERROR) fail_gif(name, gif->Error);
      }
      continue;
    }
    break;  // IMAGE_DESC_RECORD_TYPE
  }
  if (DGifGetImageDesc(gif.get()) == GIF_ERROR) fail_gif(name, gif->Error);
  const GifImageDesc& frame = gif->Image;
  const int left = frame.Left, top = frame.Top, w = frame.Width, h = frame.Height;
  if (w <= 0 || h <= 0) fail(name, "GIF frame has no pixels");
  const int canvas_w = std::max(screen_w, left + w);
  const int canvas_h = std::max(screen_h, top + h);
  check_dimensions(canvas_w, canvas_h, name, options);

  std::vector<std::uint8_t> canvas(static_cast<std::size_t>(canvas_w) * canvas_h,
                                   static_cast<std::uint8_t>(transparent < 0 ? 0 : transparent));
  // Interlaced frames store their rows in four passes: every 8th row from 0, every 8th from
  // 4, every 4th from 2, every 2nd from 1. giflib hands rows over in stream order.
  std::vector<int> rows;
  rows.reserve(h);
  if (frame.Interlace) {
    for (const auto& [start, step] : {std::pair{0, 8}, {4, 8}, {2, 4}, {1, 2}}) {
      for (int y = start; y < h; y += step) rows.push_back(y);
    }
  } else {
    for (int y = 0; y < h; ++y) rows.push_back(y);
  }
  for (const int y : rows) {
    GifPixelType* line = &canvas[static_cast<std::size_t>(top + y) * canvas_w + left];
    if (DGifGetLine(gif.get(), line, w) == GIF_ERROR) fail_gif(name, gif->Error);
  }

  const ColorMapObject* palette = frame.ColorMap != nullptr ? frame.ColorMap : gif->SColorMap;
  const int entries = palette != nullptr ? palette->ColorCount : 0;
  RgbImage out;
  out.width = canvas_w;
  out.height = canvas_h;
  out.pixels.resize(canvas.size() * 3);
  for (std::size_t i = 0; i < canvas.size(); ++i) {
    const std::uint8_t index = canvas[i];
    std::uint8_t* px = &out.pixels[i * 3];
    if (index < entries) {
      const GifColorType& c = palette->Colors[index];
      px[0] = c.Red;
      px[1] = c.Green;
      px[2] = c.Blue;
    } else {
      px[0] = px[1] = px[2] = index;
    }
  }
  return out;
}

}  // namespace mmsearch::image_detail
