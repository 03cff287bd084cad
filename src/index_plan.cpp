#include "mmsearch/index_plan.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <unordered_set>

#include "mmsearch/error.h"
#include "mmsearch/image.h"
#include "mmsearch/paths.h"

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

bool same_captions(const std::vector<Caption>& stored, const FileJob& job) {
  if (stored.size() != job.info.captions.size()) return false;
  for (std::size_t i = 0; i < stored.size(); ++i) {
    if (stored[i].text != job.info.captions[i] || stored[i].text_en != job.english[i]) {
      return false;
    }
  }
  return true;
}

const StoredVectors* find_vectors(const IndexedFile& file, VectorKind kind, int caption_index) {
  for (const auto& v : file.vectors) {
    if (v.kind == kind && v.caption_index == caption_index) return &v;
  }
  return nullptr;
}

std::string content_key(const FileState& state) {
  return state.content_hash + "/" + std::to_string(state.size);
}

}  // namespace

const std::string& FileJob::embed_text(std::size_t c) const {
  return english[c].empty() ? info.captions[c] : english[c];
}

FolderWalk walk_folder(const fs::path& root, bool include_hidden) {
  FolderWalk walk;
  std::error_code root_ec;
  const fs::path canonical_root = fs::canonical(root, root_ec);
  std::set<fs::path> visited;  // canonical folders already walked: symlink loops end here
  std::vector<fs::path> pending{root};
  while (!pending.empty()) {
    const fs::path dir = pending.back();
    pending.pop_back();
    std::error_code ec;
    const fs::path canonical = fs::canonical(dir, ec);
    if (ec) {
      walk.unreadable_folders.push_back(dir);
      walk.warnings.push_back(dir.string() + ": cannot read folder: " + ec.message());
      continue;
    }
    if (!visited.insert(canonical).second) continue;
    // A link from inside root to root's parent (or root itself, caught above) would make the
    // walk index the tree around root.
    if (dir != root && !root_ec) {
      const auto rel = canonical_root.lexically_relative(canonical);
      if (!rel.empty() && *rel.begin() != "..") {
        walk.warnings.push_back(dir.string() + ": skipped: it links to " + canonical.string() +
                                ", which contains the indexed folder");
        continue;
      }
    }
    // No skip_permission_denied: a folder that cannot be listed must be reported, and what is
    // stored under it kept, not taken for deleted.
    fs::directory_iterator it(dir, ec);
    if (ec) {
      walk.unreadable_folders.push_back(dir);
      walk.warnings.push_back(dir.string() + ": cannot read folder: " + ec.message() +
                              "; what is indexed under it is kept");
      continue;
    }
    for (fs::directory_iterator end; it != end; it.increment(ec)) {
      const fs::path& path = it->path();
      if (!include_hidden && is_hidden(path)) continue;
      std::error_code type_ec;
      if (it->is_directory(type_ec)) {
        pending.push_back(path);
        continue;
      }
      if (!it->is_regular_file(type_ec)) continue;  // FIFOs, devices, broken links
      const ImageSniff sniff = sniff_image_file(path);
      if (sniff.kind == ImageSniff::Kind::kImage) {
        walk.images.push_back(path);
      } else if (has_image_extension(path) || sniff.kind == ImageSniff::Kind::kUnreadable) {
        const std::string shown = normalize_index_path(path);
        walk.failures.push_back(
            {shown, shown + ": " +
                        (sniff.kind == ImageSniff::Kind::kUnreadable ? "cannot read: " : "") +
                        sniff.reason});
      }
    }
    if (ec) {
      // The listing broke off: what it did not reach is unknown, not gone.
      walk.unreadable_folders.push_back(dir);
      walk.warnings.push_back(dir.string() + ": cannot read the whole folder: " + ec.message() +
                              "; what is indexed under it is kept");
    }
  }
  std::sort(walk.images.begin(), walk.images.end());
  walk.images.erase(std::unique(walk.images.begin(), walk.images.end()), walk.images.end());
  std::sort(walk.failures.begin(), walk.failures.end(),
            [](const IndexFailure& a, const IndexFailure& b) { return a.path < b.path; });
  return walk;
}

FolderScan scan_folder(const fs::path& root_in, bool include_hidden,
                       const CaptionOptions& captions) {
  FolderScan scan;
  scan.root = normalize_index_path(root_in);
  const CaptionTable table = read_caption_table(scan.root, captions);
  scan.warnings = table.warnings;
  FolderWalk walk = walk_folder(scan.root, include_hidden);
  scan.warnings.insert(scan.warnings.end(), walk.warnings.begin(), walk.warnings.end());
  scan.failures = std::move(walk.failures);
  for (const auto& folder : walk.unreadable_folders) {
    scan.unreadable_folders.emplace_back(normalize_index_path(folder));
  }
  for (auto& path : walk.images) {
    FolderImage image;
    try {
      image.info = captions_for(table, scan.root, path);
    } catch (const Error& e) {
      scan.warnings.push_back(e.what());
      image.info = CaptionInfo{};
      image.info.category = first_subfolder(scan.root, path);
    }
    image.path = std::move(path);
    scan.images.push_back(std::move(image));
  }
  return scan;
}

std::vector<std::string> caption_texts(const FolderScan& scan) {
  std::vector<std::string> texts;
  for (const auto& image : scan.images) {
    texts.insert(texts.end(), image.info.captions.begin(), image.info.captions.end());
  }
  return texts;
}

RemovalPlan plan_removals(const FolderScan& scan, const std::vector<FileListing>& stored) {
  std::unordered_set<std::string> listed;
  for (const auto& image : scan.images) listed.insert(normalize_index_path(image.path));
  for (const auto& failure : scan.failures) listed.insert(failure.path);
  RemovalPlan plan;
  for (const auto& listing : stored) {
    const std::string& path = listing.state.path;
    if (listed.count(path)) continue;
    const bool under_unreadable = std::any_of(
        scan.unreadable_folders.begin(), scan.unreadable_folders.end(), [&](const fs::path& f) {
          const auto rel = fs::path(path).lexically_relative(f);
          return !rel.empty() && *rel.begin() != "..";
        });
    if (under_unreadable) continue;
    std::error_code ec;
    (void)fs::symlink_status(path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
      plan.unverifiable.push_back(path + ": cannot check whether it still exists (" + ec.message() +
                                  "); its vectors are kept");
      continue;
    }
    plan.remove.push_back(listing.state);
  }
  return plan;
}

void check_removal_share(const FolderScan& scan, std::size_t stored, std::size_t removals,
                         bool confirmed) {
  if (confirmed || removals == 0) return;
  const bool emptied = removals == stored && scan.images.empty() && scan.failures.empty();
  const bool most = removals >= kMassRemovalMinimum && 2 * removals > stored;
  if (!emptied && !most) return;
  throw Error(ErrorKind::kInput,
              scan.root.string() + ": this run would remove " + std::to_string(removals) +
                  " of the " + std::to_string(stored) + " files indexed under it" +
                  (emptied ? ", and the folder now holds no image at all" : "") +
                  ". If it is on a drive or share, check that it is mounted. Nothing was "
                  "changed; if the files really are gone, run again with --confirm-removal");
}

std::optional<IndexedFile> reuse_record(const FileJob& job, const IndexedFile& stored) {
  IndexedFile out;
  out.state = job.state;
  out.category = job.info.category;
  for (std::size_t c = 0; c < job.info.captions.size(); ++c) {
    out.captions.push_back({job.info.captions[c], job.english[c]});
  }
  for (const auto& v : stored.vectors) {
    if (!is_caption_kind(v.kind)) out.vectors.push_back(v);
  }
  for (std::size_t c = 0; c < job.info.captions.size(); ++c) {
    int stored_index = -1;
    for (std::size_t o = 0; o < stored.captions.size(); ++o) {
      if (stored.captions[o].text == job.info.captions[c] &&
          stored.captions[o].text_en == job.english[c]) {
        stored_index = static_cast<int>(o);
      }
    }
    if (stored_index < 0) return std::nullopt;
    for (VectorKind kind : {VectorKind::kTextProj, VectorKind::kMultimodal}) {
      const StoredVectors* v = find_vectors(stored, kind, stored_index);
      if (!v) return std::nullopt;
      StoredVectors copy = *v;
      copy.caption_index = static_cast<int>(c);
      out.vectors.push_back(std::move(copy));
    }
  }
  return out;
}

IndexPlan plan_index(const FolderScan& scan,
                     const std::unordered_map<std::string, std::string>& english,
                     const std::vector<FileListing>& stored, const ContentLookup& find_by_content) {
  std::unordered_map<std::string, const FileListing*> stored_by_path;
  for (const auto& listing : stored) stored_by_path.emplace(listing.state.path, &listing);

  IndexPlan plan;
  std::unordered_set<std::string> embed_content;  // content keys of plan.embed
  for (const FolderImage& image : scan.images) {
    FileJob job;
    job.path = image.path;
    job.state.path = normalize_index_path(image.path);
    std::error_code ec;
    job.state.size = static_cast<std::int64_t>(fs::file_size(image.path, ec));
    if (ec) {
      plan.failures.push_back({job.state.path, job.state.path + ": cannot stat: " + ec.message()});
      continue;
    }
    job.state.mtime_ns = mtime_ns(image.path, ec);
    job.info = image.info;
    for (const auto& caption : job.info.captions) {
      const auto it = english.find(caption);
      job.english.push_back(it == english.end() ? std::string() : it->second);
    }
    const auto it = stored_by_path.find(job.state.path);
    if (it != stored_by_path.end()) {
      const FileListing& listing = *it->second;
      if (listing.state.size == job.state.size && listing.state.mtime_ns == job.state.mtime_ns &&
          same_captions(listing.captions, job) && listing.category == job.info.category) {
        ++plan.unchanged;
        continue;
      }
    }
    try {
      job.state.content_hash = hash_file(image.path);
    } catch (const Error& e) {
      plan.failures.push_back({job.state.path, e.what()});
      continue;
    }
    const std::optional<IndexedFile> same_content =
        find_by_content(job.state.content_hash, job.state.size);
    if (same_content && reuse_record(job, *same_content)) {
      plan.reuse.push_back(std::move(job));
    } else if (!embed_content.insert(content_key(job.state)).second) {
      plan.duplicates.push_back(std::move(job));
    } else {
      plan.embed.push_back(std::move(job));
    }
  }
  return plan;
}

}  // namespace mmsearch
