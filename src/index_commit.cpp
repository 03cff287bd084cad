#include "mmsearch/index_commit.h"

namespace mmsearch {

IndexCommitter::IndexCommitter(IndexStore& store, std::string model_id,
                               const std::vector<FileListing>& stored, const IndexOptions& options,
                               IndexSummary& summary)
    : store_(store), model_id_(std::move(model_id)), options_(options), summary_(summary) {
  progress_.total = summary.found;
  for (const auto& listing : stored) stored_.emplace(listing.state.path, listing.state);
}

void IndexCommitter::remove_vanished(const std::vector<FileState>& files) {
  std::vector<std::string> paths;
  for (const auto& file : files) paths.push_back(file.path);
  summary_.removed += store_.remove_paths(model_id_, paths);
}

void IndexCommitter::count_unchanged(std::int64_t files) {
  summary_.unchanged += files;
  progress_.done += files;
}

void IndexCommitter::fail(IndexFailure failure) {
  const auto stored = stored_.find(failure.path);
  if (stored != stored_.end()) {
    // A file that failed with the very content already indexed (a lower --max-pixels with
    // --rebuild, say) keeps vectors that are still its own; any other content's are stale.
    const FileState& was = stored->second;
    if (!failure.content_hash.empty() && failure.content_hash == was.content_hash &&
        failure.size == was.size) {
      failure.reason += " (its content is unchanged: the vectors indexed before are kept)";
    } else {
      stale_.push_back(failure.path);
    }
  }
  summary_.failures.push_back(failure);
  ++summary_.failed;
  ++progress_.done;
  if (options_.on_failure) options_.on_failure(failure.path, failure.reason);
}

void IndexCommitter::commit_reused(const std::vector<IndexedFile>& records) {
  if (!records.empty()) store_.upsert_batch(model_id_, records);
  const auto count = static_cast<std::int64_t>(records.size());
  summary_.reused += count;
  progress_.done += count;
  report();
}

void IndexCommitter::commit_embedded(const std::vector<IndexedFile>& records) {
  if (!records.empty()) store_.upsert_batch(model_id_, records);
  const auto count = static_cast<std::int64_t>(records.size());
  summary_.indexed += count;
  progress_.embedded += count;
  progress_.done += count;
  report();
}

void IndexCommitter::finish() {
  if (!stale_.empty()) store_.remove_paths(model_id_, stale_);
  stale_.clear();
}

void IndexCommitter::report() {
  if (options_.on_progress) options_.on_progress(progress_);
}

}  // namespace mmsearch
