// Per-test scratch folders under the build tree's test tmp folder (MMSEARCH_TEST_TMP_DIR).
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "mmsearch/error.h"

namespace mmsearch::test_support {

// MMSEARCH_TEST_TMP_DIR/<group>/<name>, emptied and created.
inline std::filesystem::path fresh_test_dir(const std::string& group, const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(MMSEARCH_TEST_TMP_DIR) / group / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Writes `bytes` to `path` as they are, creating its folder.
inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// The kind and message of what `action` throws as mmsearch::Error; kInternal and "no error"
// when it throws nothing.
template <typename Action>
std::pair<ErrorKind, std::string> error_of(Action&& action) {
  try {
    action();
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  return {ErrorKind::kInternal, "no error"};
}

}  // namespace mmsearch::test_support
