// Where the per-user data lives and the canonical path form (include/mmsearch/paths.h).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "mmsearch/error.h"
#include "mmsearch/paths.h"

namespace fs = std::filesystem;
using namespace mmsearch;

TEST(StorePaths, EnvironmentOrder) {
  const auto restore = [](const char* name, const char* old) {
    if (old)
      setenv(name, old, 1);
    else
      unsetenv(name);
  };
  const char* old_home = std::getenv("HOME");
  const char* old_xdg = std::getenv("XDG_DATA_HOME");
  const char* old_mm = std::getenv("MMSEARCH_HOME");
  const std::string keep_home = old_home ? old_home : "";
  const std::string keep_xdg = old_xdg ? old_xdg : "";
  const std::string keep_mm = old_mm ? old_mm : "";

  setenv("HOME", "/home/u", 1);
  unsetenv("XDG_DATA_HOME");
  unsetenv("MMSEARCH_HOME");
  EXPECT_EQ(default_data_dir(), fs::path("/home/u/.local/share/mmsearch"));
  setenv("XDG_DATA_HOME", "relative/ignored", 1);
  EXPECT_EQ(default_data_dir(), fs::path("/home/u/.local/share/mmsearch"));
  setenv("XDG_DATA_HOME", "/data", 1);
  EXPECT_EQ(default_data_dir(), fs::path("/data/mmsearch"));
  setenv("MMSEARCH_HOME", "/mm", 1);
  EXPECT_EQ(default_index_path(), fs::path("/mm/index.sqlite3"));
  // A relative MMSEARCH_HOME names a folder from the current one, never another store.
  setenv("MMSEARCH_HOME", "rel/store", 1);
  EXPECT_EQ(default_data_dir(), (fs::current_path() / "rel/store").lexically_normal());
  setenv("MMSEARCH_HOME", "", 1);  // empty counts as unset
  EXPECT_EQ(default_data_dir(), fs::path("/data/mmsearch"));
  setenv("HOME", "relative", 1);
  unsetenv("XDG_DATA_HOME");
  try {
    default_data_dir();
    ADD_FAILURE() << "no error without a usable variable";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("MMSEARCH_HOME"), std::string::npos) << e.what();
  }

  restore("HOME", old_home ? keep_home.c_str() : nullptr);
  restore("XDG_DATA_HOME", old_xdg ? keep_xdg.c_str() : nullptr);
  restore("MMSEARCH_HOME", old_mm ? keep_mm.c_str() : nullptr);
}

TEST(StorePaths, Normalisation) {
  EXPECT_EQ(normalize_index_path("/a/b/../c/./d/"), "/a/c/d");
  EXPECT_EQ(normalize_index_path("/"), "/");
  EXPECT_EQ(normalize_index_path("x"), (fs::current_path() / "x").generic_string());
}
