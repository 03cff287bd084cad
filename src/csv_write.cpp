// A similarity matrix as CSV, quoted by libcsv.
#include <csv.h>

#include <cstdio>
#include <memory>

#include "mmsearch/error.h"
#include "mmsearch/simmatrix.h"

namespace mmsearch {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// csv_fwrite always quotes, doubling quotes inside: any label (commas, quotes, line breaks,
// UTF-8) comes back as it was from an RFC 4180 reader.
void write_field(std::FILE* file, const std::string& field) {
  csv_fwrite(file, field.data(), field.size());
}

}  // namespace

void write_similarity_csv(const SimilarityMatrix& matrix, const std::filesystem::path& path) {
  check_matrix_sizes(matrix);
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "wb"));
  if (!file) throw Error(ErrorKind::kInput, path.string() + ": cannot write CSV");
  std::FILE* out = file.get();
  write_field(out, "label");
  for (const std::string& label : matrix.col_labels) {
    std::fputc(',', out);
    write_field(out, label);
  }
  std::fputs("\r\n", out);
  const std::size_t m = matrix.col_labels.size();
  for (std::size_t r = 0; r < matrix.row_labels.size(); ++r) {
    write_field(out, matrix.row_labels[r]);
    for (std::size_t c = 0; c < m; ++c) std::fprintf(out, ",%.6f", matrix.scores[r * m + c]);
    std::fputs("\r\n", out);
  }
  const bool failed = std::ferror(out) != 0;
  if (std::fclose(file.release()) != 0 || failed) {
    throw Error(ErrorKind::kInput, path.string() + ": write failed");
  }
}

}  // namespace mmsearch
