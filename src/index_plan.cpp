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

FolderScan scan_folder(const fs::path& root_in, bool include_hidden) {
  FolderScan scan;
  scan.root = normalize_index_path(root_in);
  const CaptionTable table = read_caption_table(scan.root);
  scan.warnings = table.warnings;
  for (auto& path : find_images(scan.root, include_hidden, scan.warnings)) {
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

std::vector<FileState> vanished_files(const std::vector<FileListing>& stored) {
  std::vector<FileState> vanished;
  for (const auto& listing : stored) {
    if (is_gone_from_disk(listing.state.path)) vanished.push_back(listing.state);
  }
  return vanished;
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
