// A similarity matrix as CSV, quoted by libcsv: from a matrix in memory, or streamed from its
// sides one row of scores at a time.
#include <csv.h>

#include <charconv>
#include <cstdio>
#include <string>

#include "mmsearch/error.h"
#include "mmsearch/score_rows.h"
#include "mmsearch/simmatrix.h"
#include "output_file.h"

namespace mmsearch {
namespace {

// One CSV file being written; the header and each row in one call.
class CsvWriter {
 public:
  explicit CsvWriter(const std::filesystem::path& path) : out_(path, "CSV") {
    // Rows are written whole; a large buffer keeps the calls few on a 100k-column row.
    std::setvbuf(out_.stream(), nullptr, _IOFBF, 1 << 20);
  }

  void header(const std::string& corner, const std::vector<std::string>& col_labels) {
    write_field(corner);
    for (const std::string& label : col_labels) {
      std::fputc(',', out_.stream());
      write_field(label);
    }
    std::fputs("\r\n", out_.stream());
  }

  void row(const std::string& label, const float* scores, std::size_t count) {
    write_field(label);
    // ",%.6f" per score: std::to_chars gives printf's digits (fixed, 6 decimals, the exact
    // value rounded half to even) without its per-call cost, which dominates a large CSV.
    // The widest is -FLT_MAX: a sign, 39 digits, the point and 6 decimals.
    line_.resize(count * 48 + 2);
    char* out = line_.data();
    char* const end = line_.data() + line_.size();
    for (std::size_t c = 0; c < count; ++c) {
      *out++ = ',';
      out = std::to_chars(out, end, scores[c], std::chars_format::fixed, 6).ptr;
    }
    *out++ = '\r';
    *out++ = '\n';
    std::fwrite(line_.data(), 1, static_cast<std::size_t>(out - line_.data()), out_.stream());
    if (std::ferror(out_.stream())) fail();
  }

  void close() { out_.commit(); }

 private:
  // csv_fwrite always quotes, doubling quotes inside: any label (commas, quotes, line breaks,
  // UTF-8) comes back as it was from an RFC 4180 reader.
  void write_field(const std::string& field) {
    csv_fwrite(out_.stream(), field.data(), field.size());
  }
  [[noreturn]] void fail() const { out_.fail_write(); }

  OutputFile out_;
  std::string line_;  // one row's scores, reused
};

std::string corner(const std::string& note) {
  return note.empty() ? "label" : "label (" + note + ")";
}

}  // namespace

void write_similarity_csv(const SimilarityMatrix& matrix, const std::filesystem::path& path) {
  check_matrix_sizes(matrix);
  CsvWriter csv(path);
  csv.header(corner(matrix.note), matrix.col_labels);
  const std::size_t m = matrix.col_labels.size();
  for (std::size_t r = 0; r < matrix.row_labels.size(); ++r) {
    csv.row(matrix.row_labels[r], matrix.scores.data() + r * m, m);
  }
  csv.close();
}

void write_similarity_csv(const SimilaritySides& sides, const std::filesystem::path& path) {
  CsvWriter csv(path);
  csv.header(corner(sample_note(sides)), sides.cols.labels);
  for_each_score_row(sides.rows.vectors, sides.cols.vectors, sides.rule, nullptr,
                     [&](std::int64_t r, const std::vector<float>& scores) {
                       csv.row(sides.rows.labels[r], scores.data(), scores.size());
                     });
  csv.close();
}

}  // namespace mmsearch
