// Internal: what the store's error messages advise, worded once for the database, the vector
// segments and the creation of a store.
#pragma once

#include <string>

namespace mmsearch::store_advice {

// Follows "disk full (<reason>)".
inline constexpr const char* kDiskFull =
    "free some space and run again: what was committed is kept, and an index run resumes where "
    "it stopped";

// Follows "not writable": what still works, and what to change.
inline std::string not_writable(const std::string& folder) {
  return "query and simmatrix still read it, but index and eval need write access to " + folder +
         " (or MMSEARCH_HOME pointing elsewhere)";
}

}  // namespace mmsearch::store_advice
