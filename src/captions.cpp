#include "mmsearch/captions.h"

#include <csv.h>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>

#include "mmsearch/error.h"
#include "mmsearch/paths.h"
#include "text_unicode.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";
constexpr const char* kLenientHint = "--lenient-captions";

std::string trim(std::string_view s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  const auto end = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(begin, end - begin + 1));
}

bool is_valid_utf8(std::string_view text) {
  try {
    text_unicode::decode_utf8(text);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// The whole file, without a leading byte order mark (spreadsheets write one). More than
// max_bytes is refused: the size on disk was checked, but the file may have grown since.
std::string read_all(const fs::path& path, std::size_t max_bytes, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kInput, path.string() + ": cannot read " + what);
  std::string text;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      throw Error(ErrorKind::kInput, path.string() + ": " + what + " is larger than " +
                                         std::to_string(max_bytes >> 20) +
                                         " MiB; its captions are ignored");
    }
  }
  if (in.bad()) throw Error(ErrorKind::kInput, path.string() + ": cannot read " + what);
  if (text.rfind(kBom, 0) == 0) text.erase(0, kBom.size());
  return text;
}

// NFC form of a name; bytes that are not UTF-8 stay as they are (only an exact match finds
// them).
std::string nfc(const std::string& name) {
  if (!is_valid_utf8(name)) return name;
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) {
    throw Error(ErrorKind::kInternal,
                std::string("ICU has no NFC normaliser: ") + u_errorName(status));
  }
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  normalizer->normalizeUTF8(0, icu::StringPiece(name.data(), static_cast<int32_t>(name.size())),
                            sink, nullptr, status);
  return U_FAILURE(status) ? name : out;
}

// Finds a row's file on disk. A name given byte for byte costs one stat; otherwise each path
// component is looked up by its NFC form among its folder's entries (each folder listed once).
class FolderFiles {
 public:
  enum class Found { kFile, kMissing, kUnknown };

  explicit FolderFiles(fs::path root) : root_(std::move(root)) {}

  // `relative` is lexically normal and inside the root. kFile sets *on_disk to the path as
  // the folder spells it; kUnknown: the file system would not say (no permission...).
  Found find(const fs::path& relative, fs::path* on_disk) {
    std::error_code ec;
    if (fs::is_regular_file(fs::status(root_ / relative, ec))) {
      *on_disk = relative;
      return Found::kFile;
    }
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
      return Found::kUnknown;
    }
    fs::path dir;
    for (auto part = relative.begin(); part != relative.end(); ++part) {
      const bool last = std::next(part) == relative.end();
      const auto& names = listing(dir);
      const auto [first, end] = names.equal_range(nfc(part->string()));
      bool found = false;
      for (auto it = first; it != end && !found; ++it) {
        const fs::file_status status = fs::status(root_ / dir / it->second, ec);
        if (last ? fs::is_regular_file(status) : fs::is_directory(status)) {
          dir /= it->second;
          found = true;
        }
      }
      if (!found) return Found::kMissing;
    }
    *on_disk = dir;
    return Found::kFile;
  }

 private:
  // NFC name -> name on disk, for the entries of root/dir.
  const std::multimap<std::string, std::string>& listing(const fs::path& dir) {
    auto [it, added] = listings_.try_emplace(dir.string());
    if (added) {
      std::error_code ec;
      for (fs::directory_iterator entries(root_ / dir, ec), end; !ec && entries != end;
           entries.increment(ec)) {
        const std::string name = entries->path().filename().string();
        it->second.emplace(nfc(name), name);
      }
    }
    return it->second;
  }

  fs::path root_;
  std::map<std::string, std::multimap<std::string, std::string>> listings_;
};

// Fills the table from rows, whatever the file's format: finds each row's file, drops exact
// repeats and captions over the limit, and words the warnings.
class TableBuilder {
 public:
  TableBuilder(CaptionTable& table, const fs::path& root)
      : table_(table), root_(normalize_index_path(root)), files_(root_) {}

  void warn(const std::string& kind, int line, const std::string& what) {
    std::size_t& count = warning_counts_[kind];
    if (++count <= kMaxWarningsPerKind) {
      table_.warnings.push_back(table_.source.string() + ": line " + std::to_string(line) + ": " +
                                what);
    }
  }

  // The warnings left out by warn(), one line per kind.
  void finish() {
    for (const auto& [kind, count] : warning_counts_) {
      if (count > kMaxWarningsPerKind) {
        table_.warnings.push_back(table_.source.string() + ": " +
                                  std::to_string(count - kMaxWarningsPerKind) + " more rows " +
                                  kind + " (not listed)");
      }
    }
  }

  // Whether a row's `file` value names a file in the folder, for spotting runaway fields.
  bool names_a_file(const std::string& file) {
    fs::path on_disk;
    const auto relative = relative_path(file);
    return relative && files_.find(*relative, &on_disk) == FolderFiles::Found::kFile;
  }

  void add(int line, const std::string& file_in, const std::string& caption_in,
           const std::string& category) {
    const std::string file = trim(file_in);
    if (file.find('\0') != std::string::npos) {
      warn("name files that are not in the folder", line, "the file name holds a NUL; skipped");
      return;
    }
    const auto relative = relative_path(file);
    if (!relative) {
      warn("name no file inside the folder", line,
           file.empty() ? "no file name; skipped"
                        : "'" + file + "' is not inside the folder; skipped");
      return;
    }
    fs::path on_disk;
    const FolderFiles::Found found = files_.find(*relative, &on_disk);
    if (found == FolderFiles::Found::kMissing) {
      warn("name files that are not in the folder", line,
           "'" + file + "' is not a file in the folder; skipped");
      return;
    }
    if (found == FolderFiles::Found::kUnknown) on_disk = *relative;
    const std::string key = normalize_index_path(root_ / on_disk);
    CaptionInfo& info = table_.by_path[key];
    const std::string caption = trim(caption_in);
    if (!caption.empty()) {
      auto& seen = first_line_[key];
      if (const auto earlier = seen.find(caption); earlier != seen.end()) {
        warn("repeat an earlier row", line,
             "repeats line " + std::to_string(earlier->second) + " ('" + file +
                 "', the same caption); kept once");
      } else if (info.captions.size() >= kMaxCaptionsPerImage) {
        warn("exceed the captions limit", line,
             "more than " + std::to_string(kMaxCaptionsPerImage) + " captions for '" + file +
                 "'; the caption is skipped");
      } else {
        seen.emplace(caption, line);
        info.captions.push_back(caption);
      }
    }
    if (!trim(category).empty()) info.category = trim(category);
  }

 private:
  // The value relative to the root, lexically normal; nullopt when it leads outside it.
  std::optional<fs::path> relative_path(const std::string& file) const {
    if (file.empty() || file.find('\0') != std::string::npos) return std::nullopt;
    const fs::path relative =
        fs::path(normalize_index_path(root_ / file)).lexically_relative(root_);
    if (relative.empty() || relative == "." || *relative.begin() == "..") return std::nullopt;
    return relative;
  }

  CaptionTable& table_;
  fs::path root_;
  FolderFiles files_;
  std::map<std::string, std::map<std::string, int>> first_line_;  // key -> caption -> line
  std::map<std::string, std::size_t> warning_counts_;
};

// ---------------------------------------------------------------------------------------------
// csv / tsv

struct Record {
  std::vector<std::string> fields;
  std::vector<int> field_lines;  // the line each field starts on
  int line = 0;                  // the line the record starts on
};

struct Damage {
  int row_line = 0;    // where the damaged row starts
  int field_line = 0;  // where its damaged field starts; parsing resumes after it
  std::string reason;
};

struct Parsed {
  std::vector<Record> records;
  std::optional<Damage> damage;  // parsing stopped there
};

// libcsv's callback state. The parser is fed one line at a time, so a field that ends on line
// `line` and holds n newlines started n lines earlier.
struct CsvState {
  std::vector<Record> records;
  Record current;
  int line = 0;             // the line being fed
  int open_field_line = 0;  // the line of the last delimiter: the next field starts there
  int row_end_line = 0;     // the line the last record ended on
};

void on_field(void* data, std::size_t length, void* opaque) {
  auto* state = static_cast<CsvState*>(opaque);
  std::string value = data ? std::string(static_cast<const char*>(data), length) : std::string();
  const int starts = state->line - static_cast<int>(std::count(value.begin(), value.end(), '\n'));
  if (state->current.fields.empty()) state->current.line = starts;
  state->current.fields.push_back(std::move(value));
  state->current.field_lines.push_back(starts);
  state->open_field_line = state->line;
}

void on_row(int, void* opaque) {
  auto* state = static_cast<CsvState*>(opaque);
  state->records.push_back(std::move(state->current));
  state->current = Record{};
  state->open_field_line = 0;
  state->row_end_line = state->line;
}

// Line i (1-based) is lines[i - 1], with its '\n'.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::size_t begin = 0; begin < text.size();) {
    const std::size_t newline = text.find('\n', begin);
    const std::size_t end = newline == std::string_view::npos ? text.size() : newline + 1;
    lines.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return lines;
}

// The first line after `after` that libcsv does not skip as blank (only spaces, tabs unless
// they delimit, and line ends): where a record that has not begun yet begins.
int first_content_line(const std::vector<std::string_view>& lines, int after, unsigned char delim) {
  for (int i = after + 1; i <= static_cast<int>(lines.size()); ++i) {
    for (const char c : lines[i - 1]) {
      if (c == ' ' || c == '\r' || c == '\n' || (c == '\t' && delim != '\t')) continue;
      return i;
    }
  }
  return after + 1;
}

// Records from line `first` on, up to the first damage libcsv reports.
Parsed parse_from(const std::vector<std::string_view>& lines, int first, unsigned char delim) {
  csv_parser parser;
  if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI) != 0) {
    throw Error(ErrorKind::kInternal, "libcsv could not initialise");
  }
  csv_set_delim(&parser, delim);
  CsvState state;
  state.row_end_line = first - 1;
  bool failed = false;
  int failed_on = 0;
  bool stray_quote = false;  // the byte libcsv stopped at is a quote: one in an unquoted field
  for (int i = first; i <= static_cast<int>(lines.size()) && !failed; ++i) {
    state.line = i;
    const std::string_view line = lines[i - 1];
    const std::size_t used = csv_parse(&parser, line.data(), line.size(), on_field, on_row, &state);
    if (used != line.size()) {
      failed = true;
      failed_on = i;
      stray_quote = line[used] == '"';
    }
  }
  const bool unterminated = !failed && csv_fini(&parser, on_field, on_row, &state) != 0;
  const int error = csv_error(&parser);
  csv_free(&parser);

  Parsed parsed;
  parsed.records = std::move(state.records);
  if (!failed && !unterminated) return parsed;
  Damage damage;
  damage.field_line = state.open_field_line != 0
                          ? state.open_field_line
                          : first_content_line(lines, state.row_end_line, delim);
  damage.row_line = state.current.fields.empty() ? damage.field_line : state.current.line;
  if (error != CSV_EPARSE) {
    damage.reason = csv_strerror(error);
  } else if (unterminated) {
    damage.reason =
        "a quoted field is never closed (an unterminated quote runs to the end of "
        "the file)";
  } else if (stray_quote) {
    damage.reason =
        "a quote inside an unquoted field (RFC 4180: quote the whole field and double the "
        "quote, as in \"a 12\"\" pizza\")";
  } else if (failed_on > damage.field_line) {
    damage.reason = "a quoted field runs on to line " + std::to_string(failed_on) +
                    ", where a quote is followed by other text (an unterminated quote?)";
  } else {
    damage.reason = "a closing quote is followed by other text";
  }
  parsed.damage = std::move(damage);
  return parsed;
}

struct Columns {
  int file = -1, caption = -1, category = -1;
  int needed() const { return std::max(file, caption) + 1; }
};

std::string header_name(const std::string& field) {
  std::string name = trim(field);
  while (name.rfind(kBom, 0) == 0) name = trim(std::string_view(name).substr(kBom.size()));
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return name;
}

Columns read_header(const Record& header, const fs::path& path) {
  Columns columns;
  for (int i = 0; i < static_cast<int>(header.fields.size()); ++i) {
    const std::string name = header_name(header.fields[i]);
    if (name == "file" || name == "filename" || name == "path") columns.file = i;
    if (name == "caption" || name == "text") columns.caption = i;
    if (name == "category") columns.category = i;
  }
  if (columns.file < 0 || columns.caption < 0) {
    throw Error(ErrorKind::kInput, path.string() +
                                       ": the header row must name the columns 'file' and "
                                       "'caption' (and optionally 'category')");
  }
  return columns;
}

// A multi-line field one of whose later lines reads as a row of its own (its `file` column
// names a file in the folder): a quote left open that libcsv closed at some later quote.
std::optional<Damage> find_runaway(const Record& record, const Columns& columns,
                                   unsigned char delim, TableBuilder& builder) {
  for (std::size_t f = 0; f < record.fields.size(); ++f) {
    const std::string& field = record.fields[f];
    int offset = 0;
    for (std::size_t begin = field.find('\n'); begin != std::string::npos;
         begin = field.find('\n', begin)) {
      ++begin;
      ++offset;
      const std::size_t end = std::min(field.find('\n', begin), field.size());
      const std::string_view line(field.data() + begin, end - begin);
      std::vector<std::string_view> parts;
      for (std::size_t p = 0;;) {
        const std::size_t next = line.find(static_cast<char>(delim), p);
        parts.push_back(line.substr(p, next == std::string_view::npos ? line.npos : next - p));
        if (next == std::string_view::npos) break;
        p = next + 1;
      }
      if (static_cast<int>(parts.size()) < columns.needed()) continue;
      std::string file = trim(parts[columns.file]);
      if (file.size() >= 2 && file.front() == '"' && file.back() == '"') {
        file = trim(std::string_view(file).substr(1, file.size() - 2));
      }
      if (!builder.names_a_file(file)) continue;
      Damage damage;
      damage.row_line = record.line;
      damage.field_line = record.field_lines[f];
      damage.reason =
          "a quoted field runs on into line " + std::to_string(record.field_lines[f] + offset) +
          ", which reads as a row of its own (for '" + file + "'): an unterminated quote?";
      return damage;
    }
  }
  return std::nullopt;
}

void read_delimited(TableBuilder& builder, const fs::path& path, unsigned char delim,
                    const CaptionOptions& options) {
  const std::string text = read_all(path, std::string::npos, "captions file");
  const std::vector<std::string_view> lines = split_lines(text);
  std::optional<Columns> columns;
  for (int first = 1; first <= static_cast<int>(lines.size());) {
    Parsed parsed = parse_from(lines, first, delim);
    std::optional<Damage> damage;
    for (const Record& record : parsed.records) {
      if (!columns) {
        columns = read_header(record, path);
        continue;
      }
      if ((damage = find_runaway(record, *columns, delim, builder))) break;
      const auto& row = record.fields;
      if (row.size() == 1 && trim(row[0]).empty()) continue;
      if (static_cast<int>(row.size()) < columns->needed()) {
        builder.warn("have too few columns", record.line, "too few columns; skipped");
        continue;
      }
      const std::string category =
          columns->category >= 0 && columns->category < static_cast<int>(row.size())
              ? row[columns->category]
              : "";
      if (!is_valid_utf8(row[columns->file]) || !is_valid_utf8(row[columns->caption]) ||
          !is_valid_utf8(category)) {
        builder.warn("are not valid UTF-8", record.line, "not valid UTF-8; skipped");
        continue;
      }
      builder.add(record.line, row[columns->file], row[columns->caption], category);
    }
    if (!damage) damage = std::move(parsed.damage);
    if (!damage) break;
    const std::string where = path.string() + ": line " + std::to_string(damage->field_line);
    if (!columns) {
      throw Error(ErrorKind::kInput, where + ": the header row is damaged: " + damage->reason);
    }
    if (!options.lenient) {
      throw Error(ErrorKind::kInput, where + ": " + damage->reason +
                                         "; fix the quoting, or index with " + kLenientHint +
                                         " to skip the damaged rows");
    }
    const std::string lines_skipped = damage->row_line < damage->field_line
                                          ? "the row (lines " + std::to_string(damage->row_line) +
                                                "-" + std::to_string(damage->field_line) +
                                                ") is skipped"
                                          : "the row is skipped";
    builder.warn("are damaged", damage->field_line, damage->reason + "; " + lines_skipped);
    first = damage->field_line + 1;
  }
}

// ---------------------------------------------------------------------------------------------
// jsonl

void read_jsonl(TableBuilder& builder, const fs::path& path, const CaptionOptions& options) {
  std::istringstream in(read_all(path, std::string::npos, "captions file"));
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (trim(line).empty()) continue;
    if (!is_valid_utf8(line)) {
      builder.warn("are not valid UTF-8", number, "not valid UTF-8; skipped");
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      const std::string reason = "not JSON (a syntax error at byte " + std::to_string(e.byte) + ")";
      if (!options.lenient) {
        throw Error(ErrorKind::kInput, path.string() + ": line " + std::to_string(number) + ": " +
                                           reason + "; fix the line, or index with " +
                                           kLenientHint + " to skip such lines");
      }
      builder.warn("are damaged", number, reason + "; skipped");
      continue;
    } catch (const nlohmann::json::exception&) {
      // Well-formed, but not representable: a number such as 9e9999 (out_of_range).
      builder.warn("hold numbers out of range", number, "a number out of range; skipped");
      continue;
    }
    try {
      const std::string file = j.at("file").get<std::string>();
      const std::string caption = j.value("caption", std::string());
      const std::string category = j.value("category", std::string());
      builder.add(number, file, caption, category);
    } catch (const nlohmann::json::exception&) {
      builder.warn("are not {\"file\", \"caption\"} objects", number,
                   "not a {\"file\", \"caption\"} object; skipped");
    }
  }
}

}  // namespace

CaptionTable read_caption_table(const fs::path& root, const CaptionOptions& options) {
  CaptionTable table;
  std::error_code ec;
  for (const char* name : {"captions.csv", "captions.tsv", "captions.jsonl"}) {
    if (fs::is_regular_file(root / name, ec)) {
      table.source = root / name;
      break;
    }
  }
  if (table.source.empty()) return table;
  TableBuilder builder(table, root);
  const std::string extension = table.source.extension().string();
  if (extension == ".jsonl") {
    read_jsonl(builder, table.source, options);
  } else {
    read_delimited(builder, table.source, extension == ".csv" ? ',' : '\t', options);
  }
  builder.finish();
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
      const std::string text = read_all(sidecar, kMaxSidecarBytes, "caption file");
      if (!is_valid_utf8(text)) {
        throw Error(
            ErrorKind::kInput,
            sidecar.string() + ": caption file is not valid UTF-8; its captions are ignored");
      }
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        if (trim(line).empty()) continue;
        if (info.captions.size() == kMaxCaptionsPerImage) {
          throw Error(ErrorKind::kInput, sidecar.string() + ": caption file has more than " +
                                             std::to_string(kMaxCaptionsPerImage) +
                                             " captions, the limit per image; its captions "
                                             "are ignored");
        }
        info.captions.push_back(trim(line));
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
