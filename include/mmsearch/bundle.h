// Model bundles: the manifest (`mmsearch.json`) and where bundles are found.
// The contract is models/README.md; this file is its C++ reader and enforcer.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mmsearch/rules.h"

namespace mmsearch {

// Version 2 adds weights.bin: modules saved without weights, each weight stored once
// (models/README.md). Version 1 bundles (weights inside each module) are still read.
inline constexpr int kBundleFormatVersion = 2;
inline constexpr int kOldestBundleFormatVersion = 1;
inline constexpr const char* kManifestFileName = "mmsearch.json";

struct ImageSpec {
  int size = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  std::string resize;  // "pil-bicubic-squash"
};

struct TextSpec {
  std::string vocab_file;  // relative to the bundle folder
  std::string normalise;   // "lavis-pre-caption"
  int max_words = 50;
  bool lowercase = true;
  int max_tokens = 35;      // ids incl. [CLS]/[SEP] for index and query text
  int itm_max_tokens = 35;  // ids for the ITM head (BLIP-2: 32)
  std::int64_t cls_token_id = 101;
  std::int64_t sep_token_id = 102;
  std::int64_t pad_token_id = 0;
  std::int64_t unk_token_id = 100;
  std::optional<std::int64_t> enc_token_id;            // BLIP only
  std::map<std::string, std::int64_t> special_tokens;  // name -> id, incl. those beyond the vocab
};

struct Dims {
  int vision_tokens = 0;
  int vision_width = 0;
  int image_tokens = 0;
  int hidden = 0;
  int embed = 0;
  int query_tokens = 0;  // 0 for BLIP
};

struct Manifest {
  std::string name;
  Family family = Family::kBlip;  // kBlip or kBlip2 (translation bundles: translate.h)
  std::string description;
  std::string vision_encoder;
  ImageSpec image;
  TextSpec text;
  Dims dims;
  bool itm = false;
  // Validated when parsed; see rules.h for where each applies.
  ScoreRule similarity_text_image = ScoreRule::kCls;   // BLIP-2 default: kMaxOverQueries
  ScoreRule similarity_image_image = ScoreRule::kCls;  // BLIP-2 default: kMeanOfQueries
  std::string weights_dtype;                           // "fp32" | "bf16" | "fp16"
  std::string source_kind;  // "checkpoint" | "deterministic" | "tiny" | "trained"
  std::string torch_version;
  std::map<std::string, std::string> files;  // file name -> sha256
  int format_version = kBundleFormatVersion;
  std::string weights_file;  // format 2: the shared weight file ("weights.bin"); empty in 1
  nlohmann::json raw;
};

// ---------------------------------------------------------------------------------------------
// What every bundle kind shares (vision-language and translation): one manifest reader, one
// locator and one verify cache.

// A bundle's mmsearch.json as read from disk, with the fields every kind has checked: format,
// format_version, family, name, and a `files` list of safe relative names with sha256 digests.
struct ManifestFile {
  std::filesystem::path dir;  // absolute, lexically normal
  std::string bytes;          // the manifest as on disk
  nlohmann::json json;        // the parsed manifest
  Family family = Family::kBlip;
  std::string name;
  std::map<std::string, std::string> files;  // file name -> sha256
  // name + "@" + first 16 hex digits of sha256(bytes): the manifest lists every file's sha256,
  // so a re-exported bundle with other weights gets another identity.
  std::string identity() const;
  std::string origin() const;  // dir / mmsearch.json, for messages
};

// Reads <dir>/mmsearch.json once. Throws Error(kModel) naming the file and the reason: missing,
// not JSON, another format or version, an unknown family, or a bad `files` entry. Whether the
// listed files exist is checked by whoever loads them (a translator is located, and its
// identity read, without touching its weights).
ManifestFile read_manifest_file(const std::filesystem::path& dir);

// The two kinds of bundle a name can ask for.
enum class BundleKind { kVisionLanguage, kTranslation };
BundleKind bundle_kind(Family family);

// Finds the bundle `name_or_path` of `kind`: a folder holding a mmsearch.json, or a name looked
// up as ROOT/NAME on the search path, else as the manifest name of a bundle there. Throws
// Error(kModel) saying where it looked, which bundles of that kind exist, and how to get one.
std::filesystem::path locate_bundle(const std::string& name_or_path,
                                    const std::vector<std::filesystem::path>& search_path,
                                    BundleKind kind);

// The per-user cache of verified bundle files: default_data_dir() / "verified-bundles.json",
// or empty (no caching) when there is no usable data folder.
std::filesystem::path default_verify_cache();

// The image-text fields of a manifest, validated. Throws Error(kModel) naming the file and the bad
// field.
Manifest parse_manifest(const ManifestFile& file);

// The libtorch version this binary runs, "major.minor.patch".
std::string runtime_torch_version();

class Bundle {
 public:
  // Reads and validates <dir>/mmsearch.json (format, version, torch version, that every listed
  // file exists). Throws Error(kModel) with the folder and the reason.
  static Bundle open(const std::filesystem::path& dir);
  static Bundle open(const ManifestFile& file);

  // Checks every file's sha256 against the manifest. Results are cached per (path, size,
  // mtime, inode change time, device, inode) in `cache_file` when it is non-empty, so that a
  // query does not re-hash gigabytes of weights on every start; any write to a file, even one
  // that restores its mtime, moves its change time and so re-hashes it. Throws Error(kModel) naming
  // the first mismatching file.
  void verify_files(const std::filesystem::path& cache_file = default_verify_cache()) const;

  const Manifest& manifest() const { return manifest_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path file(const std::string& name) const { return dir_ / name; }
  // Stable identity for the index: name + sha256 of the manifest bytes (which list every
  // file's sha256), so a re-exported bundle never mixes with old vectors.
  const std::string& identity() const { return identity_; }
  std::uintmax_t size_on_disk() const;

 private:
  std::filesystem::path dir_;
  Manifest manifest_;
  std::string identity_;
};

// Folders searched for bundles, in order: --models DIR, $MMSEARCH_MODELS, ./models, then
// share/mmsearch/models beside the binary and under the install prefix, then the models/ folder
// of the source tree the binary was built from. Missing folders are kept out.
std::vector<std::filesystem::path> model_search_path(const std::string& cli_models_dir);

// Checks every file of `files` (name -> sha256) in `dir`, caching results per (path, stat
// stamp; see Bundle::verify_files) in `cache_file` when non-empty. Throws Error(kModel) naming the
// first bad file.
void verify_bundle_files(const std::filesystem::path& dir,
                         const std::map<std::string, std::string>& files,
                         const std::filesystem::path& cache_file = default_verify_cache());

// A bundle folder as found on the search path, valid or not. Vision-language bundles (blip,
// blip2) open as a Bundle; translation bundles (family "marian", see translate.h) are only
// validated here.
struct BundleListing {
  std::string name;
  std::filesystem::path dir;
  std::string family;            // as the manifest says; empty when unreadable
  std::optional<Bundle> bundle;  // a valid vision-language bundle
  bool valid_translator = false;
  std::string translator_languages;  // e.g. "it->en"
  std::string invalid_reason;        // set when not valid
  bool valid() const { return bundle.has_value() || valid_translator; }
};

// Every folder holding a mmsearch.json under the search path; a name found twice keeps the
// first. Never throws for a broken bundle: it is listed with its reason.
std::vector<BundleListing> discover_bundles(const std::vector<std::filesystem::path>& search_path,
                                            bool verify_hashes,
                                            const std::filesystem::path& verify_cache = {});

// Finds the bundle `name` (or a path to a bundle folder) on the search path. Throws
// Error(kModel) saying where it looked and which models exist.
Bundle find_bundle(const std::string& name_or_path,
                   const std::vector<std::filesystem::path>& search_path);

}  // namespace mmsearch
