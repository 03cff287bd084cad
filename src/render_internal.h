// Internal helpers shared by the figure renderers (heatmap.cpp, montage.cpp). Not part of the
// public API (see mmsearch/render.h).
#pragma once

#include <opencv2/core.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mmsearch/image.h"

namespace mmsearch::render_detail {

// Colours are BGR, as OpenCV draws.
inline const cv::Scalar kInk(40, 40, 40);  // near black
inline const cv::Scalar kMutedInk(110, 110, 110);
inline const cv::Scalar kWhite(255, 255, 255);

// canvas.cpp: an empty Mat for an image with no or inconsistent pixels.
cv::Mat bgr_from_rgb(const RgbImage& image);
RgbImage rgb_from_bgr(const cv::Mat& bgr);
// A score as the figures print it: three decimals.
std::string format_score(float value);

// text_render.cpp. A line of text at `pixel_size` takes line_height(pixel_size) pixels, its
// baseline baseline_offset(pixel_size) below the line's top.
int line_height(int pixel_size);
int baseline_offset(int pixel_size);

// Draws `text` (one line) with the left end of its baseline at `origin`.
void draw_text(cv::Mat& canvas, std::string_view text, cv::Point origin, int pixel_size,
               const cv::Scalar& colour);

// Draws `text` rotated 90 degrees counter-clockwise (reading bottom to top), its start at
// y_bottom, centred on x_centre. Blends darken-only, so what is under it stays visible.
void draw_vertical_text(cv::Mat& canvas, std::string_view text, int x_centre, int y_bottom,
                        int pixel_size, const cv::Scalar& colour);

// Greedy wrap at the line break opportunities Unicode gives (spaces, and between CJK
// characters) into at most max_lines lines of max_width pixels; words wider than a line and a
// last line with text left over are cut with "…".
std::vector<std::string> wrap_text(std::string_view text, int pixel_size, int max_width,
                                   int max_lines);

}  // namespace mmsearch::render_detail
