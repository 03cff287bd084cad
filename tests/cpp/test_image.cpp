// Image pipeline against Pillow 9.4 and the LAVIS goldens.
//
// - resize / normalize: bit-exact against ../shared/golden/preprocess (made by LAVIS itself).
// - decode, EXIF orientation, resize on odd sizes: against references that
//   tests/python/make_pil_references.py writes with the system Pillow (9.4.0, as the goldens).
//   The build generates them (tests/cpp/image_refs.cmake); when the test binary runs without
//   them it generates them itself.
// - every file in ../shared/data/edge decodes like Pillow or fails with a clean Error(kInput).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mmsearch/error.h"
#include "mmsearch/image.h"
#include "shared_data.h"

namespace fs = std::filesystem;
using mmsearch::DecodeOptions;
using mmsearch::Error;
using mmsearch::ErrorKind;
using mmsearch::RgbImage;

namespace {

const fs::path kShared = MMSEARCH_SHARED_DIR;
const fs::path kGolden = kShared / "golden" / "preprocess";
const std::array<float, 3> kMean = {0.48145466f, 0.4578275f, 0.40821073f};
const std::array<float, 3> kStd = {0.26862954f, 0.26130258f, 0.27577711f};

// ------------------------------------------------------------------ minimal .npy reader

struct Npy {
  std::string descr;
  std::vector<std::size_t> shape;
  std::vector<char> data;
  std::size_t count() const {
    std::size_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

// Reads a C-ordered little-endian .npy (version 1-3) as written by numpy.save.
Npy load_npy(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  char magic[8];
  in.read(magic, 8);
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw std::runtime_error("not npy: " + path.string());
  std::size_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::size_t>(b[3]) << 24);
  }
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  Npy npy;
  const auto d = header.find("'descr':");
  const auto q1 = header.find('\'', d + 8);
  npy.descr = header.substr(q1 + 1, header.find('\'', q1 + 1) - q1 - 1);
  if (header.find("'fortran_order': False") == std::string::npos) {
    throw std::runtime_error("fortran order npy: " + path.string());
  }
  const auto s0 = header.find('(', header.find("'shape':"));
  std::stringstream dims(header.substr(s0 + 1, header.find(')', s0) - s0 - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(' ') != std::string::npos) npy.shape.push_back(std::stoul(item));
  }
  const std::size_t item_size = npy.descr == "|u1" ? 1 : npy.descr == "<f4" ? 4 : 0;
  if (item_size == 0) throw std::runtime_error("unsupported dtype " + npy.descr);
  npy.data.resize(npy.count() * item_size);
  in.read(npy.data.data(), static_cast<std::streamsize>(npy.data.size()));
  if (!in) throw std::runtime_error("short npy: " + path.string());
  return npy;
}

// An HWC uint8 RGB .npy as an RgbImage.
RgbImage load_rgb_npy(const fs::path& path) {
  const Npy npy = load_npy(path);
  if (npy.descr != "|u1" || npy.shape.size() != 3 || npy.shape[2] != 3) {
    throw std::runtime_error("not an HxWx3 uint8 array: " + path.string());
  }
  RgbImage image;
  image.height = static_cast<int>(npy.shape[0]);
  image.width = static_cast<int>(npy.shape[1]);
  image.pixels.assign(npy.data.begin(), npy.data.end());
  return image;
}

// Exact comparison with a readable failure: size, count of differing samples, max difference.
::testing::AssertionResult same_pixels(const RgbImage& actual, const RgbImage& expected) {
  if (actual.width != expected.width || actual.height != expected.height) {
    return ::testing::AssertionFailure()
           << "size " << actual.width << "x" << actual.height << " != expected " << expected.width
           << "x" << expected.height;
  }
  std::size_t differing = 0;
  int max_diff = 0;
  std::size_t first = 0;
  for (std::size_t i = 0; i < actual.pixels.size(); ++i) {
    const int diff = std::abs(actual.pixels[i] - expected.pixels[i]);
    if (diff != 0 && differing++ == 0) first = i;
    max_diff = std::max(max_diff, diff);
  }
  if (differing == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << differing << " of " << actual.pixels.size() << " samples differ, max |diff| "
         << max_diff << ", first at pixel " << first / 3 << " channel " << first % 3;
}

// ------------------------------------------------------------------ Pillow references

fs::path pil_refs_dir() {
  if (const char* env = std::getenv("MMSEARCH_PIL_REFS")) return env;
  return fs::path(MMSEARCH_TEST_TMP_DIR) / "pil_refs";
}

// The build makes the references (image_refs.cmake); a direct run of the binary makes them
// on first use.
const fs::path& pil_refs() {
  static const fs::path dir = [] {
    const fs::path d = pil_refs_dir();
    if (!fs::exists(d / "DONE")) {
      const std::string cmd = "/usr/bin/python3 '" MMSEARCH_SOURCE_DIR
                              "/tests/python/make_pil_references.py' '" MMSEARCH_SHARED_DIR "' '" +
                              d.string() + "'";
      if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "reference generation failed: " << cmd;
    }
    return d;
  }();
  if (!fs::exists(dir / "DONE")) {
    throw std::runtime_error("no Pillow references in " + dir.string() +
                             " (run tests/python/make_pil_references.py)");
  }
  return dir;
}

DecodeOptions strict_lavis() {
  DecodeOptions o;
  o.apply_exif_orientation = false;
  o.pillow_clip_16bit_grey = true;
  return o;
}

std::vector<fs::path> data_files(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(folder)) {
    const auto ext = e.path().extension().string();
    if (ext == ".md" || ext == ".py" || ext == ".csv") continue;
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Decodes every file of a data folder with strict and default options and compares with
// Pillow; files Pillow refuses must give Error(kInput) naming the file. `subset` names the
// references' folder (decode/<subset>).
void check_folder_against_pillow(const std::string& subset, const fs::path& folder) {
  const auto files = data_files(folder);
  ASSERT_FALSE(files.empty());
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const fs::path ref = pil_refs() / "decode" / subset / file.filename();
    if (fs::exists(ref.string() + ".error")) {
      try {
        mmsearch::decode_image(file);
        ADD_FAILURE() << "decoded, but Pillow refuses it";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kInput);
        EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
      }
      continue;
    }
    EXPECT_TRUE(mmsearch::looks_like_image(file));
    EXPECT_TRUE(same_pixels(mmsearch::decode_image(file, strict_lavis()),
                            load_rgb_npy(ref.string() + ".npy")))
        << "strict (Image.open(p).convert(\"RGB\"))";
    fs::path expected_default = ref.string() + ".npy";
    if (fs::exists(ref.string() + ".exif.npy")) expected_default = ref.string() + ".exif.npy";
    EXPECT_TRUE(same_pixels(mmsearch::decode_image(file), load_rgb_npy(expected_default)))
        << "default options vs " << expected_default.filename();
    if (fs::exists(ref.string() + ".shift8.npy")) {
      DecodeOptions high_byte;
      high_byte.pillow_clip_16bit_grey = false;
      EXPECT_TRUE(same_pixels(mmsearch::decode_image(file, high_byte),
                              load_rgb_npy(ref.string() + ".shift8.npy")))
          << "pillow_clip_16bit_grey=false keeps the high byte";
    }
  }
}

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string decode_error(const std::vector<std::uint8_t>& bytes, const DecodeOptions& o = {}) {
  try {
    mmsearch::decode_image_from_memory(bytes.data(), bytes.size(), "crafted", o);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    return e.what();
  }
  return "";
}

// ------------------------------------------------------------------ tests

TEST(ImageResize, BitExactAgainstLavisGoldens) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  int checked = 0;
  for (const auto& e : fs::directory_iterator(kGolden)) {
    if (e.path().extension() != ".png") continue;
    SCOPED_TRACE(e.path().string());
    const std::string stem = e.path().stem().string();
    const RgbImage source = mmsearch::decode_image(e.path(), strict_lavis());
    for (int size : {224, 364, 384}) {
      SCOPED_TRACE(size);
      const RgbImage resized = mmsearch::resize_bicubic_pil(source, size, size);
      const fs::path u8 = kGolden / (stem + "_" + std::to_string(size) + "_resized_u8.npy");
      if (fs::exists(u8)) {
        const Npy golden = load_npy(u8);
        ASSERT_EQ(golden.count(), resized.pixels.size());
        EXPECT_TRUE(same_pixels(resized, load_rgb_npy(u8)));
        ++checked;
      }
      const Npy tensor = load_npy(kGolden / (stem + "_" + std::to_string(size) + ".npy"));
      ASSERT_EQ(tensor.shape, (std::vector<std::size_t>{3, std::size_t(size), std::size_t(size)}));
      const std::vector<float> chw = mmsearch::normalize_to_chw(resized, kMean, kStd);
      ASSERT_EQ(chw.size(), tensor.count());
      const float* expected = reinterpret_cast<const float*>(tensor.data.data());
      double max_diff = 0;
      for (std::size_t i = 0; i < chw.size(); ++i) {
        max_diff = std::max(max_diff, std::fabs(double(chw[i]) - double(expected[i])));
      }
      EXPECT_LE(max_diff, 1e-6);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 6 * 3 + 6 * 2);
}

TEST(ImageResize, MatchesPillowOnOddSizes) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  std::ifstream cases(pil_refs() / "resize" / "cases.txt");
  std::string name;
  int w, h, count = 0;
  while (cases >> name >> w >> h) {
    SCOPED_TRACE(name);
    const RgbImage source = load_rgb_npy(pil_refs() / "resize" / (name + "_src.npy"));
    EXPECT_TRUE(same_pixels(mmsearch::resize_bicubic_pil(source, w, h),
                            load_rgb_npy(pil_refs() / "resize" / (name + "_out.npy"))));
    ++count;
  }
  EXPECT_GE(count, 10);
}

TEST(ImageResize, DecodedPhotosMatchPillowPipeline) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  int count = 0;
  for (const auto& e : fs::directory_iterator(pil_refs() / "photo_resize")) {
    const std::string stem = e.path().stem().string();  // <photo stem>_<size>
    const auto cut = stem.rfind('_');
    const int size = std::stoi(stem.substr(cut + 1));
    fs::path photo = kShared / "data" / "photos" / (stem.substr(0, cut) + ".jpg");
    if (!fs::exists(photo)) photo.replace_extension(".png");
    SCOPED_TRACE(photo.string());
    const RgbImage decoded = mmsearch::decode_image(photo, strict_lavis());
    EXPECT_TRUE(
        same_pixels(mmsearch::resize_bicubic_pil(decoded, size, size), load_rgb_npy(e.path())));
    ++count;
  }
  EXPECT_GE(count, 10);
}

TEST(ImageResize, SameSizeIsACopyAndBadSizesThrow) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  RgbImage image = load_rgb_npy(pil_refs() / "resize" / "3x2_to_5x7_src.npy");
  EXPECT_TRUE(same_pixels(mmsearch::resize_bicubic_pil(image, 3, 2), image));
  EXPECT_THROW(mmsearch::resize_bicubic_pil(image, 0, 5), Error);
  EXPECT_THROW(mmsearch::resize_bicubic_pil(RgbImage{}, 5, 5), Error);
}

TEST(ImageNormalize, ChwLayoutAndValues) {
  RgbImage image;
  image.width = 2;
  image.height = 1;
  image.pixels = {0, 128, 255, 10, 20, 30};
  const auto chw = mmsearch::normalize_to_chw(image, kMean, kStd);
  ASSERT_EQ(chw.size(), 6u);
  EXPECT_FLOAT_EQ(chw[0], (0.0f - kMean[0]) / kStd[0]);
  EXPECT_FLOAT_EQ(chw[1], (10.0f / 255.0f - kMean[0]) / kStd[0]);
  EXPECT_FLOAT_EQ(chw[2], (128.0f / 255.0f - kMean[1]) / kStd[1]);
  EXPECT_FLOAT_EQ(chw[5], (30.0f / 255.0f - kMean[2]) / kStd[2]);
}

TEST(ImageDecode, PhotosEqualPillow) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  check_folder_against_pillow("photos", kShared / "data" / "photos");
}

TEST(ImageDecode, EdgeFilesEqualPillowOrFailCleanly) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  check_folder_against_pillow("edge", kShared / "data" / "edge");
}

// Inputs make_pil_references.py writes because the shared data lacks them: interlaced and
// offset GIF frames, frames past the logical screen, short or missing palettes, GIF data that
// ends early, and EXIF orientation in a PNG eXIf chunk (before and after IDAT), a WebP EXIF
// chunk, a JPEG with XMP before EXIF (and orientation as a LONG), and malformed EXIF
// (orientation only in IFD1, two values, out of range, IFD cut short).
TEST(ImageDecode, GeneratedGifAndExifVariantsEqualPillow) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  check_folder_against_pillow("generated", pil_refs() / "generated");
  EXPECT_TRUE(fs::exists(pil_refs() / "decode" / "generated" / "gif_interlaced_23x37.gif.npy"));
  EXPECT_TRUE(
      fs::exists(pil_refs() / "decode" / "generated" / "png_exif_orientation_6.png.exif.npy"));
}

// A GIF cut in the middle of its image data (and one whose data blocks stop early) is
// refused as truncated, as Pillow does without LOAD_TRUNCATED_IMAGES.
TEST(ImageDecode, GifCutInImageDataIsTruncated) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const auto gif = read_bytes(kShared / "data" / "edge" / "sample.gif");
  ASSERT_GT(gif.size(), 10000u);
  for (double keep : {0.1, 0.5, 0.99}) {
    SCOPED_TRACE(keep);
    const std::vector<std::uint8_t> cut(gif.begin(), gif.begin() + std::size_t(gif.size() * keep));
    const std::string msg = decode_error(cut);
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    EXPECT_NE(msg.find("crafted"), std::string::npos) << msg;
  }
  for (const char* name : {"gif_cut_in_image_data.gif", "gif_data_ends_early.gif"}) {
    const std::string msg = decode_error(read_bytes(pil_refs() / "generated" / name));
    EXPECT_NE(msg.find("truncated"), std::string::npos) << name << ": " << msg;
  }
  // Only the header and the palette: no frame.
  const std::vector<std::uint8_t> header(gif.begin(), gif.begin() + 13 + 768);
  EXPECT_NE(decode_error(header), "");
}

TEST(ImageDecode, EdgeErrorsSayWhy) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path edge = kShared / "data" / "edge";
  auto message = [](const fs::path& p) -> std::string {
    try {
      mmsearch::decode_image(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message(edge / "truncated.jpg").find("truncated"), std::string::npos);
  EXPECT_NE(message(edge / "truncated_header_only.jpg").find("truncated"), std::string::npos);
  EXPECT_NE(message(edge / "empty.jpg").find("empty"), std::string::npos);
  EXPECT_NE(message(edge / "not_an_image.jpg").find("not a recognised image"), std::string::npos);
  EXPECT_NE(message(edge / "does_not_exist.png").find("cannot open"), std::string::npos);
}

TEST(ImageDecode, ExifOrientationMatchesPillowExifTranspose) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  for (int n = 1; n <= 8; ++n) {
    SCOPED_TRACE(n);
    const fs::path file = pil_refs() / "orient" / ("orient_" + std::to_string(n) + ".jpg");
    EXPECT_TRUE(same_pixels(
        mmsearch::decode_image(file),
        load_rgb_npy(pil_refs() / "orient" / ("orient_" + std::to_string(n) + ".npy"))));
    EXPECT_TRUE(same_pixels(
        mmsearch::decode_image(file, strict_lavis()),
        load_rgb_npy(pil_refs() / "orient" / ("orient_" + std::to_string(n) + ".raw.npy"))));
  }
  const RgbImage upright = mmsearch::decode_image(kShared / "data/edge/exif_orientation_6.jpg");
  EXPECT_EQ(upright.width, 480);
  EXPECT_EQ(upright.height, 320);
}

TEST(ImageDecode, FromMemoryEqualsFromFile) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path file = kShared / "data/photos/pizza_sliced.jpg";
  const auto bytes = read_bytes(file);
  EXPECT_TRUE(
      same_pixels(mmsearch::decode_image_from_memory(bytes.data(), bytes.size(), file.string()),
                  mmsearch::decode_image(file)));
}

// Headers claiming huge sizes over a few bytes of data must be refused by the pixel limit,
// not by an allocation failure or a truncation error: the guard runs before any pixel buffer.
TEST(ImageDecode, DecompressionBombRefusedFromHeader) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path edge = kShared / "data" / "edge";
  auto expect_limit = [](const std::vector<std::uint8_t>& bytes, const char* what) {
    const std::string msg = decode_error(bytes);
    EXPECT_NE(msg.find("above the limit"), std::string::npos) << what << ": " << msg;
  };
  {  // PNG: IHDR width/height at bytes 16..23 (CRC is checked after: patch it too)
    auto png = read_bytes(edge / "one_pixel.png");
    const std::uint8_t dims[8] = {0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60};  // 60000 x 60000
    std::memcpy(&png[16], dims, 8);
    // CRC over "IHDR" + 13 data bytes (bytes 12..28), stored at 29..32.
    std::uint32_t crc = 0xFFFFFFFFu;
    for (int i = 12; i < 29; ++i) {
      crc ^= png[i];
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    crc ^= 0xFFFFFFFFu;
    for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
    expect_limit(png, "png");
  }
  {  // JPEG: patch the SOF0 height/width
    auto jpg = read_bytes(edge / "one_pixel.jpg");
    for (std::size_t i = 0; i + 9 < jpg.size(); ++i) {
      if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {
        jpg[i + 5] = jpg[i + 7] = 0xEA;
        jpg[i + 6] = jpg[i + 8] = 0x60;
        break;
      }
    }
    expect_limit(jpg, "jpeg");
  }
  {  // GIF: logical screen 65535 x 65535
    auto gif = read_bytes(edge / "sample.gif");
    gif[6] = gif[7] = gif[8] = gif[9] = 0xFF;
    expect_limit(gif, "gif");
    // The first frame 65535 x 65535 at offset (65535, 65535) on a small screen: Pillow grows
    // the canvas to hold the frame, and the limit applies to the grown canvas.
    auto frame = read_bytes(edge / "sample.gif");
    std::size_t pos = 13 + ((frame[10] & 0x80) ? (std::size_t{3} << ((frame[10] & 7) + 1)) : 0);
    while (frame[pos] == 0x21) {  // extensions
      pos += 2;
      while (frame[pos] != 0) pos += frame[pos] + 1;
      ++pos;
    }
    ASSERT_EQ(frame[pos], 0x2C);
    for (int i = 1; i <= 8; ++i) frame[pos + i] = 0xFF;
    expect_limit(frame, "gif frame");
  }
  {  // BMP: width/height at 18 and 22
    auto bmp = read_bytes(edge / "sample.bmp");
    const std::uint8_t dims[8] = {0x60, 0xEA, 0, 0, 0x60, 0xEA, 0, 0};
    std::memcpy(&bmp[18], dims, 8);
    expect_limit(bmp, "bmp");
  }
  {  // WebP (VP8): 14-bit sides at 26 and 28 -> 16383 x 16383
    auto webp = read_bytes(edge / "sample.webp");
    webp[26] = webp[28] = 0xFF;
    webp[27] = webp[29] = 0x3F;
    expect_limit(webp, "webp");
  }
  // A small configured limit applies to ordinary files too, and names the file.
  DecodeOptions small;
  small.max_pixels = 1000;
  try {
    mmsearch::decode_image(edge / "sample.tiff", small);
    ADD_FAILURE() << "not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("480x320"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sample.tiff"), std::string::npos) << e.what();
  }
}

// `index` bounds the memory of concurrent decodes by the header's size, so every format must
// report it through on_dimensions, with the image's real size, before its pixels exist.
// Found by fuzz_image_decode: a TIFF header claiming sides near 2^32 overflowed the int64
// pixel count, which then passed the limit; it must be refused by the limit, naming the flag.
TEST(ImageDecode, SidesWhoseProductOverflowsAreAboveTheLimit) {
  const fs::path input = fs::path(MMSEARCH_SOURCE_DIR) / "tests/fuzz/regressions" /
                         "fuzz_image_decode" / "pixel-count-overflow-bcaf1ecf";
  const std::string msg = decode_error(read_bytes(input));
  EXPECT_NE(msg.find("above the limit"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--max-pixels"), std::string::npos) << msg;
}

TEST(ImageDecode, EveryFormatReportsHeaderDimensions) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path edge = kShared / "data" / "edge";
  for (const char* name : {"sample.bmp", "sample.gif", "sample.tiff", "sample.webp",
                           "one_pixel.png", "one_pixel.jpg"}) {
    std::int64_t reported = 0;
    DecodeOptions options;
    options.on_dimensions = [&](std::int64_t w, std::int64_t h) { reported = w * h; };
    const RgbImage image = mmsearch::decode_image(edge / name, options);
    EXPECT_EQ(reported, std::int64_t{image.width} * image.height) << name;
  }
  // Refused by the bomb guard: nothing is reported, so no memory is reserved for it.
  DecodeOptions small;
  small.max_pixels = 1000;
  bool called = false;
  small.on_dimensions = [&](std::int64_t, std::int64_t) { called = true; };
  EXPECT_THROW(mmsearch::decode_image(edge / "sample.tiff", small), Error);
  EXPECT_FALSE(called);
}

TEST(ImageDecode, LooksLikeImageSniffsContent) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path edge = kShared / "data" / "edge";
  for (const char* yes : {"sample.bmp", "sample.gif", "sample.tiff", "sample.webp",
                          "progressive.jpg", "one_pixel.png", "truncated.jpg"}) {
    EXPECT_TRUE(mmsearch::looks_like_image(edge / yes)) << yes;
  }
  for (const char* no : {"empty.jpg", "not_an_image.jpg", "README.md", "no_such_file.jpg"}) {
    EXPECT_FALSE(mmsearch::looks_like_image(edge / no)) << no;
  }
  EXPECT_FALSE(mmsearch::looks_like_image(edge));  // a directory
}

// Garbage and cut-off files of every format: a clean Error, never a crash or another
// exception type.
TEST(ImageDecode, CorruptInputsGiveCleanErrors) {
  MMSEARCH_REQUIRE_SHARED_DATA();
  const fs::path edge = kShared / "data" / "edge";
  // The library never prints (OpenCV's imdecode would, on a throwing decoder).
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  for (const char* name : {"sample.bmp", "sample.gif", "sample.tiff", "sample.webp",
                           "progressive.jpg", "rgba_transparent.png", "cmyk.jpg"}) {
    SCOPED_TRACE(name);
    const auto bytes = read_bytes(edge / name);
    for (double keep : {0.02, 0.3, 0.7, 0.97}) {
      std::vector<std::uint8_t> cut(bytes.begin(),
                                    bytes.begin() + std::size_t(bytes.size() * keep));
      try {
        mmsearch::decode_image_from_memory(cut.data(), cut.size(), "cut");
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kInput);
      }
    }
    auto flipped = bytes;
    for (std::size_t i = 64; i < flipped.size(); i += 97) flipped[i] ^= 0x5A;
    try {
      mmsearch::decode_image_from_memory(flipped.data(), flipped.size(), "flipped");
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
    }
  }
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace

// serve's /api/file names a file's type by the signatures decoding uses.
TEST(ImageMimeType, FromTheSameSignaturesAsDecoding) {
  auto type_of = [](const std::string& bytes) {
    return std::string(mmsearch::image_mime_type(
        reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  };
  EXPECT_EQ(type_of("\xff\xd8\xff\xe0"), "image/jpeg");
  EXPECT_EQ(type_of("\x89PNG\r\n\x1a\n...."), "image/png");
  EXPECT_EQ(type_of("GIF89a......"), "image/gif");
  EXPECT_EQ(type_of(std::string("RIFF\0\0\0\0WEBPVP8 ", 16)), "image/webp");
  EXPECT_EQ(type_of("BM hello, a text file"), "application/octet-stream");
  EXPECT_EQ(type_of(""), "application/octet-stream");
}
