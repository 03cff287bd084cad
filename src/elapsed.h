// Wall time since a steady-clock point, for the phase timings that commands report.
#pragma once

#include <chrono>

namespace mmsearch {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double ms_since(std::chrono::steady_clock::time_point start) {
  return 1000.0 * seconds_since(start);
}

}  // namespace mmsearch
