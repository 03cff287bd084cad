#include "mmsearch/indexer.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "elapsed.h"
#include "mmsearch/error.h"
#include "mmsearch/index_commit.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

std::string content_key(const std::string& content_hash, std::int64_t size) {
  return content_hash + "/" + std::to_string(size);
}

// Stores the jobs whose vectors can be copied from a stored record of the same content, in
// transactions of `chunk` files (records with vectors are not all held at once); returns the
// jobs for which no record fits.
std::vector<FileJob> commit_reused(std::vector<FileJob>& jobs, const ContentLookup& find_by_content,
                                   IndexCommitter& commit, std::size_t chunk) {
  std::vector<FileJob> unmatched;
  std::vector<IndexedFile> records;
  for (FileJob& job : jobs) {
    std::optional<IndexedFile> record;
    if (auto same_content = find_by_content(job.state.content_hash, job.state.size)) {
      record = reuse_record(job, *same_content);
    }
    if (!record) {
      unmatched.push_back(std::move(job));
      continue;
    }
    records.push_back(std::move(*record));
    if (records.size() >= chunk) {
      commit.commit_reused(records);
      records.clear();
    }
  }
  commit.commit_reused(records);
  return unmatched;
}

}  // namespace

IndexSummary index_folder(Encoder& encoder, IndexStore& store, const fs::path& root_in,
                          const IndexOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  std::error_code ec;
  if (!fs::is_directory(root_in, ec)) {
    throw Error(ErrorKind::kInput, root_in.string() + ": not a folder");
  }
  const std::string model_id = encoder.bundle().identity();

  // Plan, first half: what the folder holds.
  const FolderScan scan = scan_folder(root_in, options.include_hidden, options.captions);
  IndexSummary summary;
  summary.root = scan.root.string();
  summary.model_id = model_id;
  summary.warnings = scan.warnings;
  // Files named like images that are not (or cannot be read) count as found, and as failed.
  summary.found = static_cast<std::int64_t>(scan.images.size() + scan.failures.size());

  // Translate: every caption at once, before anything is written.
  std::unordered_map<std::string, std::string> english;
  if (options.translate) {
    CachedTranslations translations =
        translate_cached(store, options.translator_id, options.translate, caption_texts(scan));
    summary.translated = translations.translated();
    summary.translations_cached = translations.cached();
    english = std::move(translations.english);
  }

  // Files that vanished leave the index before the plan looks up content, so that lookups find
  // the files that remain; their records stay in memory for a renamed copy to reuse. A run that
  // would empty the folder's index is refused here, before anything is written.
  const std::vector<FileListing> stored = store.list_files(model_id, scan.root);
  const RemovalPlan removals = plan_removals(scan, stored);
  check_removal_share(scan, stored.size(), removals.remove.size(), options.confirm_removal);
  summary.warnings.insert(summary.warnings.end(), removals.unverifiable.begin(),
                          removals.unverifiable.end());
  std::unordered_map<std::string, IndexedFile> vanished;  // by content key
  for (const FileState& state : options.rebuild ? std::vector<FileState>{} : removals.remove) {
    // Imported items have no content hash (their files were never read here): nothing to reuse.
    if (state.content_hash.empty()) continue;
    if (auto record = store.find_by_content_hash(model_id, state.content_hash, state.size)) {
      vanished.emplace(content_key(state.content_hash, state.size), std::move(*record));
    }
  }
  IndexCommitter commit(store, model_id, stored, options, summary);
  commit.remove_vanished(removals.remove);
  for (const auto& failure : scan.failures) commit.fail(failure);
  const ContentLookup find_by_content = [&](const std::string& content_hash,
                                            std::int64_t size) -> std::optional<IndexedFile> {
    if (options.rebuild) return std::nullopt;
    auto record = store.find_by_content_hash(model_id, content_hash, size);
    if (!record) {
      const auto it = vanished.find(content_key(content_hash, size));
      if (it != vanished.end()) record = it->second;
    }
    return record;
  };

  // Plan, second half: per file.
  IndexPlan plan = plan_index(scan, english, options.rebuild ? std::vector<FileListing>{} : stored,
                              find_by_content);
  for (const auto& failure : plan.failures) commit.fail(failure);
  commit.count_unchanged(plan.unchanged);
  const std::size_t batch_size = static_cast<std::size_t>(std::max(1, options.batch_size));
  std::vector<FileJob> no_longer_reusable =
      commit_reused(plan.reuse, find_by_content, commit, batch_size * 8);

  // Embed and commit, one transaction per batch.
  const EmbedOptions embed_options{options.batch_size, options.decode_workers,
                                   options.decode_memory_bytes, options.decode};
  auto embed = [&](const std::vector<FileJob>& jobs) {
    if (jobs.empty()) return;
    if (summary.timing.batches == 0) {
      // Loaded here rather than inside the first forward, so that load time is reported apart.
      const auto load_started = std::chrono::steady_clock::now();
      // Caption-less folders never load the text side.
      const bool captions = std::any_of(
          jobs.begin(), jobs.end(), [](const FileJob& job) { return !job.info.captions.empty(); });
      encoder.load_modules(true, captions, captions);
      summary.load_seconds = seconds_since(load_started);
    }
    embed_files(
        encoder, jobs, embed_options,
        [&](EmbeddedBatch& batch) {
          for (const auto& failure : batch.failures) commit.fail(failure);
          commit.commit_embedded(batch.records);
        },
        &summary.timing);
  };
  embed(plan.embed);

  // Copies of content embedded above reuse its vectors, now stored; what still finds none (the
  // first copy failed, or other captions) runs through the model.
  std::vector<FileJob> later = std::move(plan.duplicates);
  later.insert(later.end(), std::make_move_iterator(no_longer_reusable.begin()),
               std::make_move_iterator(no_longer_reusable.end()));
  embed(commit_reused(later, find_by_content, commit, batch_size * 8));

  commit.finish();
  summary.seconds = seconds_since(started);
  return summary;
}

}  // namespace mmsearch
