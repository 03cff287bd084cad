// libFuzzer target for the bundle manifest readers: the input is written as mmsearch.json into a
// scratch bundle folder (which holds empty files of the usual names, so that a manifest listing
// them opens), then read the way mmsearch reads a bundle: read_manifest_file (what every bundle
// kind shares), then parse_manifest and Bundle::open for a vision-language family or
// read_translator_manifest for a translation one, the sha256 check of the listed files, and
// discover_bundles over the folder. Any bytes must give a manifest or Error(kModel), never a
// crash, another exception, a sanitizer report or a large allocation, and what parses must
// satisfy the checks the readers promise (ranges, listed files, dims).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_support.h"
#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/translate.h"

namespace fs = std::filesystem;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

// A models folder per process holding one bundle folder, with the files a bundle names
// (empty: their sha256 is that of no bytes, which seeds can list).
const fs::path& models_root() {
  static const fs::path root = [] {
    fs::path d = fuzz_support::process_scratch_dir("manifest");
    fs::remove_all(d);
    fs::create_directories(d / "bundle");
    for (const char* name :
         {"image.pt", "text.pt", "multimodal.pt", "vocab.txt", "weights.bin", "encoder.pt",
          "decoder.pt", "source.spm", "target.spm", "vocab.json"}) {
      std::ofstream(d / "bundle" / name);
    }
    return d;
  }();
  return root;
}

template <typename Body>
void expect_model_error(Body&& body) {
  try {
    body();
  } catch (const mmsearch::Error& error) {
    check(error.kind() == mmsearch::ErrorKind::kModel);
  }
}

void check_vision_language(const mmsearch::ManifestFile& file) {
  expect_model_error([&] {
    const mmsearch::Manifest m = mmsearch::parse_manifest(file);
    check(m.name == file.name && m.family == file.family);
    check(m.image.size > 0 && m.image.size <= 4096);
    for (int c = 0; c < 3; ++c) check(m.image.std[c] > 0);
    check(m.text.max_tokens >= 2 && m.text.max_tokens <= 512);
    for (const char* module : {"image.pt", "text.pt", "multimodal.pt"}) {
      check(m.files.count(module) == 1);
    }
    check(m.files.count(m.text.vocab_file) == 1);
    check(m.format_version < 2 || m.files.count(m.weights_file) == 1);
    if (m.family == mmsearch::Family::kBlip2) check(m.dims.query_tokens > 0);
    check(m.dims.embed > 0 && m.dims.hidden > 0 && m.dims.vision_tokens > 0);
  });
  expect_model_error([&] {
    const mmsearch::Bundle bundle = mmsearch::Bundle::open(file);
    check(bundle.identity() == file.identity());
    bundle.verify_files(fs::path());
  });
}

void check_translation(const mmsearch::ManifestFile& file) {
  expect_model_error([&] {
    const mmsearch::TranslatorManifest m = mmsearch::read_translator_manifest(file);
    check(m.name == file.name);
    check(m.num_beams >= 1 && m.max_length >= 2 && m.model_max_length >= 2);
    check(m.model_max_length <= m.max_positions);
    check(static_cast<std::int64_t>(m.heads) * m.head_dim == m.d_model);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path& root = models_root();
  const fs::path dir = root / "bundle";
  fuzz_support::write_bytes(dir / mmsearch::kManifestFileName, data, size);

  expect_model_error([&] {
    const mmsearch::ManifestFile file = mmsearch::read_manifest_file(dir);
    check(!file.name.empty());
    const std::int64_t version = file.json.at("format_version").get<std::int64_t>();
    check(version >= mmsearch::kOldestBundleFormatVersion &&
          version <= mmsearch::kBundleFormatVersion);
    for (const auto& [name, digest] : file.files) {
      check(!name.empty() && !fs::path(name).is_absolute());
      check(name.find("..") == std::string::npos);
      check(digest.size() == 64);
    }
    if (mmsearch::bundle_kind(file.family) == mmsearch::BundleKind::kTranslation) {
      check_translation(file);
    } else {
      check_vision_language(file);
    }
    mmsearch::verify_bundle_files(file.dir, file.files, fs::path());
  });

  // Listing never throws for a broken bundle: it names the reason instead.
  const auto listings = mmsearch::discover_bundles({root}, size % 2 == 1, fs::path());
  check(listings.size() == 1);
  check(listings[0].valid() || !listings[0].invalid_reason.empty());
  return 0;
}
