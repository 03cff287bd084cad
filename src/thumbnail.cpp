#include "mmsearch/thumbnail.h"

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "mmsearch/error.h"
#include "render_internal.h"

namespace mmsearch {
namespace {

std::string encode(const RgbImage& image, const char* extension, const std::vector<int>& params) {
  if (image.width <= 0 || image.height <= 0) {
    throw Error(ErrorKind::kInternal, "cannot encode an empty image");
  }
  const cv::Mat bgr = render_detail::bgr_from_rgb(image);
  if (bgr.empty()) throw Error(ErrorKind::kInternal, "cannot encode an image of inconsistent size");
  std::vector<std::uint8_t> bytes;
  if (!cv::imencode(extension, bgr, bytes, params)) {
    throw Error(ErrorKind::kInternal, std::string("OpenCV could not encode a ") + extension);
  }
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

RgbImage fit_within(const RgbImage& image, int max_side) {
  const int longer = std::max(image.width, image.height);
  if (max_side <= 0 || longer <= max_side) return image;
  const double scale = static_cast<double>(max_side) / longer;
  const int width = std::max(1, static_cast<int>(image.width * scale + 0.5));
  const int height = std::max(1, static_cast<int>(image.height * scale + 0.5));
  const cv::Mat source(image.height, image.width, CV_8UC3,
                       const_cast<std::uint8_t*>(image.pixels.data()));
  RgbImage out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  cv::Mat target(height, width, CV_8UC3, out.pixels.data());
  // INTER_AREA averages every source pixel: no aliasing on large reductions.
  cv::resize(source, target, target.size(), 0, 0, cv::INTER_AREA);
  return out;
}

std::string encode_jpeg(const RgbImage& image, int quality) {
  return encode(image, ".jpg", {cv::IMWRITE_JPEG_QUALITY, std::clamp(quality, 1, 100)});
}

std::string encode_png(const RgbImage& image) {
  return encode(image, ".png", {cv::IMWRITE_PNG_COMPRESSION, 3});
}

RgbImage load_thumbnail(const std::filesystem::path& path, int max_side,
                        const DecodeOptions& decode) {
  return fit_within(decode_image(path, decode), max_side);
}

}  // namespace mmsearch
