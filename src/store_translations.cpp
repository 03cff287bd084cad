// IndexStore: the translation cache (schema version 2; see store_schema.cpp).
#include "mmsearch/index.h"
#include "store_impl.h"

namespace mmsearch {

std::unordered_map<std::string, std::string> IndexStore::find_translations(
    const std::string& translator_id, const std::vector<std::string>& texts) const {
  std::unordered_map<std::string, std::string> found;
  const Impl& s = *impl_;
  if (!s.has_translations || texts.empty()) return found;
  sqlite::Statement q(s.db,
                      "SELECT translation FROM translations WHERE translator_id = ?1 AND text = ?2",
                      "translation lookup");
  for (const std::string& text : texts) {
    if (found.count(text)) continue;
    q.bind(1, translator_id).bind(2, text);
    if (q.step()) found.emplace(text, q.text(0));
    q.reset();
  }
  return found;
}

void IndexStore::put_translations(const std::string& translator_id,
                                  const std::vector<std::pair<std::string, std::string>>& pairs) {
  if (pairs.empty()) return;
  Impl& s = *impl_;
  const char* what = "store translations";
  if (translator_id.empty())
    throw Error(ErrorKind::kUsage, s.where(what) + ": empty translator id");
  s.write_transaction(what, [&] {
    sqlite::Statement put(s.db,
                          "INSERT OR REPLACE INTO translations (translator_id, text, translation) "
                          "VALUES (?1, ?2, ?3)",
                          what);
    for (const auto& [text, translation] : pairs) {
      put.bind(1, translator_id).bind(2, text).bind(3, translation).run();
    }
  });
}

}  // namespace mmsearch
