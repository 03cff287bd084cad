// Replays a libFuzzer target without libFuzzer: calls its LLVMFuzzerTestOneInput once on every
// file under each folder given (recursively, in path order), so a gcc build runs the seed
// corpus and the saved crash inputs as a regression test (tests/cpp/fuzz.cmake). A folder that
// does not exist is skipped with a note. A crash or a failed check aborts, as under libFuzzer;
// the file being run is printed first, so the log names it.
//   fuzz_store_replay tests/fuzz/corpus/fuzz_store tests/fuzz/regressions/fuzz_store
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::size_t total = 0;
  for (int a = 1; a < argc; ++a) {
    const fs::path root(argv[a]);
    std::error_code ec;
    if (!fs::is_directory(root, ec)) {
      std::printf("replay: no folder %s, skipped\n", root.c_str());
      continue;
    }
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(root, ec)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    if (ec) {
      std::fprintf(stderr, "replay: cannot list %s: %s\n", root.c_str(), ec.message().c_str());
      return 2;
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "replay: cannot read %s\n", file.c_str());
        return 2;
      }
      const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
      std::printf("replay: %s (%zu bytes)\n", file.c_str(), bytes.size());
      std::fflush(stdout);
      // A copy of exactly the file's size, as libFuzzer hands it: a read past the end is
      // caught by ASan where the build has it.
      // (Never a null pointer, even when empty.)
      std::vector<std::uint8_t> input;
      input.reserve(bytes.size() + 1);
      input.assign(bytes.begin(), bytes.end());
      LLVMFuzzerTestOneInput(input.data(), input.size());
      ++total;
    }
    std::printf("replay: %zu inputs from %s\n", files.size(), root.c_str());
  }
  std::printf("replay: %zu inputs, all passed\n", total);
  return 0;
}
