// RgbImage to and from the BGR cv::Mat the renderers draw on, and how they print scores.
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "render_internal.h"

namespace mmsearch::render_detail {

cv::Mat bgr_from_rgb(const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3) {
    return cv::Mat();
  }
  const cv::Mat rgb(image.height, image.width, CV_8UC3,
                    const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

RgbImage rgb_from_bgr(const cv::Mat& bgr) {
  RgbImage image;
  image.width = bgr.cols;
  image.height = bgr.rows;
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  image.pixels.assign(rgb.data, rgb.data + rgb.total() * 3);
  return image;
}

std::string format_score(float value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f", value);
  return buffer;
}

}  // namespace mmsearch::render_detail
