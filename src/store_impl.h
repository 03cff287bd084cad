// Internal: the state behind an IndexStore, shared by the files that implement its parts
// (store.cpp: opening and writing, store_queries.cpp: reading, store_translations.cpp: the
// translation cache).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "sqlite_db.h"
#include "store_schema.h"

namespace mmsearch {

struct IndexStore::Impl {
  Impl(store_schema::OpenedDatabase opened, bool opened_read_only)
      : db(std::move(opened.db)),
        read_only(opened_read_only),
        schema_version(opened.schema_version),
        has_translations(opened.has_translations) {}

  sqlite::Database db;
  bool read_only = false;
  int schema_version = 0;
  bool has_translations = false;

  std::string where(const std::string& what) const { return db.where(what); }

  // Fills `file` (state and category already set) with the captions and vectors of row
  // file_id (store_queries.cpp).
  void read_captions_and_vectors(std::int64_t file_id, IndexedFile& file) const;

  // models.id of a model id, nullopt when the store does not hold it. Looked up on every call
  // rather than cached: another process may remove a model (and SQLite may then hand its id to
  // a new one), and a stale id would mix two models' vectors. The lookup costs microseconds.
  std::optional<std::int64_t> model_row(const std::string& model_id) const {
    sqlite::Statement q(db, "SELECT id FROM models WHERE model_id = ?1", "model lookup");
    q.bind(1, model_id);
    if (!q.step()) return std::nullopt;
    return q.int64(0);
  }

  std::int64_t ensure_model_row(const std::string& model_id) {
    if (auto row = model_row(model_id)) return *row;
    sqlite::Statement insert(db, "INSERT INTO models (model_id) VALUES (?1)", "add model");
    insert.bind(1, model_id).run();
    return db.last_insert_rowid();
  }

  // Runs `body` in one write transaction; rolls back when it throws.
  template <typename Body>
  void write_transaction(const std::string& what, Body&& body) {
    if (read_only) throw Error(ErrorKind::kUsage, where(what) + ": the store is open read-only");
    sqlite::Transaction transaction(db, what);
    body();
    transaction.commit();
  }
};

}  // namespace mmsearch
