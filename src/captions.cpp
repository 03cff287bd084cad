#include "mmsearch/captions.h"

#include <csv.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "text_unicode.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

bool is_valid_utf8(const std::string& text) {
  try {
    text_unicode::decode_utf8(text);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kInput, path.string() + ": cannot read captions file");
  std::ostringstream content;
  content << in.rdbuf();
  std::string text = content.str();
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // spreadsheet UTF-8 BOM
  return text;
}

// libcsv's callback state: rows of fields.
struct CsvRows {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> current;
};

void on_field(void* data, std::size_t length, void* state) {
  static_cast<CsvRows*>(state)->current.emplace_back(static_cast<const char*>(data), length);
}

void on_row(int, void* state) {
  auto* rows = static_cast<CsvRows*>(state);
  rows->rows.push_back(std::move(rows->current));
  rows->current.clear();
}

std::vector<std::vector<std::string>> parse_delimited(const fs::path& path, unsigned char delim) {
  const std::string text = read_all(path);
  csv_parser parser;
  if (csv_init(&parser, CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0) {
    throw Error(ErrorKind::kInternal, "libcsv could not initialise");
  }
  csv_set_delim(&parser, delim);
  CsvRows rows;
  const std::size_t parsed = csv_parse(&parser, text.data(), text.size(), on_field, on_row, &rows);
  const bool failed = parsed != text.size() || csv_fini(&parser, on_field, on_row, &rows) != 0;
  const std::string reason = csv_strerror(csv_error(&parser));
  csv_free(&parser);
  if (failed) {
    throw Error(ErrorKind::kInput,
                path.string() + ": malformed " + (delim == ',' ? "CSV" : "TSV") + ": " + reason);
  }
  return rows.rows;
}

void add_entry(CaptionTable& table, const fs::path& root, const std::string& file,
               const std::string& caption, const std::string& category) {
  CaptionInfo& info = table.by_path[normalize_index_path(root / file)];
  if (!trim(caption).empty()) info.captions.push_back(trim(caption));
  if (!category.empty()) info.category = trim(category);
}

void read_delimited(CaptionTable& table, const fs::path& root, const fs::path& path,
                    unsigned char delim) {
  const auto rows = parse_delimited(path, delim);
  if (rows.empty()) return;
  int file_col = -1, caption_col = -1, category_col = -1;
  for (int i = 0; i < static_cast<int>(rows[0].size()); ++i) {
    const std::string name = trim(rows[0][i]);
    if (name == "file" || name == "filename" || name == "path") file_col = i;
    if (name == "caption" || name == "text") caption_col = i;
    if (name == "category") category_col = i;
  }
  if (file_col < 0 || caption_col < 0) {
    throw Error(ErrorKind::kInput, path.string() +
                                       ": the header row must name the columns 'file' and "
                                       "'caption' (and optionally 'category')");
  }
  for (std::size_t line = 1; line < rows.size(); ++line) {
    const auto& row = rows[line];
    if (row.size() == 1 && trim(row[0]).empty()) continue;
    if (static_cast<int>(row.size()) <= std::max(file_col, caption_col)) {
      table.warnings.push_back(path.string() + ": row " + std::to_string(line + 1) +
                               " has too few columns; skipped");
      continue;
    }
    const std::string category =
        category_col >= 0 && category_col < static_cast<int>(row.size()) ? row[category_col] : "";
    if (!is_valid_utf8(row[file_col]) || !is_valid_utf8(row[caption_col]) ||
        !is_valid_utf8(category)) {
      table.warnings.push_back(path.string() + ": row " + std::to_string(line + 1) +
                               " is not valid UTF-8; skipped");
      continue;
    }
    add_entry(table, root, trim(row[file_col]), row[caption_col], category);
  }
}

void read_jsonl(CaptionTable& table, const fs::path& root, const fs::path& path) {
  std::istringstream in(read_all(path));
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (trim(line).empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      const std::string file = j.at("file").get<std::string>();
      const std::string caption = j.value("caption", std::string());
      const std::string category = j.value("category", std::string());
      add_entry(table, root, file, caption, category);
    } catch (const nlohmann::json::exception& e) {
      table.warnings.push_back(path.string() + ": line " + std::to_string(number) +
                               " is not a {\"file\", \"caption\"} object; skipped");
    }
  }
}

}  // namespace

CaptionTable read_caption_table(const fs::path& root) {
  CaptionTable table;
  std::error_code ec;
  if (fs::is_regular_file(root / "captions.csv", ec)) {
    table.source = root / "captions.csv";
    read_delimited(table, root, table.source, ',');
  } else if (fs::is_regular_file(root / "captions.tsv", ec)) {
    table.source = root / "captions.tsv";
    read_delimited(table, root, table.source, '\t');
  } else if (fs::is_regular_file(root / "captions.jsonl", ec)) {
    table.source = root / "captions.jsonl";
    read_jsonl(table, root, table.source);
  }
  return table;
}

CaptionInfo captions_for(const CaptionTable& table, const fs::path& root, const fs::path& image) {
  CaptionInfo info;
  if (auto it = table.by_path.find(normalize_index_path(image)); it != table.by_path.end()) {
    info = it->second;
  }
  if (info.captions.empty()) {
    fs::path sidecar = image;
    sidecar.replace_extension(".txt");
    std::error_code ec;
    // An image may itself be named x.txt (images are found by content): it is not its own
    // sidecar.
    if (sidecar != image && fs::is_regular_file(sidecar, ec)) {
      const std::string text = read_all(sidecar);
      if (!is_valid_utf8(text)) {
        throw Error(
            ErrorKind::kInput,
            sidecar.string() + ": caption file is not valid UTF-8; its captions are ignored");
      }
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        if (!trim(line).empty()) info.captions.push_back(trim(line));
      }
    }
  }
  if (info.category.empty()) {
    const fs::path relative =
        fs::path(normalize_index_path(image)).lexically_relative(normalize_index_path(root));
    auto it = relative.begin();
    if (it != relative.end() && std::next(it) != relative.end()) info.category = it->string();
  }
  return info;
}

}  // namespace mmsearch
