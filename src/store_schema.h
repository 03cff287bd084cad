// Internal: opening an index store's database file: what makes a file an mmsearch index, the
// connection settings, and the schema with its migration ladder.
#pragma once

#include <filesystem>

#include "sqlite_db.h"

namespace mmsearch::store_schema {

struct OpenedDatabase {
  sqlite::Database db;
  // The schema version of the file: IndexStore::kSchemaVersion, except for a read-only open
  // of an older store, which is read as it is.
  int schema_version = 0;
  bool has_translations = false;  // the translation cache table exists
};

// Opens the store at `path`. Read-write: creates the parent folder and a new store when
// missing, migrates an older schema step by step. Read-only: never writes; a missing or empty
// file is an error. Throws Error(kIndex) naming the path for a file that is not an mmsearch
// index, a corrupt one, a schema newer than this build reads, or a lock timeout.
OpenedDatabase open_database(const std::filesystem::path& path, bool read_only,
                             int busy_timeout_ms);

}  // namespace mmsearch::store_schema
