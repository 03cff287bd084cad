// PNG output: encoded by OpenCV's imgcodecs (libpng underneath) whatever the file's extension,
// so "--montage result" and "figure.PNG" get PNG too.
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "mmsearch/error.h"
#include "mmsearch/render.h"
#include "render_internal.h"

namespace mmsearch {

void write_png(const RgbImage& image, const std::filesystem::path& path) {
  const cv::Mat bgr = render_detail::bgr_from_rgb(image);
  if (bgr.empty()) {
    throw Error(ErrorKind::kUsage, path.string() + ": empty image, nothing to write");
  }
  std::vector<std::uint8_t> encoded;
  try {
    if (!cv::imencode(".png", bgr, encoded)) {
      throw Error(ErrorKind::kInternal, path.string() + ": PNG encoding failed");
    }
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kInternal, path.string() + ": PNG encoding failed: " + e.what());
  }
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": cannot write PNG");
  out.write(reinterpret_cast<const char*>(encoded.data()),
            static_cast<std::streamsize>(encoded.size()));
  out.close();
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": write failed");
}

}  // namespace mmsearch
