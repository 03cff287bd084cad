// Which model answers for a folder: the one that indexed it, matched by its full identity
// (bundle name + hash of its manifest), never by its name alone. A bundle re-exported with
// other weights keeps its name but gets another identity, so its old vectors must not be
// searched with the new model; resolve_scope_model() tells the caller what happened instead.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mmsearch/bundle.h"
#include "mmsearch/index.h"

namespace mmsearch {

struct ScopeModel {
  enum class Status {
    kReady,                // `bundle` is installed and the scope holds vectors of its identity
    kNotIndexed,           // nothing under the scope is indexed, with any model
    kNotIndexedWithModel,  // the requested model never indexed the scope (others did: usages)
    kReExported,           // the scope was indexed by `indexed_id`, an earlier export of `bundle`
    kNotInstalled,         // the scope was indexed by `indexed_id`, whose bundle is not installed
  };
  Status status = Status::kNotIndexed;
  std::string name;              // the model's bundle name (requested or found in the index)
  std::string indexed_id;        // the identity the scope's vectors have for that name
  std::optional<Bundle> bundle;  // the installed bundle of that name, when there is one
  // Every model that indexed the scope, most files first, for the messages of the statuses
  // other than kReady. Counting is slow at a million files, so a ready scope skips it when it
  // can: with a requested model, or with one model in the scope, `usages` stays empty.
  std::vector<ModelUsage> usages;
  // Without a requested model: the models of the scope passed over for `bundle` because their
  // bundle is not installed (kNotInstalled) or was re-exported (kReExported), for a warning.
  struct PassedOver {
    std::string indexed_id;
    Status status;
    std::optional<Bundle> installed;  // the re-exported bundle now installed under that name
  };
  std::vector<PassedOver> passed_over;
};

// The name part of an identity: "blip-base@3fa94c1d" -> "blip-base".
std::string model_name_of(const std::string& model_id);

// "blip-base@3fa94c1d (12 files), blip2-vitL@90ab12cd (3 files)", for messages.
std::string describe_usages(const std::vector<ModelUsage>& usages);

// Resolves the model for `scope`. With `requested` (a bundle name or folder) that bundle is
// used; without, the model that indexed most files under the scope among those installed as
// indexed (ties by identity), or when none is, the status of the one with most files (with
// `usages` naming them all). Throws Error(kModel) only
// when a requested bundle can't be found or opened; every other outcome is a Status.
ScopeModel resolve_scope_model(const IndexStore& store, const std::filesystem::path& scope,
                               const std::vector<std::filesystem::path>& search_path,
                               const std::string& requested);

// Model identities in the store whose bundle is not installed any more, or was re-exported
// (another identity under the same name): the vectors a prune removes.
std::vector<std::string> stale_model_ids(const std::vector<std::string>& stored_ids,
                                         const std::vector<BundleListing>& installed);

// What prune_stale_models() removed.
struct PrunedModel {
  std::string model_id;
  RemovedRows removed;
};
struct PruneReport {
  std::vector<PrunedModel> pruned;
  std::int64_t bytes_freed = 0;  // returned to the disk by the final vacuum
};

// Removes the vectors of every stale model (stale_model_ids() against `installed`) from the
// store, one transaction per model, then vacuums when anything was removed. Refuses (Error
// kModel) when `installed` holds no valid image-text bundle at all: a wrong search path must
// not look like every model being gone.
PruneReport prune_stale_models(IndexStore& store, const std::vector<BundleListing>& installed);

}  // namespace mmsearch
