// File and byte hashes (include/mmsearch/hash.h): XXH64 content hash and SHA-256.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "fresh_dir.h"
#include "mmsearch/error.h"
#include "mmsearch/hash.h"

namespace fs = std::filesystem;
using namespace mmsearch;

namespace {

fs::path fresh_dir(const std::string& name) { return fresh_test_dir("hash", name); }

// 3 MiB + 17 bytes: several 1 MiB blocks and a short last one.
std::string multi_block_bytes() {
  std::string bytes(3 * (1 << 20) + 17, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 31 + 7);
  return bytes;
}

void expect_input_error(const std::function<void()>& body, const fs::path& named) {
  try {
    body();
    ADD_FAILURE() << "no error for " << named;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find(named.string()), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Xxh64, MatchesReferenceImplementation) {
  // Reference values from libxxhash 0.8.1 (XXH64, seed 0) on bytes (i * 7 + 1) mod 256,
  // covering the short, 4/8-byte tail and 32-byte stripe paths.
  const std::vector<std::pair<int, std::uint64_t>> cases = {
      {0, 0xef46db3751d8e999ULL},   {1, 0x8a4127811b21e730ULL},   {3, 0xb6e6c910c2fd373aULL},
      {4, 0x22eda2cf6af4c124ULL},   {7, 0x34084d91a233a751ULL},   {8, 0xc6f1803a5e0b3222ULL},
      {31, 0x6ab1c40e29f50073ULL},  {32, 0x5a0756fbe9ecd3d1ULL},  {33, 0xdc50cdc37bb9c183ULL},
      {100, 0xd248bfc5208b0b16ULL}, {1000, 0x6be03acbf959c413ULL}};
  for (const auto& [n, expected] : cases) {
    std::string bytes(n, '\0');
    for (int i = 0; i < n; ++i) bytes[i] = static_cast<char>((i * 7 + 1) % 256);
    EXPECT_EQ(xxh64(bytes.data(), bytes.size()), expected) << "length " << n;
  }
}

TEST(Xxh64, FileHashStreamsAcrossBlocks) {
  const fs::path dir = fresh_dir("xxh64");
  const std::string bytes = multi_block_bytes();
  std::ofstream(dir / "f.bin", std::ios::binary) << bytes;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(xxh64(bytes.data(), bytes.size())));
  EXPECT_EQ(hash_file(dir / "f.bin"), std::string("xxh64:") + hex);
  expect_input_error([&] { hash_file(dir / "missing.bin"); }, dir / "missing.bin");
}

TEST(Sha256, MatchesKnownDigests) {
  EXPECT_EQ(sha256_bytes("", 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_bytes("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, FileHashStreamsAcrossBlocks) {
  const fs::path dir = fresh_dir("sha256");
  const std::string bytes = multi_block_bytes();
  std::ofstream(dir / "f.bin", std::ios::binary) << bytes;
  std::ofstream(dir / "empty.bin", std::ios::binary).close();
  EXPECT_EQ(sha256_file(dir / "f.bin"), sha256_bytes(bytes.data(), bytes.size()));
  EXPECT_EQ(sha256_file(dir / "empty.bin"), sha256_bytes("", 0));
  expect_input_error([&] { sha256_file(dir / "missing.bin"); }, dir / "missing.bin");
  // A folder opens but cannot be read.
  expect_input_error([&] { sha256_file(dir); }, dir);
  expect_input_error([&] { hash_file(dir); }, dir);
}
