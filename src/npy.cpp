#include "mmsearch/npy.h"

#include <cstring>
#include <fstream>
#include <numeric>
#include <regex>

#include "mmsearch/error.h"

namespace mmsearch {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void bad(const std::filesystem::path& path, const std::string& reason) {
  throw Error(ErrorKind::kInput, path.string() + ": not a supported .npy file: " + reason);
}

void write_array(const std::filesystem::path& path, const std::vector<std::int64_t>& shape,
                 const char* descr, const void* data, std::size_t item_size) {
  std::string shape_text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    shape_text += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    if (i + 1 < shape.size()) shape_text += " ";
  }
  shape_text += ")";
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // Magic (6) + version (2) + header length (2) + header + '\n' is padded to 64 bytes.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": cannot write");
  out.write(kMagic, 6);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const std::uint16_t length = static_cast<std::uint16_t>(header.size());
  const char length_bytes[2] = {static_cast<char>(length & 0xff), static_cast<char>(length >> 8)};
  out.write(length_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const std::int64_t count =
      std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(count * item_size));
  if (!out) throw Error(ErrorKind::kInput, path.string() + ": write failed");
}

}  // namespace

std::int64_t NpyArray::size() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

NpyArray read_npy(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kInput, path.string() + ": cannot open");
  char magic[6];
  unsigned char version[2];
  in.read(magic, 6);
  in.read(reinterpret_cast<char*>(version), 2);
  if (!in || std::memcmp(magic, kMagic, 6) != 0) bad(path, "bad magic");
  std::uint32_t header_length = 0;
  if (version[0] == 1) {
    unsigned char bytes[2];
    in.read(reinterpret_cast<char*>(bytes), 2);
    header_length = bytes[0] | (bytes[1] << 8);
  } else {
    unsigned char bytes[4];
    in.read(reinterpret_cast<char*>(bytes), 4);
    header_length = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (std::uint32_t(bytes[3]) << 24);
  }
  std::string header(header_length, '\0');
  in.read(header.data(), header_length);
  if (!in) bad(path, "truncated header");
  std::smatch match;
  if (!std::regex_search(header, match, std::regex("'descr':\\s*'([^']+)'"))) bad(path, "no descr");
  NpyArray array;
  array.dtype = match[1];
  if (header.find("'fortran_order': False") == std::string::npos) bad(path, "Fortran order");
  if (!std::regex_search(header, match, std::regex("'shape':\\s*\\(([^)]*)\\)"))) {
    bad(path, "no shape");
  }
  const std::string dims = match[1];
  const std::regex number("\\d+");
  std::sregex_iterator it(dims.begin(), dims.end(), number), end;
  for (; it != end; ++it) array.shape.push_back(std::stoll(it->str()));
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
    bad(path, "dtype " + array.dtype);
  }
  if (!in) bad(path, "truncated data");
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

}  // namespace mmsearch
