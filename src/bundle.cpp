#include "mmsearch/bundle.h"

#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "mmsearch/error.h"
#include "mmsearch/hash.h"
#include "mmsearch/translate.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmsearch {
namespace {

[[noreturn]] void bad_manifest(const std::string& origin, const std::string& reason) {
  throw Error(ErrorKind::kModel, origin + ": invalid bundle manifest: " + reason);
}

// Reads a required field, turning nlohmann's type errors into a message naming the field.
template <typename T>
T required(const json& object, const char* key, const std::string& origin,
           const std::string& prefix = "") {
  if (!object.is_object() || !object.contains(key)) {
    bad_manifest(origin, "missing field '" + prefix + key + "'");
  }
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    bad_manifest(origin, "field '" + prefix + key + "' has the wrong type");
  }
}

template <typename T>
T optional_field(const json& object, const char* key, T fallback) {
  if (!object.is_object() || !object.contains(key) || object.at(key).is_null()) return fallback;
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

// "1.13.0a0" -> {1, 13}; unparseable -> nullopt.
std::optional<std::pair<int, int>> major_minor(const std::string& version) {
  int major = 0, minor = 0;
  char dot = 0;
  std::istringstream in(version);
  if (!(in >> major >> dot >> minor) || dot != '.') return std::nullopt;
  return std::make_pair(major, minor);
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kModel, path.string() + ": cannot read");
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// The manifest as plain JSON, read without validating anything (an empty object when it is
// unreadable: opening the bundle then says why).
json read_manifest_json(const fs::path& dir) {
  try {
    return json::parse(read_text_file(dir / kManifestFileName));
  } catch (const std::exception&) {
    return json::object();
  }
}

}  // namespace

std::string runtime_torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

Manifest parse_manifest(const json& j, const std::string& origin) {
  if (!j.is_object()) bad_manifest(origin, "not a JSON object");
  const auto format = optional_field<std::string>(j, "format", "");
  if (format != "mmsearch-bundle") {
    bad_manifest(origin, "'format' is '" + format + "', expected 'mmsearch-bundle'");
  }
  const int version = required<int>(j, "format_version", origin);
  if (version != kBundleFormatVersion) {
    throw Error(ErrorKind::kModel, origin + ": bundle format version " + std::to_string(version) +
                                       " is not supported (this mmsearch reads version " +
                                       std::to_string(kBundleFormatVersion) +
                                       "); re-export the bundle");
  }

  Manifest m;
  m.raw = j;
  m.name = required<std::string>(j, "name", origin);
  const auto family = required<std::string>(j, "family", origin);
  if (family != "blip" && family != "blip2") {
    bad_manifest(origin, "unknown family '" + family + "' (expected blip or blip2)");
  }
  m.family = family_from_string(family);
  m.description = optional_field<std::string>(j, "description", "");
  m.vision_encoder = optional_field<std::string>(j, "vision_encoder", "");

  const json& image = j.contains("image") ? j.at("image") : json();
  m.image.size = required<int>(image, "size", origin, "image.");
  if (m.image.size <= 0 || m.image.size > 4096) bad_manifest(origin, "image.size out of range");
  const auto mean = required<std::vector<float>>(image, "mean", origin, "image.");
  const auto stdev = required<std::vector<float>>(image, "std", origin, "image.");
  if (mean.size() != 3 || stdev.size() != 3) bad_manifest(origin, "image.mean/std need 3 values");
  for (int c = 0; c < 3; ++c) {
    m.image.mean[c] = mean[c];
    m.image.std[c] = stdev[c];
    if (!(stdev[c] > 0)) bad_manifest(origin, "image.std must be positive");
  }
  m.image.resize = optional_field<std::string>(image, "resize", "pil-bicubic-squash");
  if (m.image.resize != "pil-bicubic-squash") {
    bad_manifest(origin, "unsupported image.resize '" + m.image.resize + "'");
  }

  const json& text = j.contains("text") ? j.at("text") : json();
  m.text.vocab_file = required<std::string>(text, "vocab", origin, "text.");
  m.text.normalise = optional_field<std::string>(text, "normalise", "lavis-pre-caption");
  if (m.text.normalise != "lavis-pre-caption" && m.text.normalise != "none") {
    bad_manifest(origin, "unsupported text.normalise '" + m.text.normalise + "'");
  }
  m.text.max_words = optional_field<int>(text, "max_words", 50);
  m.text.lowercase = optional_field<bool>(text, "lowercase", true);
  m.text.max_tokens = optional_field<int>(text, "max_tokens", 35);
  m.text.itm_max_tokens = optional_field<int>(text, "itm_max_tokens", m.text.max_tokens);
  if (m.text.max_tokens < 2 || m.text.max_tokens > 512) {
    bad_manifest(origin, "text.max_tokens out of range");
  }
  m.text.cls_token_id = required<std::int64_t>(text, "cls_token_id", origin, "text.");
  m.text.sep_token_id = required<std::int64_t>(text, "sep_token_id", origin, "text.");
  m.text.pad_token_id = required<std::int64_t>(text, "pad_token_id", origin, "text.");
  m.text.unk_token_id = optional_field<std::int64_t>(text, "unk_token_id", 100);
  if (text.contains("enc_token_id") && !text.at("enc_token_id").is_null()) {
    m.text.enc_token_id = required<std::int64_t>(text, "enc_token_id", origin, "text.");
  }
  m.text.special_tokens =
      optional_field<std::map<std::string, std::int64_t>>(text, "special_tokens", {});

  const json& dims = j.contains("dims") ? j.at("dims") : json();
  m.dims.vision_tokens = required<int>(dims, "vision_tokens", origin, "dims.");
  m.dims.vision_width = required<int>(dims, "vision_width", origin, "dims.");
  m.dims.image_tokens = required<int>(dims, "image_tokens", origin, "dims.");
  m.dims.hidden = required<int>(dims, "hidden", origin, "dims.");
  m.dims.embed = required<int>(dims, "embed", origin, "dims.");
  m.dims.query_tokens = optional_field<int>(dims, "query_tokens", 0);
  if (m.family == Family::kBlip2 && m.dims.query_tokens <= 0) {
    bad_manifest(origin, "dims.query_tokens must be positive for blip2");
  }

  m.itm = optional_field<bool>(j, "itm", false);
  const json& similarity = j.contains("similarity") ? j.at("similarity") : json();
  const bool blip2 = m.family == Family::kBlip2;
  auto rule = [&](const char* key, ScoreRule fallback) {
    const auto name = optional_field<std::string>(similarity, key, to_string(fallback));
    try {
      return score_rule_from_string(name);
    } catch (const Error& e) {
      bad_manifest(origin, std::string("similarity.") + key + ": " + e.what());
    }
  };
  m.similarity_text_image =
      rule("text_image", blip2 ? ScoreRule::kMaxOverQueries : ScoreRule::kCls);
  m.similarity_image_image =
      rule("image_image", blip2 ? ScoreRule::kMeanOfQueries : ScoreRule::kCls);
  m.weights_dtype = optional_field<std::string>(j, "weights_dtype", "fp32");
  m.source_kind = optional_field<std::string>(j.contains("source") ? j.at("source") : json(),
                                              "kind", "unknown");

  m.torch_version = required<std::string>(j, "torch_version", origin);
  const auto exported = major_minor(m.torch_version);
  const auto runtime = major_minor(runtime_torch_version());
  if (!exported) bad_manifest(origin, "unreadable torch_version '" + m.torch_version + "'");
  if (runtime && *exported > *runtime) {
    throw Error(ErrorKind::kModel, origin + ": exported with torch " + m.torch_version +
                                       ", newer than this mmsearch's libtorch " +
                                       runtime_torch_version() + "; re-export it with torch " +
                                       runtime_torch_version());
  }

  m.files = required<std::map<std::string, std::string>>(j, "files", origin);
  for (const char* module : {"image.pt", "text.pt", "multimodal.pt"}) {
    if (!m.files.count(module)) bad_manifest(origin, std::string("files lacks ") + module);
  }
  if (!m.files.count(m.text.vocab_file)) bad_manifest(origin, "files lacks the vocab file");
  for (const auto& [file, digest] : m.files) {
    const fs::path relative(file);
    if (relative.is_absolute() || file.find("..") != std::string::npos) {
      bad_manifest(origin, "file name '" + file + "' escapes the bundle folder");
    }
    if (digest.size() != 64) bad_manifest(origin, "sha256 of '" + file + "' is malformed");
  }
  return m;
}

Bundle Bundle::open(const fs::path& dir) {
  const fs::path manifest_path = dir / kManifestFileName;
  std::error_code ec;
  if (!fs::is_regular_file(manifest_path, ec)) {
    throw Error(ErrorKind::kModel, dir.string() + ": not a model bundle (no mmsearch.json)");
  }
  const std::string bytes = read_text_file(manifest_path);
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::parse_error& e) {
    throw Error(ErrorKind::kModel, manifest_path.string() + ": not valid JSON: " + e.what());
  }
  Bundle bundle;
  bundle.dir_ = fs::absolute(dir).lexically_normal();
  bundle.manifest_ = parse_manifest(j, manifest_path.string());
  for (const auto& [file, digest] : bundle.manifest_.files) {
    if (!fs::is_regular_file(bundle.dir_ / file, ec)) {
      throw Error(ErrorKind::kModel, dir.string() + ": missing file " + file);
    }
  }
  bundle.identity_ =
      bundle.manifest_.name + "@" + sha256_bytes(bytes.data(), bytes.size()).substr(0, 16);
  return bundle;
}

void Bundle::verify_files(const fs::path& cache_file) const {
  verify_bundle_files(dir_, manifest_.files, cache_file);
}

void verify_bundle_files(const fs::path& dir_, const std::map<std::string, std::string>& files,
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
    const fs::path path = dir_ / file;
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) throw Error(ErrorKind::kModel, dir_.string() + ": missing file " + file);
    const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
    const std::string stamp = std::to_string(size) + ":" + std::to_string(mtime) + ":" + expected;
    const std::string key = path.string();
    if (cache.contains(key) && cache[key] == stamp) continue;
    const std::string actual = sha256_file(path);
    if (actual != expected) {
      throw Error(ErrorKind::kModel, dir_.string() + ": " + file +
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
    out << cache.dump(1);
    out.close();
    if (out) fs::rename(temporary, cache_file, ec);
  }
}

std::uintmax_t Bundle::size_on_disk() const {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return total;
}

std::vector<fs::path> model_search_path(const std::string& cli_models_dir) {
  std::vector<fs::path> candidates;
  if (!cli_models_dir.empty()) candidates.emplace_back(cli_models_dir);
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
        const json manifest_json = read_manifest_json(folder);
        listing.family = manifest_json.is_object() ? manifest_json.value("family", "") : "";
        if (listing.family == "marian") {
          const TranslatorManifest manifest = read_translator_manifest(folder);
          listing.name = manifest.name;
          if (verify_hashes) {
            verify_bundle_files(folder,
                                manifest_json.value("files", std::map<std::string, std::string>()),
                                verify_cache);
          }
          listing.valid_translator = true;
          listing.translator_languages = manifest.source_lang + "->" + manifest.target_lang;
        } else {
          Bundle bundle = Bundle::open(folder);
          if (verify_hashes) bundle.verify_files(verify_cache);
          listing.name = bundle.manifest().name;
          listing.bundle = std::move(bundle);
        }
      } catch (const Error& e) {
        listing.invalid_reason = e.what();
      }
      if (names.insert(listing.name).second) listings.push_back(std::move(listing));
    }
  }
  return listings;
}

Bundle find_bundle(const std::string& name_or_path, const std::vector<fs::path>& search_path) {
  std::error_code ec;
  if (name_or_path.find('/') != std::string::npos &&
      fs::exists(fs::path(name_or_path) / kManifestFileName, ec)) {
    return Bundle::open(name_or_path);
  }
  for (const auto& root : search_path) {
    if (fs::exists(root / name_or_path / kManifestFileName, ec)) {
      return Bundle::open(root / name_or_path);
    }
  }
  // Folder names may differ from manifest names: look inside as a last resort.
  std::string available;
  for (const auto& listing : discover_bundles(search_path, false)) {
    if (listing.name == name_or_path && listing.bundle) return *listing.bundle;
    available += (available.empty() ? "" : ", ") + listing.name;
  }
  std::string searched;
  for (const auto& root : search_path) searched += (searched.empty() ? "" : ", ") + root.string();
  throw Error(ErrorKind::kModel,
              "unknown model '" + name_or_path +
                  "' (searched: " + (searched.empty() ? "no model folder exists" : searched) +
                  "; available: " + (available.empty() ? "none" : available) +
                  "). Export one with scripts/export_models.py or pass --models DIR");
}

}  // namespace mmsearch
