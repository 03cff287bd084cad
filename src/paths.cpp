#include "mmsearch/paths.h"

#include <cstdlib>
#include <optional>
#include <system_error>

#include "mmsearch/error.h"

namespace mmsearch {
namespace fs = std::filesystem;

std::filesystem::path default_data_dir() {
  // Relative values are ignored, as the XDG Base Directory spec requires.
  const auto absolute_env = [](const char* name) -> std::optional<fs::path> {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    fs::path p(value);
    if (!p.is_absolute()) return std::nullopt;
    return p;
  };
  // MMSEARCH_HOME is ours, not XDG's: a relative value means the folder it names from here,
  // never a silent fallback to another store.
  if (const char* home = std::getenv("MMSEARCH_HOME"); home && *home) {
    std::error_code ec;
    const fs::path absolute = fs::absolute(home, ec);
    if (ec) {
      throw Error(ErrorKind::kUsage, std::string("MMSEARCH_HOME='") + home +
                                         "' cannot be made absolute: " + ec.message());
    }
    return absolute.lexically_normal();
  }
  if (auto xdg = absolute_env("XDG_DATA_HOME")) return *xdg / "mmsearch";
  if (auto home = absolute_env("HOME")) return *home / ".local" / "share" / "mmsearch";
  throw Error(ErrorKind::kUsage,
              "cannot find a place for the index: set MMSEARCH_HOME (or XDG_DATA_HOME or HOME) "
              "to an absolute path");
}

std::filesystem::path default_index_path() { return default_data_dir() / "index.sqlite3"; }

std::string normalize_index_path(const std::filesystem::path& path) {
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec) throw Error(ErrorKind::kUsage, "cannot make '" + path.string() + "' absolute");
  std::string text = absolute.lexically_normal().generic_string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

}  // namespace mmsearch
