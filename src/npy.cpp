#include "mmsearch/npy.h"

#include <c10/util/Half.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <cerrno>
#include <cstring>
#include <fstream>
#include <numeric>
#include <optional>

#include "mmsearch/error.h"

namespace mmsearch {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, ".npy data is read as little-endian");

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMaxHeaderBytes = 1 << 20;  // numpy's own are < 200 bytes

[[noreturn]] void bad(const std::string& name, const std::string& reason) {
  throw Error(ErrorKind::kInput, name + ": not a supported .npy file: " + reason);
}

[[noreturn]] void io_error(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorKind::kInput, path.string() + ": " + what + ": " + std::strerror(errno));
}

// The header dict numpy writes: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
class DictParser {
 public:
  DictParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  void parse(NpyHeader& header) {
    expect('{');
    bool descr = false, order = false, shape = false;
    while (!consume('}')) {
      const std::string key = string_literal();
      expect(':');
      if (key == "descr" && !descr) {
        header.descr = string_literal();
        descr = true;
      } else if (key == "fortran_order" && !order) {
        header.fortran_order = boolean();
        order = true;
      } else if (key == "shape" && !shape) {
        header.shape = tuple();
        shape = true;
      } else {
        fail("unexpected or repeated key '" + key + "'");
      }
      if (!consume(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) fail("text after the header dict");
    if (!descr || !order || !shape) fail("the header lacks 'descr', 'fortran_order' or 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& reason) const { bad(name_, "header: " + reason); }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\t' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) fail(std::string("expected '") + c + "'");
  }
  std::string string_literal() {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      fail("expected a quoted string");
    }
    const char quote = text_[pos_++];
    const std::size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string value(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return value;
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const std::size_t n = std::strlen(word);
      if (text_.substr(pos_, n) == word) {
        pos_ += n;
        return value;
      }
    }
    fail("'fortran_order' is not True or False");
  }
  std::int64_t integer() {
    skip_space();
    std::int64_t value = 0;
    const std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, text_[pos_] - '0', &value)) {
        fail("shape too large");
      }
      ++pos_;
    }
    if (pos_ == start) fail("'shape' holds something other than non-negative integers");
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 numpy wrote 3L
    return value;
  }
  std::vector<std::int64_t> tuple() {
    expect('(');
    std::vector<std::int64_t> dims;
    while (!consume(')')) {
      dims.push_back(integer());
      if (!consume(',')) {
        expect(')');
        break;
      }
    }
    return dims;
  }

  std::string_view text_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

// The header text numpy would write for (descr, shape), padded with spaces so that the data
// starts at a multiple of 64 and at least at `min_total` bytes.
std::string header_text(const std::string& descr, const std::vector<std::int64_t>& shape,
                        std::size_t min_total = 0) {
  std::string shape_text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    shape_text += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    if (i + 1 < shape.size()) shape_text += " ";
  }
  shape_text += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // Magic (6) + version (2) + header length (2) + header + '\n' is padded to 64 bytes.
  std::size_t total = 10 + header.size() + 1;
  total += (64 - total % 64) % 64;
  while (total < min_total) total += 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header.push_back('\n');
  std::string out(kMagic, 6);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header;
}

void write_array(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
                 const char* descr, const void* data, std::size_t item_size) {
  const std::string header = header_text(descr, shape);
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": cannot write");
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const std::int64_t count =
      std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(count * item_size));
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": write failed");
}

std::int64_t product(const std::vector<std::int64_t>& dims) {
  return std::accumulate(dims.begin(), dims.end(), std::int64_t{1}, std::multiplies<>());
}

// The header of an open file, read with one small read and one of the header's length.
NpyHeader read_header(std::istream& in, const std::string& name) {
  std::string start(12, '\0');
  in.read(start.data(), 12);
  start.resize(static_cast<std::size_t>(in.gcount()));
  const std::size_t length = npy_header_length(start, name);
  if (length > start.size()) {
    start.resize(length);
    in.read(start.data() + 12, static_cast<std::streamsize>(length - 12));
    if (!in) bad(name, "truncated header");
  }
  NpyHeader header = parse_npy_header(start, name);
  in.seekg(static_cast<std::streamoff>(header.data_offset));
  return header;
}

}  // namespace

std::int64_t NpyArray::size() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

std::int64_t NpyHeader::count() const { return product(shape); }

std::size_t NpyHeader::item_size() const {
  if (descr == "<f4") return 4;
  if (descr == "<f2") return 2;
  if (descr == "<i8") return 8;
  if (descr == "|u1") return 1;
  return 0;
}

std::size_t npy_header_length(std::string_view start, const std::string& name) {
  if (start.size() < 10 || start.substr(0, 6) != std::string_view(kMagic, 6))
    bad(name, "bad magic");
  const auto byte = [&](std::size_t i) { return static_cast<std::size_t>(std::uint8_t(start[i])); };
  const std::size_t major = byte(6);
  if (major == 1) return 10 + (byte(8) | byte(9) << 8);
  if (major != 2 && major != 3) {
    bad(name, "format version " + std::to_string(major) + "." + std::to_string(byte(7)));
  }
  if (start.size() < 12) bad(name, "truncated header");
  const std::size_t length = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
  if (length > kMaxHeaderBytes) bad(name, "header of " + std::to_string(length) + " bytes");
  return 12 + length;
}

NpyHeader parse_npy_header(std::string_view start, const std::string& name) {
  const std::size_t length = npy_header_length(start, name);
  if (start.size() < length) bad(name, "truncated header");
  const std::size_t dict_start = std::uint8_t(start[6]) == 1 ? 10 : 12;
  NpyHeader header;
  DictParser(start.substr(dict_start, length - dict_start), name).parse(header);
  header.data_offset = length;
  std::int64_t count = 1;
  for (std::int64_t d : header.shape) {
    if (__builtin_mul_overflow(count, d, &count)) bad(name, "shape too large");
  }
  if (__builtin_mul_overflow(count, std::int64_t{8}, &count)) bad(name, "shape too large");
  return header;
}

NpyArray read_npy(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kInput, path.string() + ": cannot open");
  const NpyHeader header = read_header(in, path.string());
  if (header.fortran_order) bad(path.string(), "Fortran order");
  NpyArray array;
  array.dtype = header.descr;
  array.shape = header.shape;
  const std::int64_t count = array.size();
  if (array.dtype == "<f4") {
    array.f32.resize(count);
    in.read(reinterpret_cast<char*>(array.f32.data()), count * 4);
  } else if (array.dtype == "<i8") {
    array.i64.resize(count);
    in.read(reinterpret_cast<char*>(array.i64.data()), count * 8);
  } else if (array.dtype == "|u1") {
    std::vector<std::uint8_t> bytes(count);
    in.read(reinterpret_cast<char*>(bytes.data()), count);
    array.i64.assign(bytes.begin(), bytes.end());
  } else {
    bad(path.string(), "dtype " + array.dtype);
  }
  if (!in) bad(path.string(), "truncated data");
  return array;
}

void write_npy(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
               const float* data) {
  write_array(path, shape, "<f4", data, 4);
}

void write_npy(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
               const std::int64_t* data) {
  write_array(path, shape, "<i8", data, 8);
}

// ---------------------------------------------------------------------------------------------

// The conversions run on every element of an import (~8k per BLIP-2 item): with the F16C
// instructions (x86 since 2012, checked at run time: the build targets baseline x86-64) 8 values
// take one instruction, about 20x faster than c10's portable bit arithmetic.
#if defined(__x86_64__)
namespace {

__attribute__((target("f16c,avx"))) std::size_t half_to_float_f16c(const std::uint16_t* in,
                                                                   float* out, std::size_t count) {
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  return i;
}

__attribute__((target("f16c,avx"))) std::size_t float_to_half_f16c(const float* in,
                                                                   std::uint16_t* out,
                                                                   std::size_t count) {
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  return i;
}

// CPUID leaf 1: AVX (ECX bit 28) and F16C (bit 29), and the OS saving YMM registers (OSXSAVE,
// bit 27, then XCR0 bits 1-2). Read by hand: GCC's and clang's __builtin_cpu_supports differ.
__attribute__((target("xsave"))) bool detect_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned needed = (1u << 27) | (1u << 28) | (1u << 29);
  if ((ecx & needed) != needed) return false;
  return (_xgetbv(0) & 6) == 6;
}

bool has_f16c() {
  static const bool supported = detect_f16c();
  return supported;
}

}  // namespace
#endif

void half_to_float(const std::uint16_t* in, float* out, std::size_t count) {
  std::size_t i = 0;
#if defined(__x86_64__)
  if (has_f16c()) i = half_to_float_f16c(in, out, count);
#endif
  for (; i < count; ++i) out[i] = c10::detail::fp16_ieee_to_fp32_value(in[i]);
}

void float_to_half(const float* in, std::uint16_t* out, std::size_t count) {
  std::size_t i = 0;
#if defined(__x86_64__)
  if (has_f16c()) i = float_to_half_f16c(in, out, count);
#endif
  for (; i < count; ++i) out[i] = c10::detail::fp16_ieee_from_fp32_value(in[i]);
}

NpyRowReader::NpyRowReader(const std::filesystem::path& path) : path_(path) {
  const std::string name = path.string();
  std::error_code ec;
  const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(ErrorKind::kInput, name + ": cannot open: " + ec.message());
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::kInput, name + ": cannot open");
    header_ = read_header(in, name);
  }
  if (header_.descr != "<f4" && header_.descr != "<f2") {
    bad(name, "dtype " + header_.descr + " (float32 '<f4' or float16 '<f2' expected)");
  }
  if (header_.fortran_order) bad(name, "Fortran order (save a C-order array)");
  if (header_.shape.empty()) bad(name, "a 0-d array (rows expected)");
  row_size_ = product({header_.shape.begin() + 1, header_.shape.end()});
  const std::uintmax_t expected = header_.data_offset + header_.count() * header_.item_size();
  if (file_size != expected) {
    bad(name, "the file has " + std::to_string(file_size) + " bytes, its header says " +
                  std::to_string(expected) + (file_size < expected ? " (truncated)" : ""));
  }
  file_.reset(std::fopen(name.c_str(), "rb"));
  if (!file_) io_error(path, "cannot open");
  std::setvbuf(file_.get(), nullptr, _IOFBF, 1 << 20);
  if (std::fseek(file_.get(), static_cast<long>(header_.data_offset), SEEK_SET) != 0) {
    io_error(path, "seek failed");
  }
}

void NpyRowReader::read_rows(std::int64_t first, std::int64_t count, float* out) {
  if (first < 0 || count < 0 || first + count > rows()) {
    throw Error(ErrorKind::kInternal, path_.string() + ": rows " + std::to_string(first) + "+" +
                                          std::to_string(count) + " of " + std::to_string(rows()));
  }
  const std::size_t item = header_.item_size();
  if (first != next_row_) {
    const long offset = static_cast<long>(header_.data_offset + first * row_size_ * item);
    if (std::fseek(file_.get(), offset, SEEK_SET) != 0) io_error(path_, "seek failed");
  }
  const std::size_t n = static_cast<std::size_t>(count * row_size_);
  void* target = out;
  if (item == 2) {
    half_.resize(n);
    target = half_.data();
  }
  if (std::fread(target, item, n, file_.get()) != n) io_error(path_, "read failed");
  if (item == 2) half_to_float(half_.data(), out, n);
  next_row_ = first + count;
}

NpyRowWriter::NpyRowWriter(const std::filesystem::path& path, const std::string& descr,
                           std::vector<std::int64_t> row_shape)
    : path_(path), descr_(descr), row_shape_(std::move(row_shape)) {
  if (descr_ != "<f4" && descr_ != "<f2") {
    throw Error(ErrorKind::kInternal, "NpyRowWriter writes <f4 or <f2, not " + descr_);
  }
  row_size_ = product(row_shape_);
  // The placeholder reserves the widest first dimension, so the final header fits exactly.
  std::vector<std::int64_t> widest{INT64_MAX};
  widest.insert(widest.end(), row_shape_.begin(), row_shape_.end());
  const std::size_t reserved = header_text(descr_, widest).size();
  std::vector<std::int64_t> empty{0};
  empty.insert(empty.end(), row_shape_.begin(), row_shape_.end());
  const std::string header = header_text(descr_, empty, reserved);
  header_bytes_ = header.size();
  file_.reset(std::fopen(path.string().c_str(), "wb"));
  if (!file_) io_error(path, "cannot write");
  std::setvbuf(file_.get(), nullptr, _IOFBF, 1 << 20);
  if (std::fwrite(header.data(), 1, header.size(), file_.get()) != header.size()) {
    io_error(path, "write failed");
  }
}

void NpyRowWriter::write_rows(const float* values, std::int64_t count) {
  const std::size_t n = static_cast<std::size_t>(count * row_size_);
  bool ok = true;
  if (descr_ == "<f2") {
    half_.resize(n);
    float_to_half(values, half_.data(), n);
    ok = std::fwrite(half_.data(), 2, n, file_.get()) == n;
  } else {
    ok = std::fwrite(values, 4, n, file_.get()) == n;
  }
  if (!ok) io_error(path_, "write failed");
  rows_ += count;
}

void NpyRowWriter::finish() {
  std::vector<std::int64_t> shape{rows_};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  const std::string header = header_text(descr_, shape, header_bytes_);
  if (header.size() != header_bytes_) {
    throw Error(ErrorKind::kInternal, path_.string() + ": final .npy header does not fit");
  }
  std::FILE* file = file_.get();
  if (std::fseek(file, 0, SEEK_SET) != 0 ||
      std::fwrite(header.data(), 1, header.size(), file) != header.size() ||
      std::fflush(file) != 0) {
    io_error(path_, "write failed");
  }
  if (std::fclose(file_.release()) != 0) io_error(path_, "write failed");
}

}  // namespace mmsearch
