#include "mmsearch/indexer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <future>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "mmsearch/captions.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

bool is_hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

// The category a file's folder gives it (see captions.h): the first sub-folder under root.
std::string first_subfolder(const fs::path& root, const fs::path& image) {
  const fs::path relative = fs::path(normalize_index_path(image)).lexically_relative(root);
  auto it = relative.begin();
  if (it != relative.end() && std::next(it) != relative.end()) return it->string();
  return "";
}

std::int64_t mtime_ns(const fs::path& path, std::error_code& ec) {
  const auto time = fs::last_write_time(path, ec);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

StoredVectors tensor_rows(const torch::Tensor& rows, VectorKind kind, int caption_index) {
  const torch::Tensor t = rows.contiguous().to(torch::kFloat32);
  StoredVectors v;
  v.kind = kind;
  v.caption_index = caption_index;
  v.rows = static_cast<int>(t.size(0));
  v.cols = static_cast<int>(t.size(1));
  v.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  return v;
}

// One file that needs work, and what can be reused for it.
struct Job {
  fs::path path;
  FileState state;
  CaptionInfo info;
  std::vector<std::string> english;  // per caption: text_en to store ("" without translation)
  std::optional<IndexedFile> reuse;  // a stored record with the same content
  bool needs_model = true;           // false when every vector can be reused
};

struct Prepared {
  std::optional<torch::Tensor> pixels;  // [3,S,S] when decoding succeeded
  std::string error;
};

bool same_captions(const std::vector<Caption>& stored, const Job& job) {
  if (stored.size() != job.info.captions.size()) return false;
  for (std::size_t i = 0; i < stored.size(); ++i) {
    if (stored[i].text != job.info.captions[i] || stored[i].text_en != job.english[i]) {
      return false;
    }
  }
  return true;
}

bool is_blank(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); });
}

// The text the model embeds for caption c: its English translation when there is one.
const std::string& embed_text(const Job& job, std::size_t c) {
  return job.english[c].empty() ? job.info.captions[c] : job.english[c];
}

const StoredVectors* find_vectors(const IndexedFile& file, VectorKind kind, int caption_index) {
  for (const auto& v : file.vectors) {
    if (v.kind == kind && v.caption_index == caption_index) return &v;
  }
  return nullptr;
}

// Builds the record for a job whose content is already stored: image vectors as they are,
// caption vectors where the caption text is identical. Returns false when some caption has no
// reusable vectors (then the model has to run).
bool reuse_record(const Job& job, IndexedFile& out) {
  out.state = job.state;
  out.category = job.info.category;
  for (std::size_t c = 0; c < job.info.captions.size(); ++c) {
    out.captions.push_back({job.info.captions[c], job.english[c]});
  }
  const IndexedFile& old = *job.reuse;
  for (const auto& v : old.vectors) {
    if (!is_caption_kind(v.kind)) out.vectors.push_back(v);
  }
  for (std::size_t c = 0; c < job.info.captions.size(); ++c) {
    int old_index = -1;
    for (std::size_t o = 0; o < old.captions.size(); ++o) {
      if (old.captions[o].text == job.info.captions[c] &&
          old.captions[o].text_en == job.english[c]) {
        old_index = static_cast<int>(o);
      }
    }
    if (old_index < 0) return false;
    for (VectorKind kind : {VectorKind::kTextProj, VectorKind::kMultimodal}) {
      const StoredVectors* v = find_vectors(old, kind, old_index);
      if (!v) return false;
      StoredVectors copy = *v;
      copy.caption_index = static_cast<int>(c);
      out.vectors.push_back(std::move(copy));
    }
  }
  return true;
}

Prepared prepare(const Encoder& encoder, const fs::path& path, const DecodeOptions& decode) {
  Prepared prepared;
  try {
    prepared.pixels = encoder.preprocess_one(decode_image(path, decode));
  } catch (const Error& e) {
    prepared.error = e.what();
  } catch (const std::exception& e) {
    prepared.error = path.string() + ": " + e.what();
  }
  return prepared;
}

// Decodes a batch's images on `workers` threads.
std::vector<Prepared> prepare_batch(const Encoder& encoder, const std::vector<Job*>& jobs,
                                    const DecodeOptions& decode, int workers) {
  std::vector<Prepared> prepared(jobs.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < jobs.size(); i = next++) {
      prepared[i] = prepare(encoder, jobs[i]->path, decode);
    }
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < std::max(1, workers); ++w) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  return prepared;
}

}  // namespace

StoredVectors image_proj_vectors(const Manifest& manifest, const torch::Tensor& proj, int b) {
  return tensor_rows(proj[b].slice(0, 0, image_proj_rows(manifest)), VectorKind::kImageProj, -1);
}

StoredVectors summary_vectors(const Manifest& manifest, const torch::Tensor& embeds, int b,
                              VectorKind kind, int caption_index) {
  torch::Tensor summary = summary_rule(manifest) == SummaryRule::kFirstRow
                              ? embeds[b].slice(0, 0, 1)
                              : embeds[b].mean(0, /*keepdim=*/true);
  summary = torch::nn::functional::normalize(summary,
                                             torch::nn::functional::NormalizeFuncOptions().dim(-1));
  return tensor_rows(summary, kind, caption_index);
}

std::vector<fs::path> find_images(const fs::path& root, bool include_hidden,
                                  std::vector<std::string>& warnings) {
  std::vector<fs::path> images;
  std::set<fs::path> visited;  // canonical folders already walked: symlink loops end here
  std::vector<fs::path> pending{root};
  while (!pending.empty()) {
    const fs::path dir = pending.back();
    pending.pop_back();
    std::error_code ec;
    const fs::path canonical = fs::canonical(dir, ec);
    if (ec || !visited.insert(canonical).second) continue;
    fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
    if (ec) {
      warnings.push_back(dir.string() + ": cannot read folder: " + ec.message());
      continue;
    }
    for (const auto& entry : it) {
      const fs::path& path = entry.path();
      if (!include_hidden && is_hidden(path)) continue;
      std::error_code type_ec;
      if (entry.is_directory(type_ec)) {
        pending.push_back(path);
      } else if (entry.is_regular_file(type_ec) && looks_like_image(path)) {
        images.push_back(path);
      }
    }
  }
  std::sort(images.begin(), images.end());
  images.erase(std::unique(images.begin(), images.end()), images.end());
  return images;
}

IndexSummary index_folder(Encoder& encoder, IndexStore& store, const fs::path& root_in,
                          const IndexOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  std::error_code ec;
  if (!fs::is_directory(root_in, ec)) {
    throw Error(ErrorKind::kInput, root_in.string() + ": not a folder");
  }
  const fs::path root = normalize_index_path(root_in);
  const Manifest& manifest = encoder.manifest();
  const std::string model_id = encoder.bundle().identity();

  IndexSummary summary;
  summary.root = root.string();
  summary.model_id = model_id;
  const CaptionTable table = read_caption_table(root);
  summary.warnings = table.warnings;
  const std::vector<fs::path> images = find_images(root, options.include_hidden, summary.warnings);
  summary.found = static_cast<std::int64_t>(images.size());

  // Captions of every image first, so that translation (when asked) happens once, before
  // anything is written.
  std::vector<CaptionInfo> infos(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    try {
      infos[i] = captions_for(table, root, images[i]);
    } catch (const Error& e) {
      // An unreadable sidecar: the image is indexed without captions, but keeps the category
      // its folder gives it.
      summary.warnings.push_back(e.what());
      infos[i] = CaptionInfo{};
      infos[i].category = first_subfolder(root, images[i]);
    }
  }
  std::unordered_map<std::string, std::string> english;  // caption -> English text
  if (options.translate) {
    if (options.translator_id.empty()) {
      throw Error(ErrorKind::kUsage, "index: a translation hook needs a translator id");
    }
    std::vector<std::string> wanted;
    std::unordered_set<std::string> seen;
    for (const auto& info : infos) {
      for (const auto& caption : info.captions) {
        if (!is_blank(caption) && seen.insert(caption).second) wanted.push_back(caption);
      }
    }
    english = store.find_translations(options.translator_id, wanted);
    summary.translations_cached = static_cast<std::int64_t>(english.size());
    std::vector<std::string> missing;
    for (const auto& caption : wanted) {
      if (!english.count(caption)) missing.push_back(caption);
    }
    if (!missing.empty()) {
      const std::vector<std::string> translated = options.translate(missing);
      if (translated.size() != missing.size()) {
        throw Error(ErrorKind::kInternal, "index: the translator returned " +
                                              std::to_string(translated.size()) + " texts for " +
                                              std::to_string(missing.size()));
      }
      std::vector<std::pair<std::string, std::string>> pairs;
      for (std::size_t i = 0; i < missing.size(); ++i) {
        pairs.emplace_back(missing[i], translated[i]);
        english[missing[i]] = translated[i];
      }
      store.put_translations(options.translator_id, pairs);
      summary.translated = static_cast<std::int64_t>(missing.size());
    }
  }

  // Files that vanished leave the index first, so a rename below can still reuse the vectors
  // stored under the content hash (find_by_content_hash looks at any path of the model).
  std::unordered_map<std::string, FileListing> stored;
  for (auto& listing : store.list_files(model_id, root)) {
    stored.emplace(listing.state.path, std::move(listing));
  }
  std::unordered_map<std::string, IndexedFile> vanished_records;
  {
    std::vector<std::string> vanished;
    for (const auto& [path, listing] : stored) {
      if (!fs::exists(path, ec)) vanished.push_back(path);
    }
    // Keep their vectors in memory so a renamed file in this run can reuse them.
    for (const auto& path : vanished) {
      const FileState& state = stored.at(path).state;
      if (auto record = store.find_by_content_hash(model_id, state.content_hash, state.size)) {
        vanished_records.emplace(state.content_hash, std::move(*record));
      }
    }
    summary.removed = static_cast<std::int64_t>(store.remove_missing(model_id, root).size());
  }

  IndexProgress progress;
  progress.total = summary.found;
  auto report = [&] {
    if (options.on_progress) options.on_progress(progress);
  };
  // Files that were indexed before but fail now (replaced by a corrupt or unreadable file):
  // their stored vectors describe bytes that are gone, so they leave the index.
  std::vector<std::string> stale;
  auto fail = [&](const std::string& path, const std::string& reason) {
    if (stored.count(path)) stale.push_back(path);
    summary.failures.push_back({path, reason});
    ++summary.failed;
    ++progress.done;
    if (options.on_failure) options.on_failure(path, reason);
  };

  std::vector<Job> jobs;
  std::vector<Job> duplicates;
  std::unordered_set<std::string> pending_content;  // hash/size of the jobs to embed
  std::vector<IndexedFile> reused;
  for (std::size_t image_index = 0; image_index < images.size(); ++image_index) {
    const fs::path& image = images[image_index];
    Job job;
    job.path = image;
    job.state.path = normalize_index_path(image);
    job.state.size = static_cast<std::int64_t>(fs::file_size(image, ec));
    if (ec) {
      fail(job.state.path, job.state.path + ": cannot stat: " + ec.message());
      continue;
    }
    job.state.mtime_ns = mtime_ns(image, ec);
    job.info = std::move(infos[image_index]);
    for (const auto& caption : job.info.captions) {
      const auto it = english.find(caption);
      job.english.push_back(it == english.end() ? std::string() : it->second);
    }
    auto it = stored.find(job.state.path);
    const bool same_stat = it != stored.end() && it->second.state.size == job.state.size &&
                           it->second.state.mtime_ns == job.state.mtime_ns;
    if (same_stat && same_captions(it->second.captions, job) &&
        it->second.category == job.info.category) {
      ++summary.unchanged;
      ++progress.done;
      continue;
    }
    try {
      job.state.content_hash = hash_file(image);
    } catch (const Error& e) {
      fail(job.state.path, e.what());
      continue;
    }
    job.reuse = store.find_by_content_hash(model_id, job.state.content_hash, job.state.size);
    if (!job.reuse) {
      if (auto v = vanished_records.find(job.state.content_hash); v != vanished_records.end()) {
        job.reuse = v->second;
      }
    }
    if (job.reuse) {
      IndexedFile record;
      if (reuse_record(job, record)) {
        reused.push_back(std::move(record));
        ++summary.reused;
        ++progress.done;
        if (reused.size() >= static_cast<std::size_t>(std::max(1, options.batch_size) * 8)) {
          store.upsert_batch(model_id, reused);
          reused.clear();
          report();
        }
        continue;
      }
    }
    // A second copy of content first seen in this run waits until the first copy's vectors
    // are stored, then reuses them.
    const std::string key = job.state.content_hash + "/" + std::to_string(job.state.size);
    if (!pending_content.insert(key).second) {
      duplicates.push_back(std::move(job));
      continue;
    }
    jobs.push_back(std::move(job));
  }
  if (!reused.empty()) store.upsert_batch(model_id, reused);
  reused.clear();
  report();

  // Embedding: batches of images, the next batch decoding while the model runs.
  auto embed_all = [&](std::vector<Job>& todo) {
    const std::size_t batch_size = static_cast<std::size_t>(std::max(1, options.batch_size));
    std::vector<std::vector<Job*>> batches;
    for (std::size_t i = 0; i < todo.size(); i += batch_size) {
      std::vector<Job*> batch;
      for (std::size_t j = i; j < std::min(todo.size(), i + batch_size); ++j) {
        batch.push_back(&todo[j]);
      }
      batches.push_back(std::move(batch));
    }
    auto launch = [&](std::size_t b) {
      return std::async(std::launch::async, [&, b] {
        return prepare_batch(encoder, batches[b], options.decode, options.decode_workers);
      });
    };
    std::future<std::vector<Prepared>> next;
    if (!batches.empty()) next = launch(0);
    for (std::size_t b = 0; b < batches.size(); ++b) {
      std::vector<Prepared> prepared = next.get();
      if (b + 1 < batches.size()) next = launch(b + 1);

      std::vector<Job*> ok_jobs;
      std::vector<torch::Tensor> pixels;
      for (std::size_t i = 0; i < prepared.size(); ++i) {
        if (prepared[i].pixels) {
          ok_jobs.push_back(batches[b][i]);
          pixels.push_back(*prepared[i].pixels);
        } else {
          fail(batches[b][i]->state.path, prepared[i].error);
        }
      }
      if (ok_jobs.empty()) {
        report();
        continue;
      }
      const ImageOutputs image = encoder.encode_image(torch::stack(pixels));

      // Every caption of the batch in one text pass and one multimodal pass.
      std::vector<std::string> texts;
      std::vector<std::int64_t> text_owner;  // row in ok_jobs
      std::vector<int> text_index;           // caption index within its file
      for (std::size_t j = 0; j < ok_jobs.size(); ++j) {
        for (std::size_t c = 0; c < ok_jobs[j]->info.captions.size(); ++c) {
          texts.push_back(embed_text(*ok_jobs[j], c));
          text_owner.push_back(static_cast<std::int64_t>(j));
          text_index.push_back(static_cast<int>(c));
        }
      }
      TextOutputs text;
      MultimodalOutputs multimodal;
      if (!texts.empty()) {
        const TextBatch tokens = encoder.tokenize(texts, manifest.text.max_tokens);
        text = encoder.encode_text(tokens);
        const torch::Tensor owners = torch::tensor(text_owner, torch::kInt64);
        multimodal = encoder.encode_multimodal(image.vision_tokens.index_select(0, owners), tokens);
      }

      std::vector<IndexedFile> records(ok_jobs.size());
      for (std::size_t j = 0; j < ok_jobs.size(); ++j) {
        IndexedFile& record = records[j];
        record.state = ok_jobs[j]->state;
        record.category = ok_jobs[j]->info.category;
        for (std::size_t c = 0; c < ok_jobs[j]->info.captions.size(); ++c) {
          record.captions.push_back({ok_jobs[j]->info.captions[c], ok_jobs[j]->english[c]});
        }
        const int row = static_cast<int>(j);
        record.vectors.push_back(image_proj_vectors(manifest, image.image_embeds_proj, row));
        record.vectors.push_back(
            summary_vectors(manifest, image.image_embeds, row, VectorKind::kImageEmbed, -1));
      }
      for (std::size_t t = 0; t < texts.size(); ++t) {
        IndexedFile& record = records[text_owner[t]];
        const int row = static_cast<int>(t);
        record.vectors.push_back(tensor_rows(text.text_embeds_proj[row].slice(0, 0, 1),
                                             VectorKind::kTextProj, text_index[t]));
        record.vectors.push_back(summary_vectors(manifest, multimodal.multimodal_embeds, row,
                                                 VectorKind::kMultimodal, text_index[t]));
      }
      store.upsert_batch(model_id, records);
      summary.indexed += static_cast<std::int64_t>(records.size());
      progress.embedded += static_cast<std::int64_t>(records.size());
      progress.done += static_cast<std::int64_t>(records.size());
      report();
    }
  };
  embed_all(jobs);

  // Duplicates of files embedded above: their vectors are in the store now.
  std::vector<Job> leftover;
  for (Job& job : duplicates) {
    job.reuse = store.find_by_content_hash(model_id, job.state.content_hash, job.state.size);
    IndexedFile record;
    if (job.reuse && reuse_record(job, record)) {
      reused.push_back(std::move(record));
      ++summary.reused;
      ++progress.done;
    } else {
      leftover.push_back(std::move(job));  // the original failed, or other captions
    }
  }
  if (!reused.empty()) store.upsert_batch(model_id, reused);
  embed_all(leftover);

  if (!stale.empty()) store.remove_paths(model_id, stale);

  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace mmsearch
