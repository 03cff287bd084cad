#include "mmsearch/bundle.h"

#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "json_number.h"
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
  if (!json_number_fits<T>(object.at(key))) {
    bad_manifest(origin, "field '" + prefix + key + "' is not an integer in range");
  }
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    bad_manifest(origin, "field '" + prefix + key + "' has the wrong type");
  }
}

// An optional field: `fallback` when absent or null; a value of another type is an error too
// (a typo such as "max_tokens": "35" must not silently mean the default).
template <typename T>
T optional_field(const json& object, const char* key, T fallback, const std::string& origin,
                 const std::string& prefix = "") {
  if (!object.is_object() || !object.contains(key) || object.at(key).is_null()) return fallback;
  return required<T>(object, key, origin, prefix);
}

// {"[ENC]": 30522, ...}: every value an int64.
std::map<std::string, std::int64_t> token_map(const json& object, const char* key,
                                              const std::string& origin,
                                              const std::string& prefix) {
  std::map<std::string, std::int64_t> tokens;
  if (!object.is_object() || !object.contains(key) || object.at(key).is_null()) return tokens;
  const json& map = object.at(key);
  if (!map.is_object()) bad_manifest(origin, "field '" + prefix + key + "' is not an object");
  for (const auto& [name, id] : map.items()) {
    if (!is_json_integer_of<std::int64_t>(id)) {
      bad_manifest(origin, "field '" + prefix + key + "." + name + "' is not an integer");
    }
    tokens.emplace(name, id.get<std::int64_t>());
  }
  return tokens;
}

// "1.13.0a0" -> {1, 13}; unparseable -> nullopt.
std::optional<std::pair<int, int>> major_minor(const std::string& version) {
  int major = 0, minor = 0;
  char dot = 0;
  std::istringstream in(version);
  if (!(in >> major >> dot >> minor) || dot != '.') return std::nullopt;
  return std::make_pair(major, minor);
}

}  // namespace

std::string runtime_torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

Manifest parse_manifest(const ManifestFile& file) {
  const json& j = file.json;
  const std::string origin = file.origin();
  if (bundle_kind(file.family) != BundleKind::kVisionLanguage) {
    bad_manifest(origin, "family '" + std::string(to_string(file.family)) +
                             "' is not an image-text model (expected blip or blip2)");
  }
  Manifest m;
  m.raw = j;
  m.name = file.name;
  m.family = file.family;
  m.description = optional_field<std::string>(j, "description", "", origin);
  m.vision_encoder = optional_field<std::string>(j, "vision_encoder", "", origin);

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
  m.image.resize =
      optional_field<std::string>(image, "resize", "pil-bicubic-squash", origin, "image.");
  if (m.image.resize != "pil-bicubic-squash") {
    bad_manifest(origin, "unsupported image.resize '" + m.image.resize + "'");
  }

  const json& text = j.contains("text") ? j.at("text") : json();
  m.text.vocab_file = required<std::string>(text, "vocab", origin, "text.");
  m.text.normalise =
      optional_field<std::string>(text, "normalise", "lavis-pre-caption", origin, "text.");
  if (m.text.normalise != "lavis-pre-caption" && m.text.normalise != "none") {
    bad_manifest(origin, "unsupported text.normalise '" + m.text.normalise + "'");
  }
  m.text.max_words = optional_field<int>(text, "max_words", 50, origin, "text.");
  m.text.lowercase = optional_field<bool>(text, "lowercase", true, origin, "text.");
  m.text.max_tokens = optional_field<int>(text, "max_tokens", 35, origin, "text.");
  m.text.itm_max_tokens =
      optional_field<int>(text, "itm_max_tokens", m.text.max_tokens, origin, "text.");
  if (m.text.max_tokens < 2 || m.text.max_tokens > 512) {
    bad_manifest(origin, "text.max_tokens out of range");
  }
  m.text.cls_token_id = required<std::int64_t>(text, "cls_token_id", origin, "text.");
  m.text.sep_token_id = required<std::int64_t>(text, "sep_token_id", origin, "text.");
  m.text.pad_token_id = required<std::int64_t>(text, "pad_token_id", origin, "text.");
  m.text.unk_token_id = optional_field<std::int64_t>(text, "unk_token_id", 100, origin, "text.");
  if (text.contains("enc_token_id") && !text.at("enc_token_id").is_null()) {
    m.text.enc_token_id = required<std::int64_t>(text, "enc_token_id", origin, "text.");
  }
  m.text.special_tokens = token_map(text, "special_tokens", origin, "text.");

  const json& dims = j.contains("dims") ? j.at("dims") : json();
  m.dims.vision_tokens = required<int>(dims, "vision_tokens", origin, "dims.");
  m.dims.vision_width = required<int>(dims, "vision_width", origin, "dims.");
  m.dims.image_tokens = required<int>(dims, "image_tokens", origin, "dims.");
  m.dims.hidden = required<int>(dims, "hidden", origin, "dims.");
  m.dims.embed = required<int>(dims, "embed", origin, "dims.");
  m.dims.query_tokens = optional_field<int>(dims, "query_tokens", 0, origin, "dims.");
  if (m.dims.vision_tokens <= 0 || m.dims.vision_width <= 0 || m.dims.image_tokens <= 0 ||
      m.dims.hidden <= 0 || m.dims.embed <= 0 || m.dims.query_tokens < 0) {
    bad_manifest(origin, "dims must be positive");
  }
  if (m.family == Family::kBlip2 && m.dims.query_tokens <= 0) {
    bad_manifest(origin, "dims.query_tokens must be positive for blip2");
  }

  m.itm = optional_field<bool>(j, "itm", false, origin);
  const json& similarity = j.contains("similarity") ? j.at("similarity") : json();
  const bool blip2 = m.family == Family::kBlip2;
  auto rule = [&](const char* key, ScoreRule fallback) {
    const auto name =
        optional_field<std::string>(similarity, key, to_string(fallback), origin, "similarity.");
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
  m.weights_dtype = optional_field<std::string>(j, "weights_dtype", "fp32", origin);
  m.source_kind = optional_field<std::string>(j.contains("source") ? j.at("source") : json(),
                                              "kind", "unknown", origin, "source.");

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

  m.files = file.files;
  for (const char* module : {"image.pt", "text.pt", "multimodal.pt"}) {
    if (!m.files.count(module)) bad_manifest(origin, std::string("files lacks ") + module);
  }
  if (!m.files.count(m.text.vocab_file)) bad_manifest(origin, "files lacks the vocab file");
  m.format_version = j.at("format_version").get<int>();
  if (m.format_version >= 2) {
    m.weights_file = required<std::string>(j, "weights", origin);
    if (!m.files.count(m.weights_file)) bad_manifest(origin, "files lacks the weights file");
  }
  return m;
}

Bundle Bundle::open(const fs::path& dir) { return open(read_manifest_file(dir)); }

Bundle Bundle::open(const ManifestFile& file) {
  std::error_code ec;
  for (const auto& [name, digest] : file.files) {
    if (!fs::is_regular_file(file.dir / name, ec)) {
      throw Error(ErrorKind::kModel, file.dir.string() + ": missing file " + name);
    }
  }
  Bundle bundle;
  bundle.dir_ = file.dir;
  bundle.manifest_ = parse_manifest(file);
  bundle.identity_ = file.identity();
  return bundle;
}

void Bundle::verify_files(const fs::path& cache_file) const {
  verify_bundle_files(dir_, manifest_.files, cache_file);
}

std::uintmax_t Bundle::size_on_disk() const {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return total;
}

Bundle find_bundle(const std::string& name_or_path, const std::vector<fs::path>& search_path) {
  return Bundle::open(locate_bundle(name_or_path, search_path, BundleKind::kVisionLanguage));
}

}  // namespace mmsearch
