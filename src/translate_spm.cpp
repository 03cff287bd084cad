// MarianTokenizer: sentencepiece (through the dlopen'ed shim, see translate.h) + Marian vocab.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "mmsearch/error.h"
#include "mmsearch/translate.h"

#ifndef MMSEARCH_SPM_SHIM_BUILD_PATH
#define MMSEARCH_SPM_SHIM_BUILD_PATH ""
#endif
#ifndef MMSEARCH_SPM_SHIM_INSTALL_PATH
#define MMSEARCH_SPM_SHIM_INSTALL_PATH ""
#endif

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

constexpr const char* kShimName = "libmmsearch_spm.so";

using PieceCb = void (*)(void*, const char*, size_t);

struct Shim {
  void* lib = nullptr;
  int (*abi)() = nullptr;
  void* (*load)(const char*, char*, size_t) = nullptr;
  void (*free)(void*) = nullptr;
  int (*encode)(void*, const char*, size_t, PieceCb, void*, char*, size_t) = nullptr;
  int (*decode)(void*, const char* const*, const size_t*, size_t, PieceCb, void*, char*,
                size_t) = nullptr;
};

std::vector<fs::path> shim_candidates() {
  std::vector<fs::path> out;
  if (const char* env = std::getenv("MMSEARCH_SPM_SHIM"); env && *env) out.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back(exe.parent_path() / kShimName);
    out.push_back(exe.parent_path().parent_path() / "lib" / "mmsearch" / kShimName);
  }
  if (*MMSEARCH_SPM_SHIM_BUILD_PATH) out.emplace_back(MMSEARCH_SPM_SHIM_BUILD_PATH);
  if (*MMSEARCH_SPM_SHIM_INSTALL_PATH) out.emplace_back(MMSEARCH_SPM_SHIM_INSTALL_PATH);
  return out;
}

const Shim& shim() {
  static Shim s;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    for (const auto& p : shim_candidates()) {
      std::error_code ec;
      if (!fs::exists(p, ec)) {
        tried += "\n  " + p.string() + " (absent)";
        continue;
      }
      // RTLD_DEEPBIND: the shim and libsentencepiece bind to their own (protobuf-lite)
      // symbols before libtorch's libprotobuf; RTLD_LOCAL keeps them out of the global scope.
      void* lib = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (!lib) {
        const char* e = dlerror();
        tried += "\n  " + p.string() + " (" + (e ? e : "dlopen failed") + ")";
        continue;
      }
      s.lib = lib;
      s.abi = reinterpret_cast<int (*)()>(dlsym(lib, "mmspm_abi_version"));
      s.load = reinterpret_cast<decltype(s.load)>(dlsym(lib, "mmspm_load"));
      s.free = reinterpret_cast<decltype(s.free)>(dlsym(lib, "mmspm_free"));
      s.encode = reinterpret_cast<decltype(s.encode)>(dlsym(lib, "mmspm_encode"));
      s.decode = reinterpret_cast<decltype(s.decode)>(dlsym(lib, "mmspm_decode_pieces"));
      if (!s.abi || !s.load || !s.free || !s.encode || !s.decode || s.abi() != 1) {
        tried += "\n  " + p.string() + " (not a compatible mmsearch_spm shim)";
        dlclose(lib);
        s = Shim{};
        continue;
      }
      return;
    }
    failure = "sentencepiece shim " + std::string(kShimName) +
              " not found or not loadable; tried:" + tried +
              "\n(set MMSEARCH_SPM_SHIM to its path)";
  });
  if (!s.lib) throw Error(ErrorKind::kInternal, failure);
  return s;
}

void append_cb(void* user, const char* p, size_t n) {
  static_cast<std::vector<std::string>*>(user)->emplace_back(p, n);
}

// One loaded sentencepiece model.
class Spm {
 public:
  explicit Spm(const fs::path& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      throw Error(ErrorKind::kModel, path.string() + ": sentencepiece model not found");
    }
    const Shim& s = shim();
    char err[512] = {0};
    handle_ = s.load(path.c_str(), err, sizeof err);
    if (!handle_) {
      throw Error(ErrorKind::kModel,
                  path.string() + ": cannot load sentencepiece model: " + std::string(err));
    }
  }
  ~Spm() {
    if (handle_) shim().free(handle_);
  }
  Spm(const Spm&) = delete;
  Spm& operator=(const Spm&) = delete;

  std::vector<std::string> encode(std::string_view text) const {
    std::vector<std::string> pieces;
    char err[512] = {0};
    if (shim().encode(handle_, text.data(), text.size(), append_cb, &pieces, err, sizeof err) !=
        0) {
      throw Error(ErrorKind::kInternal, "sentencepiece encode failed: " + std::string(err));
    }
    return pieces;
  }

  std::string decode_pieces(const std::vector<std::string>& pieces) const {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& p : pieces) {
      ptrs.push_back(p.data());
      lens.push_back(p.size());
    }
    std::vector<std::string> out;
    char err[512] = {0};
    if (shim().decode(handle_, ptrs.data(), lens.data(), pieces.size(), append_cb, &out, err,
                      sizeof err) != 0) {
      throw Error(ErrorKind::kInternal, "sentencepiece decode failed: " + std::string(err));
    }
    return out.empty() ? std::string() : out[0];
  }

 private:
  void* handle_ = nullptr;
};

// ---- Python str.isspace / strip on UTF-8 ----

bool py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Decodes the code point at s[i] (lenient: an invalid byte is taken as itself); sets len.
char32_t decode_at(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = n;
  return c;
}

std::string_view lstrip(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n;
    if (!py_space(decode_at(s, i, &n))) break;
    i += n;
  }
  return s.substr(i);
}

std::string_view rstrip(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t n;
    const char32_t c = decode_at(s, start, &n);
    if (start + n != end || !py_space(c)) break;
    end = start;
  }
  return s.substr(0, end);
}

const char* const kLiterals[] = {"</s>", "<unk>", "<pad>"};

// re.split on the special literals, with the strip rules of MarianTokenizer; a part that is a
// literal is returned with is_literal set.
struct Part {
  std::string_view text;
  bool literal;
};

std::vector<Part> split_specials(std::string_view text) {
  std::vector<Part> raw;
  size_t pos = 0, i = 0;
  while (i < text.size()) {
    bool hit = false;
    for (const char* lit : kLiterals) {
      const std::string_view l(lit);
      if (text.compare(i, l.size(), l) == 0) {
        raw.push_back({text.substr(pos, i - pos), false});
        raw.push_back({text.substr(i, l.size()), true});
        i += l.size();
        pos = i;
        hit = true;
        break;
      }
    }
    if (!hit) ++i;
  }
  raw.push_back({text.substr(pos), false});
  std::vector<Part> out;
  for (size_t k = 0; k < raw.size(); ++k) {
    if (raw[k].literal) {
      out.push_back(raw[k]);
      continue;
    }
    std::string_view p = raw[k].text;
    if (k > 0) p = lstrip(p);
    if (k + 1 < raw.size()) p = rstrip(p);
    if (!p.empty()) out.push_back({p, false});
  }
  return out;
}

// Python re `>>.+<<` (greedy, `.` = anything but \n): the match starting at i, if any.
bool lang_code_at(std::string_view s, size_t i, size_t* end) {
  if (s.compare(i, 2, ">>") != 0) return false;
  size_t limit = s.find('\n', i + 2);
  if (limit == std::string_view::npos) limit = s.size();
  // the last "<<" starting at >= i+3 and ending <= limit
  if (limit < i + 5) return false;
  for (size_t j = limit - 2;; --j) {
    if (s.compare(j, 2, "<<") == 0) {
      *end = j + 2;
      return true;
    }
    if (j == i + 3) break;
  }
  return false;
}

std::string remove_lang_codes(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t end;
    if (lang_code_at(s, i, &end)) {
      i = end;
    } else {
      out.push_back(s[i]);
      ++i;
    }
  }
  return out;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

}  // namespace

struct MarianTokenizer::Impl {
  std::unique_ptr<Spm> src, tgt;
  std::unordered_map<std::string, int64_t> vocab;
  std::vector<std::string> inverse;
  int64_t eos = 0, unk = 1, pad = 0;
  int max_len = 512;
};

MarianTokenizer::MarianTokenizer(const fs::path& source_spm, const fs::path& target_spm,
                                 const fs::path& vocab_json, int model_max_length)
    : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  for (const auto& p : {source_spm, target_spm, vocab_json}) {
    if (!fs::is_regular_file(p, ec)) {
      throw Error(ErrorKind::kModel, p.string() + ": tokenizer file not found");
    }
  }
  std::ifstream in(vocab_json, std::ios::binary);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kModel, vocab_json.string() + ": cannot parse vocab: " + e.what());
  }
  if (!j.is_object()) throw Error(ErrorKind::kModel, vocab_json.string() + ": not a JSON object");
  int64_t max_id = -1;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0) {
      throw Error(ErrorKind::kModel, vocab_json.string() + ": bad id for " + it.key());
    }
    const int64_t id = it.value().get<int64_t>();
    impl_->vocab[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  impl_->inverse.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [tok, id] : impl_->vocab) impl_->inverse[static_cast<size_t>(id)] = tok;
  for (const char* lit : kLiterals) {
    if (!impl_->vocab.count(lit)) {
      throw Error(ErrorKind::kModel, vocab_json.string() + ": no " + std::string(lit) + " entry");
    }
  }
  impl_->eos = impl_->vocab["</s>"];
  impl_->unk = impl_->vocab["<unk>"];
  impl_->pad = impl_->vocab["<pad>"];
  impl_->max_len = model_max_length;
  impl_->src = std::make_unique<Spm>(source_spm);
  impl_->tgt = std::make_unique<Spm>(target_spm);
}

MarianTokenizer::~MarianTokenizer() = default;
MarianTokenizer::MarianTokenizer(MarianTokenizer&&) noexcept = default;
MarianTokenizer& MarianTokenizer::operator=(MarianTokenizer&&) noexcept = default;

int64_t MarianTokenizer::eos_id() const { return impl_->eos; }
int64_t MarianTokenizer::unk_id() const { return impl_->unk; }
int64_t MarianTokenizer::pad_id() const { return impl_->pad; }
int64_t MarianTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->inverse.size()); }
int MarianTokenizer::model_max_length() const { return impl_->max_len; }

std::vector<std::string> MarianTokenizer::tokenize(std::string_view text, bool target) const {
  const Spm& sp = target ? *impl_->tgt : *impl_->src;
  std::vector<std::string> pieces;
  for (const Part& part : split_specials(text)) {
    if (part.literal) {
      pieces.emplace_back(part.text);
      continue;
    }
    size_t end;
    if (lang_code_at(part.text, 0, &end)) pieces.emplace_back(part.text.substr(0, end));
    for (auto& p : sp.encode(remove_lang_codes(part.text))) pieces.push_back(std::move(p));
  }
  return pieces;
}

std::vector<int64_t> MarianTokenizer::encode(std::string_view text, bool target, bool truncate,
                                             bool* truncated) const {
  std::vector<int64_t> ids;
  for (const auto& p : tokenize(text, target)) {
    auto it = impl_->vocab.find(p);
    ids.push_back(it == impl_->vocab.end() ? impl_->unk : it->second);
  }
  bool cut = false;
  if (truncate && impl_->max_len > 0 && ids.size() + 1 > static_cast<size_t>(impl_->max_len)) {
    ids.resize(static_cast<size_t>(impl_->max_len - 1));
    cut = true;
  }
  if (truncated) *truncated = cut;
  ids.push_back(impl_->eos);
  return ids;
}

std::string MarianTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special,
                                    bool clean_up) const {
  std::string out;
  std::vector<std::string> run;
  for (int64_t id : ids) {
    const bool special = id == impl_->eos || id == impl_->unk || id == impl_->pad;
    const std::string tok = id >= 0 && static_cast<size_t>(id) < impl_->inverse.size() &&
                                    !impl_->inverse[static_cast<size_t>(id)].empty()
                                ? impl_->inverse[static_cast<size_t>(id)]
                                : std::string("<unk>");
    if (special) {
      if (skip_special) continue;
      out += impl_->tgt->decode_pieces(run) + tok + " ";
      run.clear();
    } else {
      run.push_back(tok);
    }
  }
  out += impl_->tgt->decode_pieces(run);
  out = std::string(rstrip(lstrip(out)));
  if (clean_up) {
    static const std::pair<const char*, const char*> kCleanups[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [a, b] : kCleanups) replace_all(out, a, b);
  }
  return out;
}

}  // namespace mmsearch
