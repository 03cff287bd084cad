// The segment file's fixed prefix and JSON header: parsing with every check a damaged or
// hostile file needs, and the matching serialisation. No libtorch here, so that the libFuzzer
// target can compile this file on its own.
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "mmsearch/error.h"
#include "mmsearch/segment.h"
#include "segment_internal.h"

namespace mmsearch {
namespace {

constexpr char kMagic[8] = {'M', 'M', 'S', 'V', 'S', 'E', 'G', '\0'};
constexpr std::size_t kPrefixBytes = 16;
// A header describes a few dozen arrays; anything much larger is not a segment.
constexpr std::uint32_t kMaxHeaderBytes = 1 << 20;
constexpr std::int64_t kMaxDim = 1 << 16;

[[noreturn]] void corrupt(const std::string& label, const std::string& reason) {
  throw Error(ErrorKind::kIndex,
              "vector segment " + label + " is corrupt (" + reason + "); " + kRebuildAdvice);
}

std::uint32_t read_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

const char* array_type_name(ArrayType type) {
  switch (type) {
    case ArrayType::kF32:
      return "f32";
    case ArrayType::kF16:
      return "f16";
    case ArrayType::kI8:
      return "i8";
    case ArrayType::kI32:
      return "i32";
  }
  return "?";
}

ArrayType array_type_from_name(const std::string& name, const std::string& label) {
  for (ArrayType t : {ArrayType::kF32, ArrayType::kF16, ArrayType::kI8, ArrayType::kI32}) {
    if (name == array_type_name(t)) return t;
  }
  corrupt(label, "unknown array type '" + name + "'");
}

// Reads a non-negative integer field, refusing anything else (a fuzzer's favourite).
std::int64_t count_field(const nlohmann::json& j, const char* key, const std::string& label,
                         std::int64_t max = std::numeric_limits<std::int64_t>::max() / 4) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) corrupt(label, std::string("no integer ") + key);
  const std::int64_t v = it->get<std::int64_t>();
  if (v < 0 || v > max) corrupt(label, std::string(key) + " out of range");
  return v;
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& label) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) corrupt(label, std::string("no string ") + key);
  return it->get<std::string>();
}

}  // namespace

const char* to_string(VectorEncoding encoding) {
  switch (encoding) {
    case VectorEncoding::kFloat32:
      return "fp32";
    case VectorEncoding::kFloat16:
      return "fp16";
    case VectorEncoding::kInt8:
      return "int8";
  }
  return "?";
}

VectorEncoding vector_encoding_from_string(std::string_view name) {
  for (VectorEncoding e :
       {VectorEncoding::kFloat32, VectorEncoding::kFloat16, VectorEncoding::kInt8}) {
    if (name == to_string(e)) return e;
  }
  throw Error(ErrorKind::kUsage,
              "unknown vector encoding '" + std::string(name) + "' (use fp32, fp16 or int8)");
}

std::size_t array_type_bytes(ArrayType type) {
  switch (type) {
    case ArrayType::kF32:
    case ArrayType::kI32:
      return 4;
    case ArrayType::kF16:
      return 2;
    case ArrayType::kI8:
      return 1;
  }
  return 0;
}

std::string segment_array_name(VectorKind kind, std::string_view part) {
  std::string name = to_string(kind);
  if (!part.empty()) name += "." + std::string(part);
  return name;
}

const SegmentKind* SegmentHeader::find_kind(VectorKind kind) const {
  for (const SegmentKind& k : kinds) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

const SegmentArray* SegmentHeader::find_array(std::string_view name) const {
  for (const SegmentArray& a : arrays) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::vector<std::uint8_t> serialize_segment_prefix(const SegmentHeader& header) {
  nlohmann::json j;
  j["model_id"] = header.model_id;
  j["items"] = header.items;
  j["kinds"] = nlohmann::json::array();
  for (const SegmentKind& k : header.kinds) {
    j["kinds"].push_back({{"kind", to_string(k.kind)},
                          {"encoding", to_string(k.encoding)},
                          {"vectors_per_item", k.vectors_per_item},
                          {"dim", k.dim},
                          {"entries", k.entries}});
  }
  j["arrays"] = nlohmann::json::array();
  for (const SegmentArray& a : header.arrays) {
    j["arrays"].push_back({{"name", a.name},
                           {"type", array_type_name(a.type)},
                           {"rows", a.rows},
                           {"row_elems", a.row_elems},
                           {"offset", a.offset},
                           {"block_rows", a.block_rows},
                           {"checksums_offset", a.checksums_offset}});
  }
  // The model id is a label here (the database is what links a segment to its model). A
  // damaged store may hand over bytes that are not UTF-8 (found by fuzz_store), which must not
  // stop the segment from being written.
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::vector<std::uint8_t> out(kPrefixBytes + text.size() + sizeof(std::uint64_t));
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  const std::uint32_t version = SegmentHeader::kFormatVersion;
  const auto length = static_cast<std::uint32_t>(text.size());
  std::memcpy(out.data() + 8, &version, 4);
  std::memcpy(out.data() + 12, &length, 4);
  std::memcpy(out.data() + kPrefixBytes, text.data(), text.size());
  const std::uint64_t checksum = XXH3_64bits(text.data(), text.size());
  std::memcpy(out.data() + kPrefixBytes + text.size(), &checksum, sizeof checksum);
  return out;
}

std::size_t segment_prefix_bytes(std::size_t header_json_bytes) {
  return kPrefixBytes + header_json_bytes + sizeof(std::uint64_t);
}

SegmentHeader parse_segment_header(const std::uint8_t* bytes, std::size_t size,
                                   const std::string& label) {
  if (size < kPrefixBytes || std::memcmp(bytes, kMagic, sizeof kMagic) != 0) {
    corrupt(label, "not a vector segment: bad magic");
  }
  const std::uint32_t version = read_u32(bytes + 8);
  if (version > SegmentHeader::kFormatVersion) {
    throw Error(ErrorKind::kIndex, "vector segment " + label + " has format version " +
                                       std::to_string(version) +
                                       ", written by a newer mmsearch; upgrade mmsearch");
  }
  if (version == 0) corrupt(label, "format version 0");
  const std::uint32_t length = read_u32(bytes + 12);
  if (length > kMaxHeaderBytes || segment_prefix_bytes(length) > size) {
    corrupt(label, "header length out of range");
  }
  const char* text = reinterpret_cast<const char*>(bytes + kPrefixBytes);
  std::uint64_t stored = 0;
  std::memcpy(&stored, bytes + kPrefixBytes + length, sizeof stored);
  if (XXH3_64bits(text, length) != stored) corrupt(label, "header checksum mismatch");

  const nlohmann::json j = nlohmann::json::parse(text, text + length, nullptr, false);
  if (!j.is_object()) corrupt(label, "header is not a JSON object");
  SegmentHeader header;
  header.model_id = string_field(j, "model_id", label);
  header.items = count_field(j, "items", label, std::numeric_limits<std::int32_t>::max());
  const auto kinds = j.find("kinds");
  const auto arrays = j.find("arrays");
  if (kinds == j.end() || !kinds->is_array() || arrays == j.end() || !arrays->is_array()) {
    corrupt(label, "header lacks kinds or arrays");
  }
  for (const auto& k : *kinds) {
    if (!k.is_object()) corrupt(label, "kind entry is not an object");
    SegmentKind kind;
    try {
      kind.kind = vector_kind_from_string(string_field(k, "kind", label));
      kind.encoding = vector_encoding_from_string(string_field(k, "encoding", label));
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kUsage) throw;
      corrupt(label, e.what());
    }
    kind.vectors_per_item = static_cast<int>(count_field(k, "vectors_per_item", label, 4096));
    kind.dim = static_cast<int>(count_field(k, "dim", label, kMaxDim));
    kind.entries = count_field(k, "entries", label, std::numeric_limits<std::int32_t>::max());
    if (kind.vectors_per_item == 0 || kind.dim == 0) corrupt(label, "empty vector shape");
    if (header.find_kind(kind.kind)) corrupt(label, "kind listed twice");
    header.kinds.push_back(kind);
  }
  std::uint64_t end_of_previous = segment_prefix_bytes(length);
  for (const auto& a : *arrays) {
    if (!a.is_object()) corrupt(label, "array entry is not an object");
    SegmentArray array;
    array.name = string_field(a, "name", label);
    array.type = array_type_from_name(string_field(a, "type", label), label);
    array.rows = count_field(a, "rows", label, std::int64_t{1} << 40);
    array.row_elems = count_field(a, "row_elems", label, kMaxDim);
    array.offset = count_field(a, "offset", label);
    array.block_rows = count_field(a, "block_rows", label, std::int64_t{1} << 40);
    array.checksums_offset = count_field(a, "checksums_offset", label);
    if (array.block_rows == 0 || array.row_elems == 0) corrupt(label, array.name + ": empty rows");
    // Arrays follow each other in file order; each one's checksums follow its data.
    const std::uint64_t data_end = array.offset + array.data_bytes();
    const std::uint64_t sums_end = array.checksums_offset + array.blocks() * sizeof(std::uint64_t);
    if (array.offset < end_of_previous || array.offset % 64 != 0 ||
        array.checksums_offset < data_end || sums_end > size || data_end > size) {
      corrupt(label, array.name + " lies outside the file or overlaps another array");
    }
    if (header.find_array(array.name)) corrupt(label, array.name + " listed twice");
    end_of_previous = sums_end;
    header.arrays.push_back(std::move(array));
  }
  // Every kind needs its vectors and owners with the rows its shape implies.
  for (const SegmentKind& k : header.kinds) {
    const SegmentArray* vectors = header.find_array(segment_array_name(k.kind));
    const SegmentArray* owners = header.find_array(segment_array_name(k.kind, "owner"));
    if (!vectors || !owners) corrupt(label, std::string(to_string(k.kind)) + " arrays missing");
    const ArrayType expected = k.encoding == VectorEncoding::kFloat32   ? ArrayType::kF32
                               : k.encoding == VectorEncoding::kFloat16 ? ArrayType::kF16
                                                                        : ArrayType::kI8;
    if (vectors->type != expected || vectors->row_elems != k.dim ||
        vectors->rows != k.entries * k.vectors_per_item || owners->type != ArrayType::kI32 ||
        owners->row_elems != 2 || owners->rows != k.entries) {
      corrupt(label, std::string(to_string(k.kind)) + " arrays disagree with its shape");
    }
    if (k.encoding == VectorEncoding::kInt8) {
      const SegmentArray* scales = header.find_array(segment_array_name(k.kind, "scale"));
      if (!scales || scales->type != ArrayType::kF32 || scales->row_elems != 1 ||
          scales->rows != vectors->rows) {
        corrupt(label, std::string(to_string(k.kind)) + " scales missing");
      }
    }
  }
  return header;
}

}  // namespace mmsearch
