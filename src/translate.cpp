// Translator: MarianMT bundles (encoder.pt / decoder.pt), greedy and beam search with the
// transformers 4.33 generate() rules. See include/mmsearch/translate.h and models/README.md.
#include "mmsearch/translate.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

[[noreturn]] void bad(const fs::path& where, const std::string& what) {
  throw Error(ErrorKind::kModel, where.string() + ": " + what);
}

// One finished-hypothesis list (transformers 4.33 BeamHypotheses, early_stopping=False).
struct Hyps {
  int n;
  double lp;
  std::vector<std::pair<double, std::vector<int64_t>>> beams;
  double worst = 1e9;

  void add(std::vector<int64_t> hyp, double sum_logprobs) {
    const double score = sum_logprobs / std::pow(static_cast<double>(hyp.size()), lp);
    if (static_cast<int>(beams.size()) < n || score > worst) {
      beams.emplace_back(score, std::move(hyp));
      if (static_cast<int>(beams.size()) > n) {
        std::vector<std::pair<double, size_t>> order;
        for (size_t i = 0; i < beams.size(); ++i) order.emplace_back(beams[i].first, i);
        std::sort(order.begin(), order.end());
        beams.erase(beams.begin() + static_cast<std::ptrdiff_t>(order[0].second));
        worst = order[1].first;
      } else {
        worst = std::min(score, worst);
      }
    }
  }
  bool is_done(double best_sum_logprobs, int64_t cur_len) const {
    if (static_cast<int>(beams.size()) < n) return false;
    return worst >= best_sum_logprobs / std::pow(static_cast<double>(cur_len), lp);
  }
  // sorted(beams, key=score)[-1]: the last among equal best scores.
  const std::pair<double, std::vector<int64_t>>& best() const {
    size_t b = 0;
    for (size_t i = 1; i < beams.size(); ++i) {
      if (!(beams[i].first < beams[b].first)) b = i;
    }
    return beams[b];
  }
};

}  // namespace

bool is_blank_text(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); });
}

struct Translator::Impl {
  fs::path dir;
  TranslatorManifest m;
  std::map<std::string, std::string> files;  // name -> sha256, from the manifest
  std::unique_ptr<MarianTokenizer> tok;
  torch::jit::Module encoder, decoder;

  // NoBadWords -> ForcedEOS -> LogitNormalization on float32 [N, V] scores.
  torch::Tensor process(torch::Tensor s, int64_t cur_len, int64_t max_length) const {
    s = s.clone();
    const float ninf = -std::numeric_limits<float>::infinity();
    for (int64_t b : m.bad_words_ids) s.select(1, b).fill_(ninf);
    if (m.forced_eos_token_id >= 0 && cur_len == max_length - 1) {
      s.fill_(ninf);
      s.select(1, m.forced_eos_token_id).fill_(0.0f);
    }
    if (m.renormalize_logits) s = torch::log_softmax(s, -1);
    return s;
  }

  torch::Tensor empty_cache(int64_t rows) const {
    return torch::zeros({m.decoder_layers, rows, m.heads, 0, m.head_dim}, torch::kFloat32);
  }

  // (logits of the last position [N,V] float32, self_k, self_v)
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> step(
      const torch::Tensor& tokens, const torch::Tensor& mask, const torch::Tensor& sk,
      const torch::Tensor& sv, const torch::Tensor& ck, const torch::Tensor& cv) {
    auto out = decoder.forward({tokens, mask, sk, sv, ck, cv}).toTuple();
    auto logits = out->elements()[0].toTensor();
    return {logits.select(1, logits.size(1) - 1).to(torch::kFloat32), out->elements()[1].toTensor(),
            out->elements()[2].toTensor()};
  }

  std::pair<torch::Tensor, torch::Tensor> cross(const torch::Tensor& enc) {
    auto out = decoder.get_method("cross_kv")({enc}).toTuple();
    return {out->elements()[0].toTensor(), out->elements()[1].toTensor()};
  }

  void greedy(const torch::Tensor& ids, const torch::Tensor& mask, int64_t max_length,
              std::vector<std::vector<int64_t>>& rows, std::vector<double>& scores) {
    const int64_t b = ids.size(0);
    auto enc = encoder.forward({ids, mask}).toTensor();
    auto [ck, cv] = cross(enc);
    auto sk = empty_cache(b), sv = empty_cache(b);
    rows.assign(static_cast<size_t>(b), {m.decoder_start_token_id});
    scores.assign(static_cast<size_t>(b), 0.0);
    std::vector<bool> done(static_cast<size_t>(b), false);
    auto last = torch::full({b, 1}, m.decoder_start_token_id, torch::kInt64);
    int64_t cur = 1;
    while (cur < max_length) {
      auto [logits, k, v] = step(last, mask, sk, sv, ck, cv);
      sk = k;
      sv = v;
      auto s = process(logits, cur, max_length);
      auto nxt = s.argmax(-1);
      auto picked = s.gather(1, nxt.unsqueeze(1)).squeeze(1);
      auto acc = nxt.accessor<int64_t, 1>();
      auto pacc = picked.accessor<float, 1>();
      bool all_done = true;
      for (int64_t i = 0; i < b; ++i) {
        const auto u = static_cast<size_t>(i);
        if (done[u]) {
          acc[i] = m.pad_token_id;
        } else {
          rows[u].push_back(acc[i]);
          scores[u] += pacc[i];
          if (acc[i] == m.eos_token_id) done[u] = true;
        }
        all_done = all_done && done[u];
      }
      last = nxt.unsqueeze(1);
      ++cur;
      if (all_done) break;
    }
  }

  void beam(const torch::Tensor& ids, const torch::Tensor& mask0, int nb, int64_t max_length,
            double lp, std::vector<std::vector<int64_t>>& rows, std::vector<double>& out_scores) {
    const int64_t b = ids.size(0);
    auto enc = encoder.forward({ids, mask0}).toTensor().repeat_interleave(nb, 0);
    auto mask = mask0.repeat_interleave(nb, 0);
    auto [ck, cv] = cross(enc);
    const int64_t n = b * nb;
    auto sk = empty_cache(n), sv = empty_cache(n);
    std::vector<std::vector<int64_t>> seq(static_cast<size_t>(n), {m.decoder_start_token_id});
    auto beam_scores = torch::zeros({b, nb}, torch::kFloat32);
    beam_scores.slice(1, 1).fill_(-1e9f);
    beam_scores = beam_scores.view({-1});
    std::vector<Hyps> hyps(static_cast<size_t>(b), Hyps{nb, lp, {}, 1e9});
    std::vector<bool> done(static_cast<size_t>(b), false);
    auto last = torch::full({n, 1}, m.decoder_start_token_id, torch::kInt64);
    while (true) {
      const int64_t cur = static_cast<int64_t>(seq[0].size());
      auto [logits, k, v] = step(last, mask, sk, sv, ck, cv);
      auto logp = torch::log_softmax(logits, -1);
      auto s = process(logp, cur, max_length) + beam_scores.unsqueeze(1);
      const int64_t vsz = s.size(1);
      s = s.view({b, nb * vsz});
      auto [top_s, top_i] = torch::topk(s, 2 * nb, 1, true, true);
      auto ts = top_s.accessor<float, 2>();
      auto ti = top_i.accessor<int64_t, 2>();
      std::vector<float> nb_scores(static_cast<size_t>(n), 0.0f);
      std::vector<int64_t> nb_tokens(static_cast<size_t>(n), m.pad_token_id);
      std::vector<int64_t> nb_index(static_cast<size_t>(n), 0);
      for (int64_t bi = 0; bi < b; ++bi) {
        const auto ub = static_cast<size_t>(bi);
        if (done[ub]) continue;
        int kk = 0;
        float best = -std::numeric_limits<float>::infinity();
        for (int r = 0; r < 2 * nb; ++r) best = std::max(best, ts[bi][r]);
        for (int r = 0; r < 2 * nb; ++r) {
          const int64_t tok = ti[bi][r] % vsz;
          const int64_t src = bi * nb + ti[bi][r] / vsz;
          if (tok == m.eos_token_id) {
            if (r >= nb) continue;
            hyps[ub].add(seq[static_cast<size_t>(src)], static_cast<double>(ts[bi][r]));
          } else {
            const auto slot = static_cast<size_t>(bi * nb + kk);
            nb_scores[slot] = ts[bi][r];
            nb_tokens[slot] = tok;
            nb_index[slot] = src;
            ++kk;
          }
          if (kk == nb) break;
        }
        done[ub] = done[ub] || hyps[ub].is_done(static_cast<double>(best), cur + 1);
      }
      std::vector<std::vector<int64_t>> next(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) {
        const auto ur = static_cast<size_t>(r);
        next[ur] = seq[static_cast<size_t>(nb_index[ur])];
        next[ur].push_back(nb_tokens[ur]);
      }
      seq = std::move(next);
      beam_scores = torch::from_blob(nb_scores.data(), {n}, torch::kFloat32).clone();
      auto idx = torch::from_blob(nb_index.data(), {n}, torch::kInt64).clone();
      sk = k.index_select(1, idx);
      sv = v.index_select(1, idx);
      last = torch::from_blob(nb_tokens.data(), {n, 1}, torch::kInt64).clone();
      const bool all_done = std::all_of(done.begin(), done.end(), [](bool x) { return x; });
      if (all_done || static_cast<int64_t>(seq[0].size()) >= max_length) break;
    }
    auto bs = beam_scores.accessor<float, 1>();
    rows.assign(static_cast<size_t>(b), {});
    out_scores.assign(static_cast<size_t>(b), 0.0);
    for (int64_t bi = 0; bi < b; ++bi) {
      const auto ub = static_cast<size_t>(bi);
      if (!done[ub]) {
        for (int j = 0; j < nb; ++j) {
          const int64_t r = bi * nb + j;
          hyps[ub].add(seq[static_cast<size_t>(r)], static_cast<double>(bs[r]));
        }
      }
      const auto& best = hyps[ub].best();
      rows[ub] = best.second;
      out_scores[ub] = best.first;
    }
    // transformers appends </s> when the row is shorter than the batch's output width
    // min(longest + 1, max_length); rows that hit the cap end without it.
    size_t longest = 0;
    for (const auto& r : rows) longest = std::max(longest, r.size());
    const auto width = std::min<size_t>(longest + 1, static_cast<size_t>(max_length));
    for (auto& r : rows) {
      if (r.size() < width) r.push_back(m.eos_token_id);
    }
  }
};

Translator::Translator(const fs::path& bundle_dir, bool verify_hashes)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = bundle_dir;
  const ManifestFile file = read_manifest_file(bundle_dir);
  impl_->m = read_translator_manifest(file);
  impl_->files = file.files;
  const auto& m = impl_->m;
  std::error_code ec;
  for (const auto& f : {m.source_spm, m.target_spm, m.vocab, m.encoder_module, m.decoder_module}) {
    if (!fs::is_regular_file(bundle_dir / f, ec)) bad(bundle_dir / f, "missing from the bundle");
  }
  if (verify_hashes) verify_bundle_files(bundle_dir, impl_->files);
  impl_->tok =
      std::make_unique<MarianTokenizer>(bundle_dir / m.source_spm, bundle_dir / m.target_spm,
                                        bundle_dir / m.vocab, m.model_max_length);
  if (impl_->tok->vocab_size() != m.vocab_size) {
    bad(bundle_dir / m.vocab, "has " + std::to_string(impl_->tok->vocab_size()) +
                                  " ids, the manifest says " + std::to_string(m.vocab_size));
  }
  try {
    impl_->encoder = torch::jit::load((bundle_dir / m.encoder_module).string(), torch::kCPU);
    impl_->decoder = torch::jit::load((bundle_dir / m.decoder_module).string(), torch::kCPU);
  } catch (const c10::Error& e) {
    bad(bundle_dir, std::string("cannot load TorchScript module: ") + e.what_without_backtrace());
  }
  impl_->encoder.eval();
  impl_->decoder.eval();
}

Translator::~Translator() = default;
Translator::Translator(Translator&&) noexcept = default;
Translator& Translator::operator=(Translator&&) noexcept = default;

const TranslatorManifest& Translator::manifest() const { return impl_->m; }
const MarianTokenizer& Translator::tokenizer() const { return *impl_->tok; }
const fs::path& Translator::dir() const { return impl_->dir; }

fs::path Translator::locate(const std::string& name_or_path,
                            const std::vector<fs::path>& search_path) {
  return locate_bundle(name_or_path, search_path, BundleKind::kTranslation);
}

std::vector<std::vector<int64_t>> Translator::generate(
    const std::vector<std::vector<int64_t>>& sources, const TranslateOptions& o,
    std::vector<double>* scores) {
  const auto& m = impl_->m;
  const int nb = o.num_beams > 0 ? o.num_beams : m.num_beams;
  const double lp = o.length_penalty > -1e29 ? o.length_penalty : m.length_penalty;
  int64_t max_length = o.max_new_tokens > 0 ? 1 + o.max_new_tokens
                                            : (o.max_length > 0 ? o.max_length : m.max_length);
  max_length = std::min<int64_t>(max_length, m.max_positions);
  if (max_length < 2) throw Error(ErrorKind::kUsage, "max length must be at least 2");
  std::vector<std::vector<int64_t>> rows;
  std::vector<double> sc;
  if (sources.empty()) return rows;
  size_t width = 0;
  for (const auto& s : sources) {
    if (s.empty()) throw Error(ErrorKind::kUsage, "generate: an empty source id list");
    if (s.size() > static_cast<size_t>(m.max_positions)) {
      throw Error(ErrorKind::kUsage, "generate: a source longer than the model's positions");
    }
    width = std::max(width, s.size());
  }
  const auto b = static_cast<int64_t>(sources.size());
  auto ids = torch::full({b, static_cast<int64_t>(width)}, m.pad_token_id, torch::kInt64);
  auto mask = torch::zeros({b, static_cast<int64_t>(width)}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const auto& s = sources[static_cast<size_t>(i)];
    for (size_t t = 0; t < s.size(); ++t) {
      if (s[t] < 0 || s[t] >= m.vocab_size)
        throw Error(ErrorKind::kUsage, "generate: id out of range");
      ids[i][static_cast<int64_t>(t)] = s[t];
      mask[i][static_cast<int64_t>(t)] = 1;
    }
  }
  c10::InferenceMode guard;
  if (nb == 1) {
    impl_->greedy(ids, mask, max_length, rows, sc);
  } else {
    impl_->beam(ids, mask, nb, max_length, lp, rows, sc);
  }
  if (scores) *scores = sc;
  return rows;
}

std::vector<Translation> Translator::translate_detailed(const std::vector<std::string>& texts,
                                                        const TranslateOptions& o) {
  std::vector<Translation> out(texts.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < texts.size(); ++i) {
    out[i].source = texts[i];
    if (is_blank_text(texts[i])) continue;  // empty / blank captions: "" without running the model
    bool cut = false;
    out[i].source_ids = impl_->tok->encode(texts[i], false, true, &cut);
    out[i].truncated = cut;
    if (cut) {
      out[i].warning = "input truncated to " + std::to_string(impl_->m.model_max_length) +
                       " tokens (the model's limit)";
    }
    todo.push_back(i);
  }
  const size_t bs = static_cast<size_t>(std::max(1, o.batch_size));
  for (size_t start = 0; start < todo.size(); start += bs) {
    const size_t end = std::min(todo.size(), start + bs);
    std::vector<std::vector<int64_t>> batch;
    for (size_t k = start; k < end; ++k) batch.push_back(out[todo[k]].source_ids);
    std::vector<double> scores;
    auto rows = generate(batch, o, &scores);
    for (size_t k = start; k < end; ++k) {
      Translation& t = out[todo[k]];
      t.output_ids = std::move(rows[k - start]);
      t.score = scores[k - start];
      t.text = impl_->tok->decode(t.output_ids, true, true);
    }
  }
  return out;
}

std::vector<std::string> Translator::translate(const std::vector<std::string>& texts) {
  std::vector<std::string> out;
  for (auto& t : translate_detailed(texts)) out.push_back(std::move(t.text));
  return out;
}

}  // namespace mmsearch
