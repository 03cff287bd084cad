#include "mmsearch/scope_model.h"

#include <algorithm>
#include <optional>
#include <set>

#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {

std::string model_name_of(const std::string& model_id) {
  return model_id.substr(0, model_id.find('@'));
}

std::string describe_usages(const std::vector<ModelUsage>& usages) {
  std::string list;
  for (const auto& usage : usages) {
    list += (list.empty() ? "" : ", ") + usage.model_id + " (" + std::to_string(usage.file_count) +
            " files)";
  }
  return list;
}

ScopeModel resolve_scope_model(const IndexStore& store, const fs::path& scope,
                               const std::vector<fs::path>& search_path,
                               const std::string& requested) {
  ScopeModel result;
  const std::vector<std::string> present = store.model_ids_in_scope(scope);
  const auto indexed_with_name = [&](const std::string& name) -> std::string {
    for (const auto& id : present) {
      if (model_name_of(id) == name) return id;
    }
    return "";
  };
  // The counts only for the messages of a scope that is not ready.
  const auto finish = [&](ScopeModel::Status status) {
    result.status = status;
    if (status != ScopeModel::Status::kReady && !present.empty() && result.usages.empty()) {
      result.usages = store.models_in_scope(scope);
    }
    return result;
  };

  if (!requested.empty()) {
    result.bundle = find_bundle(requested, search_path);
    result.name = result.bundle->manifest().name;
    const std::string identity = result.bundle->identity();
    if (std::find(present.begin(), present.end(), identity) != present.end()) {
      result.indexed_id = identity;
      return finish(ScopeModel::Status::kReady);
    }
    if (!(result.indexed_id = indexed_with_name(result.name)).empty()) {
      return finish(ScopeModel::Status::kReExported);
    }
    return finish(present.empty() ? ScopeModel::Status::kNotIndexed
                                  : ScopeModel::Status::kNotIndexedWithModel);
  }

  if (present.empty()) return result;  // kNotIndexed
  // One model: that one. Several: the one that indexed most of the scope among those whose
  // bundle is installed as indexed (ties by name, so the choice is repeatable); when none is,
  // the status of the one with most files, whose message lists the others.
  std::vector<std::string> candidates;
  if (present.size() == 1) {
    candidates = present;
  } else {
    result.usages = store.models_in_scope(scope);
    for (const auto& usage : result.usages) candidates.push_back(usage.model_id);
  }
  std::optional<ScopeModel> first;
  std::vector<ScopeModel::PassedOver> passed_over;
  for (const std::string& id : candidates) {
    ScopeModel candidate = result;
    candidate.indexed_id = id;
    candidate.name = model_name_of(id);
    try {
      candidate.bundle = find_bundle(candidate.name, search_path);
      candidate.status = candidate.bundle->identity() == id ? ScopeModel::Status::kReady
                                                            : ScopeModel::Status::kReExported;
    } catch (const Error&) {
      candidate.status = ScopeModel::Status::kNotInstalled;
    }
    if (candidate.status == ScopeModel::Status::kReady) {
      result = std::move(candidate);
      result.passed_over = std::move(passed_over);
      return finish(ScopeModel::Status::kReady);
    }
    passed_over.push_back({id, candidate.status, candidate.bundle});
    if (!first) first = std::move(candidate);
  }
  const ScopeModel::Status status = first->status;
  result = std::move(*first);
  return finish(status);
}

std::vector<std::string> stale_model_ids(const std::vector<std::string>& stored_ids,
                                         const std::vector<BundleListing>& installed) {
  std::set<std::string> current;
  for (const auto& listing : installed) {
    if (listing.bundle) current.insert(listing.bundle->identity());
  }
  std::vector<std::string> stale;
  for (const auto& id : stored_ids) {
    if (!current.count(id)) stale.push_back(id);
  }
  return stale;
}

PruneReport prune_stale_models(IndexStore& store, const std::vector<BundleListing>& installed) {
  const bool any_installed =
      std::any_of(installed.begin(), installed.end(),
                  [](const BundleListing& l) { return l.bundle.has_value(); });
  if (!any_installed) {
    throw Error(ErrorKind::kModel,
                "no image-text model bundle is installed on the model search path; refusing to "
                "prune, since every model's vectors would look stale");
  }
  std::vector<std::string> stored;
  for (const auto& usage : store.model_usage()) stored.push_back(usage.model_id);
  PruneReport report;
  for (const auto& id : stale_model_ids(stored, installed)) {
    report.pruned.push_back({id, store.remove_model(id)});
  }
  if (!report.pruned.empty()) report.bytes_freed = store.vacuum();
  return report;
}

}  // namespace mmsearch
