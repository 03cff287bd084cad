// PNG output: encoded by OpenCV's imgcodecs (libpng underneath) whatever the file's extension,
// so "--montage result" and "figure.PNG" get PNG too; written whole or not at all.
#include <opencv2/imgcodecs.hpp>

#include "mmsearch/error.h"
#include "mmsearch/render.h"
#include "image_internal.h"
#include "output_file.h"
#include "render_internal.h"

namespace mmsearch {

void write_png(const RgbImage& image, const std::filesystem::path& path) {
  const cv::Mat bgr = render_detail::bgr_from_rgb(image);
  if (bgr.empty()) {
    throw Error(ErrorKind::kUsage, path.string() + ": empty image, nothing to write");
  }
  std::vector<std::uint8_t> encoded;
  image_detail::quiet_opencv_logging();
  try {
    if (!cv::imencode(".png", bgr, encoded)) {
      throw Error(ErrorKind::kInternal, path.string() + ": PNG encoding failed");
    }
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kInternal, path.string() + ": PNG encoding failed: " + e.what());
  }
  OutputFile out(path, "PNG");
  out.write(encoded.data(), encoded.size());
  out.commit();
}

}  // namespace mmsearch
