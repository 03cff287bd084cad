// libFuzzer target: any byte string given to the decoders either decodes to a consistent RGB
// image or throws mmsearch::Error(kInput); no crash, no other exception, no memory error, and
// no allocation beyond the (small) pixel limit set here. Seed it with ../shared/data/edge.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "mmsearch/error.h"
#include "mmsearch/image.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mmsearch::DecodeOptions options;
  options.max_pixels = 4 << 20;  // keeps each run small; the guard itself is under test
  options.apply_exif_orientation = size % 2 == 0;  // both paths, from the input itself
  try {
    const mmsearch::RgbImage image =
        mmsearch::decode_image_from_memory(data, size, "fuzz", options);
    if (image.width <= 0 || image.height <= 0 ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3 ||
        static_cast<std::int64_t>(image.width) * image.height > options.max_pixels) {
      std::abort();
    }
    if (image.width * image.height < 4096) {
      (void)mmsearch::resize_bicubic_pil(image, 7, 5);
    }
  } catch (const mmsearch::Error& e) {
    if (e.kind() != mmsearch::ErrorKind::kInput) std::abort();
  }
  return 0;
}
