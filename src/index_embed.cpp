#include "mmsearch/index_embed.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "elapsed.h"
#include "memory_budget.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

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

using Clock = std::chrono::steady_clock;

constexpr std::int64_t kTrimAfterBytes = std::int64_t{64} << 20;

struct Prepared {
  std::optional<torch::Tensor> pixels;  // [3,S,S] when decoding succeeded
  std::string error;
};

Prepared prepare(const Encoder& encoder, const fs::path& path, const DecodeOptions& decode,
                 MemoryBudget& budget) {
  Prepared prepared;
  MemoryBudget::Lease lease;  // held until the decoded image has become model-sized pixels
  DecodeOptions options = decode;
  // The file's bytes are read before its header: hold them first, then the header's estimate
  // (which includes them) in their place. Released before waiting again, so no worker waits
  // while holding.
  std::error_code size_error;
  const std::uintmax_t size = fs::file_size(path, size_error);
  const std::int64_t file_bytes = size_error ? 0 : static_cast<std::int64_t>(size);
  if (file_bytes > 0) lease = budget.acquire(file_bytes);
  options.on_dimensions = [&](std::int64_t width, std::int64_t height) {
    lease = MemoryBudget::Lease();
    lease = budget.acquire(std::max(file_bytes, width * height * kDecodeBytesPerPixel));
  };
  try {
    prepared.pixels = encoder.preprocess_one(decode_image(path, options));
  } catch (const Error& e) {
    prepared.error = e.what();
  } catch (const std::exception& e) {
    prepared.error = path.string() + ": " + e.what();
  }
#if defined(__GLIBC__)
  // glibc keeps up to M_TRIM_THRESHOLD free in each thread's arena; after a large photo, hand
  // it back so that idle workers do not each sit on one photo's worth of memory.
  if (lease.bytes() >= kTrimAfterBytes) {
    lease = MemoryBudget::Lease();
    malloc_trim(0);
  }
#endif
  return prepared;
}

// Decodes a batch's images on `workers` threads, within `budget`.
std::vector<Prepared> prepare_batch(const Encoder& encoder, const std::vector<const FileJob*>& jobs,
                                    const DecodeOptions& decode, int workers,
                                    MemoryBudget& budget) {
  std::vector<Prepared> prepared(jobs.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < jobs.size(); i = next++) {
      prepared[i] = prepare(encoder, jobs[i]->path, decode, budget);
    }
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < std::max(1, workers); ++w) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  return prepared;
}

// The records of the decoded files of one batch: their image, caption and multimodal vectors.
std::vector<IndexedFile> embed_batch(Encoder& encoder, const std::vector<const FileJob*>& jobs,
                                     const std::vector<torch::Tensor>& pixels,
                                     std::size_t text_chunk, EmbedTiming& timing) {
  const Manifest& manifest = encoder.manifest();
  auto started = Clock::now();
  const ImageOutputs image = encoder.encode_image(torch::stack(pixels));
  timing.image_forward_seconds += seconds_since(started);

  // The batch's captions go through the text and multimodal passes in chunks of at most
  // text_chunk: the multimodal pass copies its image's vision tokens for every caption, so one
  // image with many captions would otherwise need memory in proportion to all of them.
  std::vector<std::string> texts;
  std::vector<std::int64_t> text_owner;  // row in jobs
  std::vector<int> text_index;           // caption index within its file
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    for (std::size_t c = 0; c < jobs[j]->info.captions.size(); ++c) {
      texts.push_back(jobs[j]->embed_text(c));
      text_owner.push_back(static_cast<std::int64_t>(j));
      text_index.push_back(static_cast<int>(c));
    }
  }

  std::vector<IndexedFile> records(jobs.size());
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    IndexedFile& record = records[j];
    record.state = jobs[j]->state;
    record.category = jobs[j]->info.category;
    for (std::size_t c = 0; c < jobs[j]->info.captions.size(); ++c) {
      record.captions.push_back({jobs[j]->info.captions[c], jobs[j]->english[c]});
    }
    const int row = static_cast<int>(j);
    record.vectors.push_back(image_proj_vectors(manifest, image.image_embeds_proj, row));
    record.vectors.push_back(
        summary_vectors(manifest, image.image_embeds, row, VectorKind::kImageEmbed, -1));
  }
  for (std::size_t begin = 0; begin < texts.size(); begin += text_chunk) {
    const std::size_t end = std::min(texts.size(), begin + text_chunk);
    const std::vector<std::string> chunk(texts.begin() + begin, texts.begin() + end);
    const std::vector<std::int64_t> owner_rows(text_owner.begin() + begin,
                                               text_owner.begin() + end);
    const TextBatch tokens = encoder.tokenize(chunk, manifest.text.max_tokens);
    started = Clock::now();
    const TextOutputs text = encoder.encode_text(tokens);
    timing.text_forward_seconds += seconds_since(started);
    const torch::Tensor owners = torch::tensor(owner_rows, torch::kInt64);
    started = Clock::now();
    const MultimodalOutputs multimodal =
        encoder.encode_multimodal(image.vision_tokens.index_select(0, owners), tokens);
    timing.multimodal_forward_seconds += seconds_since(started);
    for (std::size_t t = begin; t < end; ++t) {
      IndexedFile& record = records[text_owner[t]];
      const int row = static_cast<int>(t - begin);
      record.vectors.push_back(tensor_rows(text.text_embeds_proj[row].slice(0, 0, 1),
                                           VectorKind::kTextProj, text_index[t]));
      record.vectors.push_back(summary_vectors(manifest, multimodal.multimodal_embeds, row,
                                               VectorKind::kMultimodal, text_index[t]));
    }
  }
  return records;
}

}  // namespace

void EmbedTiming::add(const EmbedTiming& other) {
  seconds += other.seconds;
  decode_wait_seconds += other.decode_wait_seconds;
  image_forward_seconds += other.image_forward_seconds;
  text_forward_seconds += other.text_forward_seconds;
  multimodal_forward_seconds += other.multimodal_forward_seconds;
  commit_seconds += other.commit_seconds;
  if (batches == 0) {
    first_batch_seconds = other.first_batch_seconds;
    first_batch_forward_seconds = other.first_batch_forward_seconds;
    first_batch_image_forward_seconds = other.first_batch_image_forward_seconds;
    first_batch_items = other.first_batch_items;
  }
  items += other.items;
  batches += other.batches;
}

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

void embed_files(Encoder& encoder, const std::vector<FileJob>& jobs, const EmbedOptions& options,
                 const std::function<void(EmbeddedBatch&)>& on_batch, EmbedTiming* timing_out) {
  const auto loop_started = Clock::now();
  EmbedTiming timing;
  const std::size_t batch_size = static_cast<std::size_t>(std::max(1, options.batch_size));
  std::vector<std::vector<const FileJob*>> batches;
  for (std::size_t i = 0; i < jobs.size(); i += batch_size) {
    std::vector<const FileJob*> batch;
    for (std::size_t j = i; j < std::min(jobs.size(), i + batch_size); ++j) {
      batch.push_back(&jobs[j]);
    }
    batches.push_back(std::move(batch));
  }
  MemoryBudget decode_budget(options.decode_memory_bytes);
  auto launch = [&](std::size_t b) {
    return std::async(std::launch::async, [&, b] {
      return prepare_batch(encoder, batches[b], options.decode, options.decode_workers,
                           decode_budget);
    });
  };
  std::future<std::vector<Prepared>> next;
  if (!batches.empty()) next = launch(0);
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const auto batch_started = Clock::now();
    std::vector<Prepared> prepared = next.get();
    timing.decode_wait_seconds += seconds_since(batch_started);
    if (b + 1 < batches.size()) next = launch(b + 1);

    EmbeddedBatch out;
    std::vector<const FileJob*> decoded;
    std::vector<torch::Tensor> pixels;
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      if (prepared[i].pixels) {
        decoded.push_back(batches[b][i]);
        pixels.push_back(*prepared[i].pixels);
      } else {
        const FileState& state = batches[b][i]->state;
        out.failures.push_back({state.path, prepared[i].error, state.content_hash, state.size});
      }
    }
    if (!decoded.empty()) {
      out.records = embed_batch(encoder, decoded, pixels, batch_size, timing);
    }
    const auto commit_started = Clock::now();
    on_batch(out);
    timing.commit_seconds += seconds_since(commit_started);
    if (b == 0) {
      timing.first_batch_seconds = seconds_since(batch_started);
      timing.first_batch_items = static_cast<std::int64_t>(decoded.size());
      timing.first_batch_forward_seconds = timing.forward_seconds();
      timing.first_batch_image_forward_seconds = timing.image_forward_seconds;
    }
    timing.items += static_cast<std::int64_t>(decoded.size());
    ++timing.batches;
  }
  timing.seconds = seconds_since(loop_started);
  if (timing_out) timing_out->add(timing);
}

}  // namespace mmsearch
