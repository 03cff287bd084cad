// The shared test data (goldens, photos, edge-case images) lives beside the repository in
// ../shared, never inside it. A clone without it still builds and runs every other test: the
// tests that read it start with MMSEARCH_REQUIRE_SHARED_DATA(), which skips them and says where
// the data was expected (configure with -DMMSEARCH_SHARED_DIR=... to point elsewhere).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>

#define MMSEARCH_REQUIRE_SHARED_DATA()                                                       \
  do {                                                                                       \
    if (!std::filesystem::is_directory(std::filesystem::path(MMSEARCH_SHARED_DIR) / "data")) \
      GTEST_SKIP() << "needs the shared test data at " MMSEARCH_SHARED_DIR                   \
                      " (configure with -DMMSEARCH_SHARED_DIR=DIR to point elsewhere)";      \
  } while (false)
