// Planning an indexing run (see indexer.h): which images a folder holds, with which captions,
// and for each one whether it is unchanged, can reuse stored vectors or must be embedded.
// Reads the file system, and stored records through the caller's lookup; writes nothing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mmsearch/captions.h"
#include "mmsearch/index.h"

namespace mmsearch {

struct IndexFailure {
  IndexFailure() = default;
  IndexFailure(std::string path_in, std::string reason_in, std::string content_hash_in = {},
               std::int64_t size_in = -1)
      : path(std::move(path_in)),
        reason(std::move(reason_in)),
        content_hash(std::move(content_hash_in)),
        size(size_in) {}

  std::string path;
  std::string reason;
  // The file's content when it was read and hashed before failing (a decode failure), else
  // empty: a file whose content is what the store holds keeps its vectors.
  std::string content_hash;
  std::int64_t size = -1;
};

// What a walk of a folder found.
struct FolderWalk {
  std::vector<std::filesystem::path> images;  // sorted
  // Files named like images (has_image_extension) that are not images or cannot be read: they
  // are reported, and if indexed before, leave the index.
  std::vector<IndexFailure> failures;
  // Folders that could not be listed: what the store holds under them is kept as it is, since
  // nothing says it is gone.
  std::vector<std::filesystem::path> unreadable_folders;
  std::vector<std::string> warnings;
};

// Every image file under root (by content sniffing, not extension), sorted. Follows symbolic
// links to folders but never enters a folder twice (no loops), and never one that contains
// root (a link to a parent would pull in the tree around root). Hidden names are skipped
// unless include_hidden.
FolderWalk walk_folder(const std::filesystem::path& root, bool include_hidden);

struct FolderImage {
  std::filesystem::path path;
  CaptionInfo info;
};

struct FolderScan {
  std::filesystem::path root;          // normalize_index_path() form
  std::vector<FolderImage> images;     // sorted by path
  std::vector<IndexFailure> failures;  // image-named files that are not images, unreadable files
  std::vector<std::filesystem::path> unreadable_folders;  // normalize_index_path() form
  std::vector<std::string> warnings;  // captions-file rows skipped, unreadable folders...
};

// The images under root (normalised here) and their captions. An unreadable sidecar is a
// warning: its image gets no captions but keeps the category its folder gives it. Throws
// Error(kInput) for a malformed captions file.
FolderScan scan_folder(const std::filesystem::path& root, bool include_hidden,
                       const CaptionOptions& captions = {});

// Every caption of the scan in order, repeats included.
std::vector<std::string> caption_texts(const FolderScan& scan);

// A file to be stored: its state on disk now and the captions it gets.
struct FileJob {
  std::filesystem::path path;
  FileState state;  // content_hash set
  CaptionInfo info;
  std::vector<std::string> english;  // per caption: text_en to store ("" without translation)

  // The text the model embeds for caption c: its English translation when there is one.
  const std::string& embed_text(std::size_t c) const;
};

struct IndexPlan {
  std::int64_t unchanged = 0;
  std::vector<FileJob> reuse;          // content stored already: its vectors are copied
  std::vector<FileJob> embed;          // content the store lacks, first copy in this run
  std::vector<FileJob> duplicates;     // more copies of content in `embed`: reuse once it is stored
  std::vector<IndexFailure> failures;  // files that could not be read (stat, hash)
};

// A stored record of the model with this content hash and size (see
// IndexStore::find_by_content_hash), or nullopt.
using ContentLookup =
    std::function<std::optional<IndexedFile>(const std::string& content_hash, std::int64_t size)>;

// Decides what to do with every scanned image. Unchanged: its stored listing has the same size,
// mtime, category and captions (text and English). Otherwise the file is hashed; reuse when
// `find_by_content` gives a record whose vectors cover every caption (reuse_record), else
// embed, or duplicate when the same content is already planned for embedding. `english` maps
// a caption to its English text (empty without translation); `stored` is the model's listing
// under the scan's root.
IndexPlan plan_index(const FolderScan& scan,
                     const std::unordered_map<std::string, std::string>& english,
                     const std::vector<FileListing>& stored, const ContentLookup& find_by_content);

// The stored files that leave the index: gone from disk, or still there but no longer found
// by the scan (not an image any more, hidden or otherwise excluded now). Kept: files the scan
// lists or reports as failures (those leave through the failure), files under a folder that
// could not be listed, and files whose existence cannot be checked (`unverifiable` says why).
struct RemovalPlan {
  std::vector<FileState> remove;
  std::vector<std::string> unverifiable;  // warnings
};
RemovalPlan plan_removals(const FolderScan& scan, const std::vector<FileListing>& stored);

// Throws Error(kInput) when `removals` of the `stored` files under the scan's root would leave
// the index and that looks like a missing disk rather than deleted photos: every stored file
// while the folder now holds no image at all (an empty mount point), or at least
// kMassRemovalMinimum files and more than half of them. Nothing is written before this check;
// `confirmed` (index --confirm-removal) lets the run go ahead.
constexpr std::size_t kMassRemovalMinimum = 10;
void check_removal_share(const FolderScan& scan, std::size_t stored, std::size_t removals,
                         bool confirmed);

// The record for `job` from a stored record of the same content: its image vectors as they
// are, and caption vectors where caption text and English text are the same. nullopt when some
// caption has no such vectors (then the model has to run).
std::optional<IndexedFile> reuse_record(const FileJob& job, const IndexedFile& stored);

}  // namespace mmsearch
