// Minimal NumPy .npy (format 1.0) reader and writer for float32 and int64 C-order arrays:
// `mmsearch embed --out` writes what LAVIS users load with numpy.load, and tests read the
// golden arrays. The format is a magic string, a Python-dict header and raw little-endian data;
// a general array library would be far more than this needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mmsearch {

struct NpyArray {
  std::string dtype;  // "<f4" or "<i8"
  std::vector<std::int64_t> shape;
  std::vector<float> f32;         // set when dtype is "<f4"
  std::vector<std::int64_t> i64;  // set when dtype is "<i8"
  std::int64_t size() const;
};

// Throws Error(kInput) naming the file for anything but C-order <f4 / <i8 (and <u1, loaded
// into i64) arrays.
NpyArray read_npy(const std::filesystem::path& path);
void write_npy(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
               const float* data);
void write_npy(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
               const std::int64_t* data);

}  // namespace mmsearch
