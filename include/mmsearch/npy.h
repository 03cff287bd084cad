// Minimal NumPy .npy reader and writer for C-order arrays: `mmsearch embed --out` writes what
// LAVIS users load with numpy.load, tests read the golden arrays, and vector import / export
// (vector_import.h) stream float32 / float16 rows of arrays too large to hold. The format is a
// magic string, a Python-dict header and raw little-endian data; a general array library would
// be far more than this needs.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mmsearch {

struct NpyArray {
  std::string dtype;  // "<f4" or "<i8"
  std::vector<std::int64_t> shape;
  std::vector<float> f32;         // set when dtype is "<f4"
  std::vector<std::int64_t> i64;  // set when dtype is "<i8"
  std::int64_t size() const;
};

// Throws Error(kInput) naming the file for anything but C-order <f4 / <i8 (and <u1, loaded
// into i64) arrays.
NpyArray read_npy(const std::filesystem::path& path);
void write_npy(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
               const float* data);
void write_npy(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
               const std::int64_t* data);

// ---------------------------------------------------------------------------------------------
// Headers and streaming.

// What a .npy header says (format versions 1.0, 2.0 and 3.0).
struct NpyHeader {
  std::string descr;  // e.g. "<f4", "<f2", "<i8", "|u1"
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  std::size_t data_offset = 0;    // bytes before the first element
  std::int64_t count() const;     // number of elements (1 for a 0-d array)
  std::size_t item_size() const;  // bytes per element of descr, 0 when descr is unknown
};

// Bytes the header (magic, version, length, dict) occupies, read from the first 12 bytes (or
// fewer, for a short file). Throws Error(kInput) "<name>: not a supported .npy file: <reason>".
std::size_t npy_header_length(std::string_view file_start, const std::string& name);
// Parses a header from the start of a file (at least npy_header_length() bytes). The dict must
// hold exactly 'descr' (a string), 'fortran_order' (True/False) and 'shape' (a tuple of
// non-negative integers) as numpy writes it; anything else throws Error(kInput) naming `name`.
// The element count and byte size must fit in int64. The dtype is not checked here.
NpyHeader parse_npy_header(std::string_view file_start, const std::string& name);

// Reads rows of a C-order little-endian float32 ("<f4") or float16 ("<f2") array without
// loading it: row r is the r-th slice along the first axis (row_size() elements), converted to
// float32. Sequential reads go through one buffered stream; a read elsewhere seeks. Throws
// Error(kInput) naming the file for another dtype, Fortran order, a 0-d array, a file whose
// size is not header + data (truncated or with trailing bytes), and read errors.
class NpyRowReader {
 public:
  explicit NpyRowReader(const std::filesystem::path& path);
  const std::filesystem::path& path() const { return path_; }
  const NpyHeader& header() const { return header_; }
  std::int64_t rows() const { return header_.shape.front(); }
  std::int64_t row_size() const { return row_size_; }
  // Reads rows [first, first + count) into out[count * row_size()].
  void read_rows(std::int64_t first, std::int64_t count, float* out);

 private:
  struct Closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };
  std::filesystem::path path_;
  NpyHeader header_;
  std::int64_t row_size_ = 0;
  std::int64_t next_row_ = 0;  // where the stream stands
  std::unique_ptr<std::FILE, Closer> file_;
  std::vector<std::uint16_t> half_;  // staging for float16 rows
};

// Writes a C-order float32 ("<f4") or float16 ("<f2") array row by row when the number of rows
// is not known up front: the header is written with room for any row count and rewritten with
// the final shape by finish(). Without finish() the file keeps its 0-row header, which
// NpyRowReader refuses as not matching the file's size. Throws Error(kInput) naming the file when
// it can't be written.
class NpyRowWriter {
 public:
  // row_shape: the shape without the first axis ({} for a 1-d array).
  NpyRowWriter(const std::filesystem::path& path, const std::string& descr,
               std::vector<std::int64_t> row_shape);
  std::int64_t row_size() const { return row_size_; }
  std::int64_t rows() const { return rows_; }
  // Appends `count` rows from values[count * row_size()] (converted for "<f2").
  void write_rows(const float* values, std::int64_t count);
  // Writes the header with the final shape and closes the file.
  void finish();

 private:
  struct Closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };
  std::filesystem::path path_;
  std::string descr_;
  std::vector<std::int64_t> row_shape_;
  std::int64_t row_size_ = 1;
  std::int64_t rows_ = 0;
  std::size_t header_bytes_ = 0;
  std::unique_ptr<std::FILE, Closer> file_;
  std::vector<std::uint16_t> half_;
};

// float16 (IEEE binary16) <-> float32, round to nearest even.
void half_to_float(const std::uint16_t* in, float* out, std::size_t count);
void float_to_half(const float* in, std::uint16_t* out, std::size_t count);

}  // namespace mmsearch
