// Writing an indexing run's outcome to the store (see indexer.h), and keeping its tally: the
// summary's counts, the progress callbacks and the failure reports.
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "mmsearch/index.h"
#include "mmsearch/indexer.h"

namespace mmsearch {

class IndexCommitter {
 public:
  // `stored` is the model's listing under the run's root before the run; the summary's found
  // count must be set (the progress total).
  IndexCommitter(IndexStore& store, std::string model_id, const std::vector<FileListing>& stored,
                 const IndexOptions& options, IndexSummary& summary);

  // Removes these stored files of the model (plan_removals in index_plan.h chose them).
  void remove_vanished(const std::vector<FileState>& files);
  void count_unchanged(std::int64_t files);
  // Counts and reports a file that failed. A file indexed before leaves the index at finish():
  // its stored vectors describe bytes that are gone.
  void fail(IndexFailure failure);
  // Each call is one transaction (none when empty), then a progress report.
  void commit_reused(const std::vector<IndexedFile>& records);
  void commit_embedded(const std::vector<IndexedFile>& records);
  // Removes the files that were indexed before and failed now.
  void finish();

 private:
  void report();

  IndexStore& store_;
  std::string model_id_;
  const IndexOptions& options_;
  IndexSummary& summary_;
  IndexProgress progress_;
  std::unordered_map<std::string, FileState> stored_;  // by path
  std::vector<std::string> stale_;
};

}  // namespace mmsearch
