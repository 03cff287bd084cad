// The web page of `mmsearch serve` (src/web/), compiled into the binary by
// cmake/web_assets.cmake so that the page needs no network and no install step.
#pragma once

#include <cstddef>

namespace mmsearch {

struct WebAsset {
  const char* name;  // file name under src/web/, e.g. "app.js"
  const unsigned char* data;
  std::size_t size;
  const char* mime;
};

// The asset of that name, or nullptr.
const WebAsset* find_web_asset(const char* name);

}  // namespace mmsearch
