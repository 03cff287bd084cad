// libFuzzer target for the captions readers (src/captions.cpp): the input is written into a
// scratch folder as captions.csv, captions.tsv, captions.jsonl and a sidecar in turn, and read
// strictly and leniently. Any bytes must give a table or Error(kInput), never a crash, and:
// a lenient read fails only on the header; a strict read that succeeds equals the lenient one;
// captions are trimmed, non-empty, unique per image and within kMaxCaptionsPerImage.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>

#include "fuzz_support.h"
#include "mmsearch/captions.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

using fuzz_support::write_bytes;

// A folder per process (libFuzzer may run several), with files for rows to name: plain, in a
// sub-folder, and one stored in NFD so the NFC lookup runs.
const fs::path& scratch() {
  static const fs::path dir = [] {
    fs::path d = fuzz_support::process_scratch_dir("captions");
    fs::remove_all(d);
    fs::create_directories(d / "sub");
    for (const char* name : {"a.jpg", "sub/b.jpg", "cafe\xCC\x81.jpg", "x.jpg"}) {
      std::ofstream(d / name) << "image";
    }
    return d;
  }();
  return dir;
}

void check_info(const mmsearch::CaptionInfo& info) {
  check(info.captions.size() <= mmsearch::kMaxCaptionsPerImage);
  for (const auto& caption : info.captions) {
    check(!caption.empty());
    check(caption.find_first_of(" \t\r\n") != 0);
    check(caption.find_last_not_of(" \t\r\n") == caption.size() - 1);
  }
}

std::optional<mmsearch::CaptionTable> read(const fs::path& root, bool lenient) {
  try {
    return mmsearch::read_caption_table(root, mmsearch::CaptionOptions{lenient});
  } catch (const mmsearch::Error& error) {
    check(error.kind() == mmsearch::ErrorKind::kInput);
    if (lenient) check(std::string(error.what()).find("header row") != std::string::npos);
    return std::nullopt;
  }
}

void check_table(const fs::path& root) {
  const auto strict = read(root, false);
  const auto lenient = read(root, true);
  if (strict) {
    check(lenient && lenient->by_path.size() == strict->by_path.size() &&
          lenient->warnings == strict->warnings);
  }
  if (!lenient) return;
  for (const auto& [path, info] : lenient->by_path) {
    check_info(info);
    check(std::set<std::string>(info.captions.begin(), info.captions.end()).size() ==
          info.captions.size());
    if (strict) check(strict->by_path.at(path).captions == info.captions);
  }
  for (const char* image : {"a.jpg", "sub/b.jpg", "cafe\xCC\x81.jpg"}) {
    try {
      check_info(mmsearch::captions_for(*lenient, root, root / image));
    } catch (const mmsearch::Error& error) {
      check(error.kind() == mmsearch::ErrorKind::kInput);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path& root = scratch();
  // One source at a time: csv wins over tsv over jsonl, and any table hides the sidecar.
  for (const char* name : {"captions.csv", "captions.tsv", "captions.jsonl"}) {
    write_bytes(root / name, data, size);
    check_table(root);
    fs::remove(root / name);
  }
  write_bytes(root / "x.txt", data, size);
  try {
    check_info(mmsearch::captions_for(mmsearch::CaptionTable{}, root, root / "x.jpg"));
  } catch (const mmsearch::Error& error) {
    check(error.kind() == mmsearch::ErrorKind::kInput);
  }
  fs::remove(root / "x.txt");
  return 0;
}
