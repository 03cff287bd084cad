// GIF decoding (first frame), since OpenCV 4.6 has no GIF reader and giflib is not a
// dependency. LZW is small enough to own, and owning it lets us compose the first frame the
// way Pillow 9.4 does: a canvas of the logical-screen size filled with the frame's
// transparent index (else 0), the frame drawn at its offset, then the palette (local, else
// global) looked up. convert("RGB") ignores transparency, so we do too.
#include <cstring>
#include <vector>

#include "image_internal.h"

namespace mmsearch::image_detail {
namespace {

struct Reader {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos = 0;
  const std::string& name;

  std::uint8_t u8() {
    if (pos >= size) fail(name, "image file is truncated");
    return data[pos++];
  }
  std::uint32_t u16() {
    const std::uint32_t lo = u8();
    return lo | (u8() << 8);
  }
  const std::uint8_t* bytes(std::size_t n) {
    if (n > size - pos) fail(name, "image file is truncated");
    const std::uint8_t* p = data + pos;
    pos += n;
    return p;
  }
  void skip_sub_blocks() {
    for (std::uint8_t len = u8(); len != 0; len = u8()) bytes(len);
  }
};

// Decodes the LZW stream of one frame into `indices` (w * h, in stream order).
void lzw_decode(Reader& r, int min_code_size, std::size_t pixel_count,
                std::vector<std::uint8_t>& indices) {
  if (min_code_size < 2 || min_code_size > 11) fail(r.name, "invalid GIF LZW code size");
  const int clear = 1 << min_code_size;
  const int end = clear + 1;
  // Dictionary as (prefix, suffix) pairs; strings are rebuilt backwards into `stack`.
  std::vector<std::uint16_t> prefix(4096);
  std::vector<std::uint8_t> suffix(4096), first(4096), stack(4097);
  for (int i = 0; i < clear; ++i) {
    suffix[i] = first[i] = static_cast<std::uint8_t>(i);
    prefix[i] = 0xFFFF;
  }
  int code_size = min_code_size + 1;
  int next = clear + 2;
  int previous = -1;
  std::uint32_t bit_buffer = 0;
  int bit_count = 0;
  std::uint8_t block_left = 0;
  bool data_ended = false;
  indices.clear();
  indices.reserve(pixel_count);
  while (indices.size() < pixel_count) {
    while (bit_count < code_size) {
      if (block_left == 0) {
        block_left = data_ended ? 0 : r.u8();
        if (block_left == 0) {
          data_ended = true;
          fail(r.name, "image file is truncated (GIF frame data ends early)");
        }
      }
      bit_buffer |= static_cast<std::uint32_t>(r.u8()) << bit_count;
      bit_count += 8;
      --block_left;
    }
    const int code = static_cast<int>(bit_buffer & ((1u << code_size) - 1));
    bit_buffer >>= code_size;
    bit_count -= code_size;
    if (code == clear) {
      code_size = min_code_size + 1;
      next = clear + 2;
      previous = -1;
      continue;
    }
    if (code == end) break;
    int top = 0;
    int walk;
    if (previous < 0) {
      if (code >= clear) fail(r.name, "corrupt GIF data");
      indices.push_back(static_cast<std::uint8_t>(code));
      previous = code;
      continue;
    }
    if (code < next) {
      walk = code;
    } else if (code == next) {  // the KwKwK case: previous string + its first byte
      stack[top++] = first[previous];
      walk = previous;
    } else {
      fail(r.name, "corrupt GIF data");
    }
    while (walk >= clear) {  // codes above clear+1 are dictionary entries
      stack[top++] = suffix[walk];
      walk = prefix[walk];
    }
    stack[top++] = static_cast<std::uint8_t>(walk);
    if (next < 4096) {  // a full table stays as it is until the next clear code
      prefix[next] = static_cast<std::uint16_t>(previous);
      suffix[next] = static_cast<std::uint8_t>(walk);
      first[next] = first[previous];
      ++next;
      if (next == (1 << code_size) && code_size < 12) ++code_size;
    }
    while (top > 0 && indices.size() < pixel_count) indices.push_back(stack[--top]);
    previous = code;
  }
  if (indices.size() < pixel_count) fail(r.name, "image file is truncated");
  // Skip what is left of this frame's sub-blocks.
  if (!data_ended) {
    r.bytes(block_left);
    r.skip_sub_blocks();
  }
}

}  // namespace

RgbImage decode_gif_first_frame(const std::uint8_t* data, std::size_t size, const std::string& name,
                                const DecodeOptions& options) {
  Reader r{data, size, 0, name};
  r.bytes(6);  // signature, checked by the caller
  const int screen_w = static_cast<int>(r.u16());
  const int screen_h = static_cast<int>(r.u16());
  check_dimensions(screen_w, screen_h, name, options);
  const std::uint8_t flags = r.u8();
  r.u8();  // background colour index: Pillow does not paint it on frame 0
  r.u8();  // pixel aspect ratio
  std::vector<std::uint8_t> global_palette;
  if (flags & 0x80) {
    const std::size_t n = std::size_t{3} << ((flags & 7) + 1);
    const std::uint8_t* p = r.bytes(n);
    global_palette.assign(p, p + n);
  }
  int transparent = -1;
  for (;;) {
    const std::uint8_t block = r.u8();
    if (block == 0x3B) fail(name, "GIF has no image frame");
    if (block == 0x21) {
      const std::uint8_t label = r.u8();
      if (label == 0xF9) {  // graphic control extension: remember the transparent index
        const std::uint8_t len = r.u8();
        const std::uint8_t* p = r.bytes(len);
        if (len >= 4 && (p[0] & 1)) transparent = p[3];
      }
      r.skip_sub_blocks();
      continue;
    }
    if (block != 0x2C) fail(name, "corrupt GIF block");
    const int left = static_cast<int>(r.u16());
    const int top = static_cast<int>(r.u16());
    const int w = static_cast<int>(r.u16());
    const int h = static_cast<int>(r.u16());
    const std::uint8_t frame_flags = r.u8();
    std::vector<std::uint8_t> palette = global_palette;
    if (frame_flags & 0x80) {
      const std::size_t n = std::size_t{3} << ((frame_flags & 7) + 1);
      const std::uint8_t* p = r.bytes(n);
      palette.assign(p, p + n);
    }
    check_dimensions(std::max(w, 1), std::max(h, 1), name, options);
    std::vector<std::uint8_t> indices;
    lzw_decode(r, r.u8(), static_cast<std::size_t>(w) * h, indices);

    std::vector<std::uint8_t> canvas(static_cast<std::size_t>(screen_w) * screen_h,
                                     static_cast<std::uint8_t>(transparent < 0 ? 0 : transparent));
    const bool interlaced = frame_flags & 0x40;
    // Interlaced frames store rows in four passes: every 8th from 0, from 4, every 4th from 2,
    // every 2nd from 1.
    std::vector<int> row_order;
    row_order.reserve(h);
    if (interlaced) {
      for (int y = 0; y < h; y += 8) row_order.push_back(y);
      for (int y = 4; y < h; y += 8) row_order.push_back(y);
      for (int y = 2; y < h; y += 4) row_order.push_back(y);
      for (int y = 1; y < h; y += 2) row_order.push_back(y);
    } else {
      for (int y = 0; y < h; ++y) row_order.push_back(y);
    }
    for (int i = 0; i < h; ++i) {
      const int cy = top + row_order[i];
      if (cy >= screen_h) continue;
      for (int x = 0; x < w; ++x) {
        const int cx = left + x;
        if (cx >= screen_w) break;
        canvas[static_cast<std::size_t>(cy) * screen_w + cx] =
            indices[static_cast<std::size_t>(i) * w + x];
      }
    }
    RgbImage out;
    out.width = screen_w;
    out.height = screen_h;
    out.pixels.resize(canvas.size() * 3);
    const std::size_t entries = palette.size() / 3;
    for (std::size_t i = 0; i < canvas.size(); ++i) {
      const std::uint8_t index = canvas[i];
      if (index < entries) {
        std::memcpy(&out.pixels[i * 3], &palette[index * 3], 3);
      } else {  // Pillow's palettes start as a grey ramp; missing entries keep it
        out.pixels[i * 3] = out.pixels[i * 3 + 1] = out.pixels[i * 3 + 2] = index;
      }
    }
    return out;
  }
}

}  // namespace mmsearch::image_detail
