// What every bundle kind shares: reading mmsearch.json once, the search path, finding a bundle
// by name, listing bundles, and checking files against their sha256 with a per-user cache.
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "json_number.h"
#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/hash.h"
#include "mmsearch/paths.h"
#include "mmsearch/translate.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmsearch {
namespace {

[[noreturn]] void bad_manifest(const fs::path& origin, const std::string& reason) {
  throw Error(ErrorKind::kModel, origin.string() + ": invalid bundle manifest: " + reason);
}

std::string read_file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kModel, path.string() + ": cannot read");
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

bool is_hex_digest(const std::string& digest) {
  return digest.size() == 64 && std::all_of(digest.begin(), digest.end(), [](unsigned char c) {
           return std::isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

std::string ManifestFile::identity() const {
  return name + "@" + sha256_bytes(bytes.data(), bytes.size()).substr(0, 16);
}

std::string ManifestFile::origin() const { return (dir / kManifestFileName).string(); }

ManifestFile read_manifest_file(const fs::path& dir) {
  const fs::path path = dir / kManifestFileName;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw Error(ErrorKind::kModel, dir.string() + ": not a model bundle (no mmsearch.json)");
  }
  ManifestFile file;
  file.dir = fs::absolute(dir).lexically_normal();
  file.bytes = read_file_bytes(path);
  try {
    file.json = json::parse(file.bytes);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number beyond a double ("1e400", found by fuzzing)
    throw Error(ErrorKind::kModel, path.string() + ": not valid JSON: " + e.what());
  }
  const json& j = file.json;
  if (!j.is_object()) bad_manifest(path, "not a JSON object");
  const std::string format =
      j.contains("format") && j["format"].is_string() ? j["format"].get<std::string>() : "";
  if (format != "mmsearch-bundle") {
    bad_manifest(path, "'format' is '" + format + "', expected 'mmsearch-bundle'");
  }
  if (!j.contains("format_version") || !is_json_integer_of<int>(j["format_version"])) {
    bad_manifest(path, "missing or non-integer 'format_version'");
  }
  const int version = j["format_version"].get<int>();
  if (version < kOldestBundleFormatVersion || version > kBundleFormatVersion) {
    throw Error(ErrorKind::kModel,
                path.string() + ": bundle format version " + std::to_string(version) +
                    " is not supported (this mmsearch reads versions " +
                    std::to_string(kOldestBundleFormatVersion) + " to " +
                    std::to_string(kBundleFormatVersion) + "); re-export the bundle");
  }
  if (!j.contains("family") || !j["family"].is_string()) bad_manifest(path, "missing 'family'");
  try {
    file.family = family_from_string(j["family"].get<std::string>());
  } catch (const Error& e) {
    bad_manifest(path, e.what());
  }
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
    bad_manifest(path, "missing 'name'");
  }
  file.name = j["name"].get<std::string>();
  try {
    file.files = j.at("files").get<std::map<std::string, std::string>>();
  } catch (const json::exception&) {
    bad_manifest(path, "missing or malformed 'files' (file name -> sha256)");
  }
  for (const auto& [name, digest] : file.files) {
    const fs::path relative(name);
    if (name.empty() || relative.is_absolute() || name.find("..") != std::string::npos) {
      bad_manifest(path, "file name '" + name + "' escapes the bundle folder");
    }
    if (!is_hex_digest(digest)) bad_manifest(path, "sha256 of '" + name + "' is malformed");
  }
  return file;
}

BundleKind bundle_kind(Family family) {
  return family == Family::kMarian ? BundleKind::kTranslation : BundleKind::kVisionLanguage;
}

fs::path default_verify_cache() {
  try {
    return default_data_dir() / "verified-bundles.json";
  } catch (const Error&) {
    return {};  // no usable data folder: verify every time
  }
}

void verify_bundle_files(const fs::path& dir, const std::map<std::string, std::string>& files,
                         const fs::path& cache_file) {
  json cache = json::object();
  if (!cache_file.empty()) {
    std::ifstream in(cache_file);
    if (in) {
      try {
        cache = json::parse(in);
      } catch (const json::exception&) {
        cache = json::object();  // a damaged cache only costs a re-hash
      }
    }
    if (!cache.is_object()) cache = json::object();
  }
  bool cache_changed = false;
  for (const auto& [file, expected] : files) {
    const fs::path path = dir / file;
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
      throw Error(ErrorKind::kModel, dir.string() + ": missing file " + file);
    }
    // Size and mtime alone are easy to keep while changing bytes (touch -r, a tool that
    // restores times); the inode change time is not settable, and any write or replacement
    // moves it, so a file whose stamp still matches has not been written since it was hashed.
    auto ns = [](const struct timespec& t) {
      return std::to_string(static_cast<long long>(t.tv_sec) * 1000000000LL + t.tv_nsec);
    };
    const std::string stamp = "v2:" + std::to_string(info.st_size) + ":" + ns(info.st_mtim) + ":" +
                              ns(info.st_ctim) + ":" + std::to_string(info.st_dev) + ":" +
                              std::to_string(info.st_ino) + ":" + expected;
    const std::string key = path.string();
    if (cache.contains(key) && cache[key] == stamp) continue;
    if (sha256_file(path) != expected) {
      throw Error(ErrorKind::kModel, dir.string() + ": " + file +
                                         " does not match its sha256 in mmsearch.json "
                                         "(corrupt or modified bundle; re-export it)");
    }
    cache[key] = stamp;
    cache_changed = true;
  }
  if (cache_changed && !cache_file.empty()) {
    std::error_code ec;
    fs::create_directories(cache_file.parent_path(), ec);
    const fs::path temporary = cache_file.string() + ".tmp";
    std::ofstream out(temporary);
    // A bundle folder whose path is not UTF-8 is only re-hashed each time, never an error.
    out << cache.dump(1, ' ', false, json::error_handler_t::replace);
    out.close();
    if (out) fs::rename(temporary, cache_file, ec);
  }
}

std::vector<fs::path> model_search_path(const std::string& extra_models_dir) {
  std::vector<fs::path> candidates;
  if (!extra_models_dir.empty()) candidates.emplace_back(extra_models_dir);
  if (const char* env = std::getenv("MMSEARCH_MODELS"); env && *env) {
    candidates.emplace_back(env);
  }
  candidates.emplace_back("models");
  // Next to the running binary (a relocated install), the configured install prefix, and
  // last the source tree the binary was built from, so that build/mmsearch finds the bundled
  // default model from any folder.
  std::error_code exe_ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", exe_ec);
  if (!exe_ec) candidates.push_back(exe.parent_path().parent_path() / "share/mmsearch/models");
  candidates.emplace_back(MMSEARCH_INSTALL_MODELS_DIR);
  candidates.emplace_back(MMSEARCH_SOURCE_MODELS_DIR);
  std::vector<fs::path> existing;
  std::set<fs::path> seen;
  for (const auto& candidate : candidates) {
    std::error_code ec;
    if (!fs::is_directory(candidate, ec)) continue;
    const fs::path canonical = fs::weakly_canonical(candidate, ec);
    if (seen.insert(canonical).second) existing.push_back(canonical);
  }
  return existing;
}

std::vector<BundleListing> discover_bundles(const std::vector<fs::path>& search_path,
                                            bool verify_hashes, const fs::path& verify_cache) {
  std::vector<BundleListing> listings;
  std::set<std::string> names;
  for (const auto& root : search_path) {
    std::error_code ec;
    std::vector<fs::path> folders;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      // Hidden folders are the exporter's staging (.NAME.tmp-*) and replaced (.NAME.old-*)
      // bundles, never something to load.
      if (entry.path().filename().string().rfind('.', 0) == 0) continue;
      if (entry.is_directory(ec) && fs::exists(entry.path() / kManifestFileName, ec)) {
        folders.push_back(entry.path());
      }
    }
    std::sort(folders.begin(), folders.end());
    for (const auto& folder : folders) {
      BundleListing listing;
      listing.name = folder.filename().string();
      listing.dir = folder;
      try {
        const ManifestFile file = read_manifest_file(folder);
        listing.name = file.name;
        listing.family = to_string(file.family);
        if (bundle_kind(file.family) == BundleKind::kTranslation) {
          const TranslatorManifest manifest = read_translator_manifest(file);
          listing.valid_translator = true;
          listing.translator_languages = manifest.source_lang + "->" + manifest.target_lang;
        } else {
          listing.bundle = Bundle::open(file);
        }
        if (verify_hashes) verify_bundle_files(file.dir, file.files, verify_cache);
      } catch (const Error& e) {
        listing.bundle.reset();
        listing.valid_translator = false;
        listing.invalid_reason = e.what();
      }
      if (names.insert(listing.name).second) listings.push_back(std::move(listing));
    }
  }
  return listings;
}

fs::path locate_bundle(const std::string& name_or_path, const std::vector<fs::path>& search_path,
                       BundleKind kind) {
  std::error_code ec;
  const fs::path direct(name_or_path);
  const bool path_like =
      name_or_path.find('/') != std::string::npos || name_or_path == "." || name_or_path == "..";
  if (path_like && fs::exists(direct / kManifestFileName, ec)) return direct;
  for (const auto& root : search_path) {
    if (fs::exists(root / name_or_path / kManifestFileName, ec)) return root / name_or_path;
  }
  // Folder names may differ from manifest names: look inside as a last resort.
  std::string available;
  for (const auto& listing : discover_bundles(search_path, false)) {
    const bool of_kind =
        kind == BundleKind::kTranslation ? listing.valid_translator : listing.bundle.has_value();
    if (!of_kind) continue;
    if (listing.name == name_or_path) return listing.dir;
    available += (available.empty() ? "" : ", ") + listing.name;
  }
  std::string searched;
  for (const auto& root : search_path) searched += (searched.empty() ? "" : ", ") + root.string();
  throw Error(
      ErrorKind::kModel,
      (kind == BundleKind::kTranslation ? "translation model '" + name_or_path + "' not found"
                                        : "unknown model '" + name_or_path + "'") +
          " (searched: " + (searched.empty() ? "no model folder exists" : searched) +
          "; available: " + (available.empty() ? "none" : available) +
          "). Export one with scripts/export_models.py export " +
          (kind == BundleKind::kTranslation ? name_or_path : std::string("NAME")) +
          ", or add its folder to the model search path");
}

}  // namespace mmsearch
