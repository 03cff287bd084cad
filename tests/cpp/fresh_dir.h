// An empty folder of its own for one test, under the build's test tmp folder.
#pragma once

#include <filesystem>
#include <string>

// MMSEARCH_TEST_TMP_DIR / group / name, emptied (removed and created again).
inline std::filesystem::path fresh_test_dir(const std::string& group, const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(MMSEARCH_TEST_TMP_DIR) / group / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}
