#include "mmsearch/vector_format.h"

#include <nlohmann/json.hpp>

#include "mmsearch/error.h"

namespace mmsearch {
namespace {

using json = nlohmann::json;

std::vector<std::string> string_list(const json& object, const char* key,
                                     const std::string& where) {
  std::vector<std::string> out;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_array()) throw Error(ErrorKind::kInput, where + ": \"" + key + "\" is not a list");
  for (const json& value : *it) {
    if (!value.is_string()) {
      throw Error(ErrorKind::kInput, where + ": \"" + key + "\" holds a non-string");
    }
    out.push_back(value.get<std::string>());
  }
  return out;
}

std::string optional_string(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "";
  if (!it->is_string()) throw Error(ErrorKind::kInput, where + ": \"" + key + "\" is not a string");
  return it->get<std::string>();
}

std::int64_t optional_count(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return -1;
  if (!it->is_number_unsigned()) {
    throw Error(ErrorKind::kInput, where + ": \"" + key + "\" is not a non-negative integer");
  }
  return it->get<std::int64_t>();
}

json parse_object(std::string_view text, const std::string& where) {
  json parsed = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) throw Error(ErrorKind::kInput, where + ": not valid JSON");
  if (!parsed.is_object()) throw Error(ErrorKind::kInput, where + ": not a JSON object");
  return parsed;
}

}  // namespace

VectorItem parse_metadata_line(std::string_view line, const std::string& source,
                               std::int64_t line_number) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::string where = source + ":" + std::to_string(line_number);
  const json object = parse_object(line, where);
  VectorItem item;
  item.file = optional_string(object, "file", where);
  if (item.file.empty()) throw Error(ErrorKind::kInput, where + ": no \"file\"");
  item.category = optional_string(object, "category", where);
  const std::vector<std::string> texts = string_list(object, "captions", where);
  const std::vector<std::string> english = string_list(object, "captions_en", where);
  if (!english.empty() && english.size() != texts.size()) {
    throw Error(ErrorKind::kInput, where + ": \"captions_en\" has " +
                                       std::to_string(english.size()) + " entries for " +
                                       std::to_string(texts.size()) + " captions");
  }
  for (std::size_t c = 0; c < texts.size(); ++c) {
    item.captions.push_back({texts[c], english.empty() ? std::string() : english[c]});
  }
  return item;
}

std::string metadata_line(const VectorItem& item) {
  json object = {{"file", item.file}};
  if (!item.captions.empty()) {
    json texts = json::array(), english = json::array();
    bool any_english = false;
    for (const Caption& caption : item.captions) {
      texts.push_back(caption.text);
      english.push_back(caption.text_en);
      any_english = any_english || !caption.text_en.empty();
    }
    object["captions"] = std::move(texts);
    if (any_english) object["captions_en"] = std::move(english);
  }
  if (!item.category.empty()) object["category"] = item.category;
  // Invalid UTF-8 (a path from a non-UTF-8 file system) is written as U+FFFD, not refused.
  return object.dump(-1, ' ', false, json::error_handler_t::replace);
}

VectorFormat parse_format_json(std::string_view text, const std::string& source) {
  const json object = parse_object(text, source);
  if (optional_string(object, "format", source) != kVectorFormatName) {
    throw Error(ErrorKind::kInput,
                source + ": \"format\" is not \"" + std::string(kVectorFormatName) + "\"");
  }
  const std::int64_t version = optional_count(object, "format_version", source);
  if (version < 1) throw Error(ErrorKind::kInput, source + ": no valid \"format_version\"");
  if (version > kVectorFormatVersion) {
    throw Error(ErrorKind::kInput,
                source + ": written in vector format version " + std::to_string(version) +
                    " by a newer mmsearch; this mmsearch reads up to version " +
                    std::to_string(kVectorFormatVersion) + ": upgrade mmsearch to import it");
  }
  VectorFormat format;
  format.version = static_cast<int>(version);
  format.model = optional_string(object, "model", source);
  format.items = optional_count(object, "items", source);
  format.captions = optional_count(object, "captions", source);
  format.created_by = optional_string(object, "created_by", source);
  const auto files = object.find("checksums");
  if (files != object.end() && !files->is_null()) {
    if (!files->is_object())
      throw Error(ErrorKind::kInput, source + ": \"checksums\" is not an object");
    for (const auto& [name, value] : files->items()) {
      if (!value.is_string()) {
        throw Error(ErrorKind::kInput, source + ": checksum of " + name + " is not a string");
      }
      format.checksums[name] = value.get<std::string>();
    }
  }
  return format;
}

std::string format_json(const VectorFormat& format) {
  json object = {{"format", kVectorFormatName}, {"format_version", format.version}};
  if (!format.model.empty()) object["model"] = format.model;
  if (format.items >= 0) object["items"] = format.items;
  if (format.captions >= 0) object["captions"] = format.captions;
  object["checksums"] = format.checksums;
  if (!format.created_by.empty()) object["created_by"] = format.created_by;
  return object.dump(2) + "\n";
}

}  // namespace mmsearch
