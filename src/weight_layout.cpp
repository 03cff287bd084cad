#include "mmsearch/weight_layout.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "json_number.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

constexpr char kMagic[8] = {'M', 'M', 'S', 'T', 'E', 'N', 'S', '\0'};
constexpr std::size_t kAlign = 64;

std::size_t aligned(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

[[noreturn]] void bad_file(const fs::path& origin, const std::string& why) {
  throw Error(ErrorKind::kModel,
              origin.string() + ": " + why + "; re-export the bundle (scripts/export_models.py)");
}

// A JSON integer that T holds (json_number.h): a float such as 5e75 must not be converted.
template <typename T>
T integer(const nlohmann::json& value, const fs::path& origin, const std::string& what) {
  if (!is_json_integer_of<T>(value)) bad_file(origin, what + " is not an integer in range");
  return value.get<T>();
}

std::size_t item_bytes(const std::string& dtype) {
  if (dtype == "fp32") return 4;
  if (dtype == "bf16" || dtype == "fp16") return 2;
  return 0;
}

}  // namespace

WeightLayout parse_weight_layout(const void* data, std::size_t size, const fs::path& origin) {
  const auto* bytes = static_cast<const char*>(data);
  if (size < 16 || std::memcmp(bytes, kMagic, sizeof kMagic) != 0) {
    bad_file(origin, "not an mmsearch weight file (bad magic)");
  }
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) {
    header_length = header_length << 8 | static_cast<unsigned char>(bytes[8 + i]);
  }
  if (header_length > size - 16) bad_file(origin, "the header runs past the end of the file");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 16, bytes + 16 + header_length);
  } catch (const nlohmann::json::exception& e) {
    bad_file(origin, std::string("unreadable header: ") + e.what());
  }
  if (!header.is_object() || !header.contains("format") || header["format"] != "mmsearch-tensors" ||
      !header.contains("version") || header["version"] != 1) {
    bad_file(origin, "not a version-1 mmsearch-tensors file");
  }
  const std::size_t data_start = aligned(16 + header_length);
  WeightLayout layout;
  try {
    for (const auto& [name, e] : header.at("tensors").items()) {
      WeightEntry entry{e.at("dtype").get<std::string>(), {}, 0, 0};
      if (!e.at("shape").is_array()) bad_file(origin, "tensor " + name + " has a bad shape");
      for (const auto& dim : e.at("shape")) {
        entry.shape.push_back(integer<std::int64_t>(dim, origin, "a dimension of " + name));
      }
      const std::size_t item = item_bytes(entry.dtype);
      if (item == 0) bad_file(origin, "tensor " + name + " has an unknown dtype");
      std::size_t count = 1;
      for (const std::int64_t dim : entry.shape) {
        if (dim < 0 || (dim > 0 && count > size / static_cast<std::size_t>(dim))) {
          bad_file(origin, "tensor " + name + " has a bad shape");
        }
        count *= static_cast<std::size_t>(dim);
      }
      const auto offset = integer<std::uint64_t>(e.at("offset"), origin, "the offset of " + name);
      entry.bytes = integer<std::uint64_t>(e.at("bytes"), origin, "the size of " + name);
      if (entry.bytes != count * item || offset % kAlign != 0 || data_start > size ||
          offset > size - data_start || entry.bytes > size - data_start - offset) {
        bad_file(origin, "tensor " + name + " lies outside the file or has the wrong size");
      }
      entry.offset = data_start + offset;
      layout.tensors.emplace(name, std::move(entry));
    }
    for (const auto& [role, names] : header.at("modules").items()) {
      auto list = names.get<std::vector<std::string>>();
      for (const auto& name : list) {
        if (!layout.tensors.count(name))
          bad_file(origin, "module " + role + " uses unknown " + name);
      }
      layout.modules.emplace(role, std::move(list));
    }
  } catch (const nlohmann::json::exception& e) {
    bad_file(origin, std::string("bad header: ") + e.what());
  }
  return layout;
}

}  // namespace mmsearch
