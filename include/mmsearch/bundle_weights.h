// The weight file of a format-2 bundle (weights.bin; layout in models/README.md): every weight
// of the three modules stored once, by its model name, with the names each module uses. It is
// mapped, not read: a module's weights come off the disk only when that module is loaded, so a
// text query never reads the vision encoder.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mmsearch/weight_layout.h"

namespace mmsearch {

class WeightFile : public std::enable_shared_from_this<WeightFile> {
 public:
  // Maps and checks the file: magic, header, and that every tensor lies inside the file with
  // the size its dtype and shape give. Throws Error(kModel) naming the file and the reason.
  static std::shared_ptr<const WeightFile> open(const std::filesystem::path& path);
  ~WeightFile();
  WeightFile(const WeightFile&) = delete;
  WeightFile& operator=(const WeightFile&) = delete;

  // The names of the weights `role` ("image", "text", "multimodal") uses; empty if none.
  const std::vector<std::string>& module_weights(const std::string& role) const;
  // A tensor over the mapping (no copy; the mapping is private, so writes would copy a page and
  // never reach the file). It keeps the mapping alive. Throws Error(kModel) for an unknown name.
  torch::Tensor tensor(const std::string& name) const;
  // Drops the resident pages that lie wholly inside weight `name`, for a caller that holds its
  // own converted copy: a module's fp32 pages then do not pile up while it converts to bf16. A
  // later read of the weight faults its pages in from the file again. Unknown names are ignored.
  void release(const std::string& name) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  WeightFile() = default;

  std::filesystem::path path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  WeightLayout layout_;
};

}  // namespace mmsearch
