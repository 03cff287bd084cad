// What the file-based fuzz harnesses share: a scratch folder per process and writing the
// input's bytes to a file.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace fuzz_support {

// <base>/mmsearch-fuzz-<label>-<pid>, in /dev/shm where there is one (the harnesses write a
// file per input, and libFuzzer may run several processes). Not created here.
inline std::filesystem::path process_scratch_dir(const std::string& label) {
  const std::filesystem::path base = std::filesystem::is_directory("/dev/shm")
                                         ? std::filesystem::path("/dev/shm")
                                         : std::filesystem::temp_directory_path();
  return base / ("mmsearch-fuzz-" + label + "-" + std::to_string(::getpid()));
}

inline void write_bytes(const std::filesystem::path& path, const std::uint8_t* data,
                        std::size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace fuzz_support
