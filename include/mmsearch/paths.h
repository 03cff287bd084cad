// Where mmsearch keeps its per-user data, and the one canonical form of a path that the index
// stores and matches.
#pragma once

#include <filesystem>
#include <string>

namespace mmsearch {

// The per-user data folder: $MMSEARCH_HOME if set and non-empty (a relative value is taken
// from the current folder), else $XDG_DATA_HOME/mmsearch, else $HOME/.local/share/mmsearch.
// Does not create it. Throws Error(kUsage) when none of the variables is usable (relative
// XDG_DATA_HOME and HOME are ignored, as the XDG spec says).
std::filesystem::path default_data_dir();
// default_data_dir() / "index.sqlite3".
std::filesystem::path default_index_path();

// The canonical form of a path as stored and matched: absolute, lexically normal, no trailing
// slash (except "/"). Symlinks are not resolved: the user's view of the tree is kept. Throws
// Error(kUsage) when the path cannot be made absolute.
std::string normalize_index_path(const std::filesystem::path& path);

}  // namespace mmsearch
