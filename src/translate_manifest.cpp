// Reading a translation bundle's manifest (family "marian"): tokenizer, dims and generation
// settings. The fields every bundle has are read by read_manifest_file() (bundle.h).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "json_number.h"
#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/translate.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

[[noreturn]] void bad(const fs::path& where, const std::string& what) {
  throw Error(ErrorKind::kModel, where.string() + ": " + what);
}

// A required field. Integers must be JSON integers within T's range (json_number.h); any other
// conversion failure becomes Error(kModel) too.
template <typename T>
T req(const nlohmann::json& j, const char* key, const fs::path& where) {
  if (!j.contains(key)) bad(where, std::string("manifest lacks \"") + key + "\"");
  const nlohmann::json& value = j.at(key);
  if (!json_number_fits<T>(value)) {
    bad(where, std::string("manifest field \"") + key + "\" is not an integer in range");
  }
  try {
    return value.get<T>();
  } catch (const std::exception& e) {
    bad(where, std::string("manifest field \"") + key + "\": " + e.what());
  }
}

// An optional field: `fallback` when absent or null, else it must have T's type.
template <typename T>
T opt(const nlohmann::json& j, const char* key, T fallback, const fs::path& where) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  return req<T>(j, key, where);
}

// A section of the manifest ("tokenizer", "dims", ...), which must be an object.
const nlohmann::json& section(const nlohmann::json& j, const char* key, const fs::path& where,
                              bool required = true) {
  static const nlohmann::json empty = nlohmann::json::object();
  if (!j.contains(key) || (!required && j.at(key).is_null())) {
    if (required) bad(where, std::string("manifest lacks \"") + key + "\"");
    return empty;
  }
  if (!j.at(key).is_object())
    bad(where, std::string("manifest field \"") + key + "\" is not an object");
  return j.at(key);
}

}  // namespace

TranslatorManifest read_translator_manifest(const fs::path& dir) {
  return read_translator_manifest(read_manifest_file(dir));
}

TranslatorManifest read_translator_manifest(const ManifestFile& file) {
  const fs::path mpath = file.origin();
  const nlohmann::json& j = file.json;
  if (bundle_kind(file.family) != BundleKind::kTranslation) {
    bad(mpath, "family '" + std::string(to_string(file.family)) +
                   "' is not a translation model (expected marian)");
  }
  TranslatorManifest m;
  m.name = file.name;
  m.description = opt<std::string>(j, "description", "", mpath);
  const auto& tr = section(j, "translation", mpath, false);
  m.source_lang = opt<std::string>(tr, "source_lang", "", mpath);
  m.target_lang = opt<std::string>(tr, "target_lang", "", mpath);
  const auto& t = section(j, "tokenizer", mpath);
  m.source_spm = req<std::string>(t, "source_spm", mpath);
  m.target_spm = req<std::string>(t, "target_spm", mpath);
  m.vocab = req<std::string>(t, "vocab", mpath);
  m.vocab_size = req<int64_t>(t, "vocab_size", mpath);
  m.eos_token_id = req<int64_t>(t, "eos_token_id", mpath);
  m.unk_token_id = req<int64_t>(t, "unk_token_id", mpath);
  m.pad_token_id = req<int64_t>(t, "pad_token_id", mpath);
  m.model_max_length = req<int>(t, "model_max_length", mpath);
  const auto& d = section(j, "dims", mpath);
  m.d_model = req<int>(d, "d_model", mpath);
  m.encoder_layers = req<int>(d, "encoder_layers", mpath);
  m.decoder_layers = req<int>(d, "decoder_layers", mpath);
  m.heads = req<int>(d, "heads", mpath);
  m.head_dim = req<int>(d, "head_dim", mpath);
  m.max_positions = req<int>(d, "max_positions", mpath);
  const auto& g = section(j, "generation", mpath);
  m.decoder_start_token_id = req<int64_t>(g, "decoder_start_token_id", mpath);
  m.forced_eos_token_id = opt<int64_t>(g, "forced_eos_token_id", -1, mpath);
  if (g.contains("bad_words_ids") && !g["bad_words_ids"].is_null()) {
    if (!g["bad_words_ids"].is_array()) bad(mpath, "bad_words_ids is not a list");
    for (const auto& w : g["bad_words_ids"]) {
      if (!w.is_array() || w.size() != 1 || !is_json_integer_of<int64_t>(w[0])) {
        bad(mpath, "only single-token bad_words_ids are supported");
      }
      m.bad_words_ids.push_back(w[0].get<int64_t>());
    }
  }
  m.num_beams = req<int>(g, "num_beams", mpath);
  m.max_length = req<int>(g, "max_length", mpath);
  m.length_penalty = req<double>(g, "length_penalty", mpath);
  m.renormalize_logits = opt<bool>(g, "renormalize_logits", true, mpath);
  const auto& modules = section(j, "modules", mpath, false);
  m.encoder_module = opt<std::string>(modules, "encoder", m.encoder_module, mpath);
  m.decoder_module = opt<std::string>(modules, "decoder", m.decoder_module, mpath);
  if (m.vocab_size <= 0 || m.d_model <= 0 || m.heads <= 0 || m.head_dim <= 0 ||
      m.encoder_layers <= 0 || m.decoder_layers <= 0 || m.max_positions <= 0) {
    bad(mpath, "dims and vocab_size must be positive");
  }
  const auto is_token = [&](int64_t id) { return id >= 0 && id < m.vocab_size; };
  if (!is_token(m.eos_token_id) || !is_token(m.unk_token_id) || !is_token(m.pad_token_id) ||
      !is_token(m.decoder_start_token_id) ||
      (m.forced_eos_token_id != -1 && !is_token(m.forced_eos_token_id)) ||
      !std::all_of(m.bad_words_ids.begin(), m.bad_words_ids.end(), is_token)) {
    bad(mpath,
        "a token id lies outside the vocabulary (vocab_size " + std::to_string(m.vocab_size) + ")");
  }
  if (!std::isfinite(m.length_penalty)) bad(mpath, "length_penalty is not finite");
  if (m.num_beams < 1 || m.max_length < 2 || m.model_max_length < 2 ||
      m.model_max_length > m.max_positions ||
      static_cast<int64_t>(m.heads) * m.head_dim != m.d_model) {
    bad(mpath, "inconsistent generation / dims settings");
  }
  return m;
}

}  // namespace mmsearch
