// Reading a translation bundle's manifest (family "marian"): tokenizer, dims and generation
// settings. The fields every bundle has are read by read_manifest_file() (bundle.h).
#include <nlohmann/json.hpp>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/translate.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

[[noreturn]] void bad(const fs::path& where, const std::string& what) {
  throw Error(ErrorKind::kModel, where.string() + ": " + what);
}

template <typename T>
T req(const nlohmann::json& j, const char* key, const fs::path& where) {
  if (!j.contains(key)) bad(where, std::string("manifest lacks \"") + key + "\"");
  try {
    return j.at(key).get<T>();
  } catch (const std::exception& e) {
    bad(where, std::string("manifest field \"") + key + "\": " + e.what());
  }
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
  m.description = j.value("description", "");
  if (j.contains("translation")) {
    m.source_lang = j["translation"].value("source_lang", "");
    m.target_lang = j["translation"].value("target_lang", "");
  }
  const auto& t = j.at("tokenizer");
  m.source_spm = req<std::string>(t, "source_spm", mpath);
  m.target_spm = req<std::string>(t, "target_spm", mpath);
  m.vocab = req<std::string>(t, "vocab", mpath);
  m.vocab_size = req<int64_t>(t, "vocab_size", mpath);
  m.eos_token_id = req<int64_t>(t, "eos_token_id", mpath);
  m.unk_token_id = req<int64_t>(t, "unk_token_id", mpath);
  m.pad_token_id = req<int64_t>(t, "pad_token_id", mpath);
  m.model_max_length = req<int>(t, "model_max_length", mpath);
  const auto& d = j.at("dims");
  m.d_model = req<int>(d, "d_model", mpath);
  m.encoder_layers = req<int>(d, "encoder_layers", mpath);
  m.decoder_layers = req<int>(d, "decoder_layers", mpath);
  m.heads = req<int>(d, "heads", mpath);
  m.head_dim = req<int>(d, "head_dim", mpath);
  m.max_positions = req<int>(d, "max_positions", mpath);
  const auto& g = j.at("generation");
  m.decoder_start_token_id = req<int64_t>(g, "decoder_start_token_id", mpath);
  m.forced_eos_token_id = g.contains("forced_eos_token_id") && !g["forced_eos_token_id"].is_null()
                              ? g["forced_eos_token_id"].get<int64_t>()
                              : -1;
  if (g.contains("bad_words_ids")) {
    for (const auto& w : g["bad_words_ids"]) {
      if (w.size() != 1) bad(mpath, "only single-token bad_words_ids are supported");
      m.bad_words_ids.push_back(w[0].get<int64_t>());
    }
  }
  m.num_beams = req<int>(g, "num_beams", mpath);
  m.max_length = req<int>(g, "max_length", mpath);
  m.length_penalty = req<double>(g, "length_penalty", mpath);
  m.renormalize_logits = g.value("renormalize_logits", true);
  if (j.contains("modules")) {
    m.encoder_module = j["modules"].value("encoder", m.encoder_module);
    m.decoder_module = j["modules"].value("decoder", m.decoder_module);
  }
  if (m.num_beams < 1 || m.max_length < 2 || m.model_max_length < 2 ||
      m.model_max_length > m.max_positions || m.heads * m.head_dim != m.d_model) {
    bad(mpath, "inconsistent generation / dims settings");
  }
  return m;
}

}  // namespace mmsearch
