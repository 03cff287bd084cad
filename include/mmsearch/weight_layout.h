// The layout of a bundle weight file (weights.bin, format in models/README.md): what its header
// says, checked against the file's size. Kept apart from the mapping and the tensors
// (bundle_weights.h) so that the parser builds without libtorch, for its fuzz target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mmsearch {

struct WeightEntry {
  std::string dtype;  // "fp32" | "bf16" | "fp16"
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // from the start of the file
  std::size_t bytes = 0;   // elements × element size
};

struct WeightLayout {
  std::map<std::string, WeightEntry> tensors;               // by model weight name
  std::map<std::string, std::vector<std::string>> modules;  // role -> the weights it uses
};

// Parses and checks the `size` bytes of a weight file: magic, header length, JSON, and that
// every tensor lies inside the file, 64-byte aligned, with the size its dtype and shape give,
// and every module names stored tensors. Throws Error(kModel) naming `origin` and the reason.
WeightLayout parse_weight_layout(const void* data, std::size_t size,
                                 const std::filesystem::path& origin);

}  // namespace mmsearch
