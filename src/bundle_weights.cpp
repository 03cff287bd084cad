#include "mmsearch/bundle_weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

[[noreturn]] void cannot(const fs::path& path, const std::string& what) {
  throw Error(ErrorKind::kModel,
              path.string() + ": cannot " + what + " the weight file: " + std::strerror(errno));
}

torch::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "bf16") return torch::kBFloat16;
  if (dtype == "fp16") return torch::kFloat16;
  return torch::kFloat32;
}

}  // namespace

std::shared_ptr<const WeightFile> WeightFile::open(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) cannot(path, "open");
  std::shared_ptr<WeightFile> file(new WeightFile());
  file->path_ = path;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0) {
    ::close(fd);
    file->layout_ = parse_weight_layout("", 0, path);  // refuses it, naming the file
  }
  file->size_ = static_cast<std::size_t>(size);
  // Private and writable: nothing writes weights, but a kernel that did would get a copy of the
  // page instead of a crash, and the file stays as exported.
  void* map = ::mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    errno = map_errno;
    cannot(path, "map");
  }
  file->map_ = map;
  file->layout_ = parse_weight_layout(map, file->size_, path);
  return file;
}

WeightFile::~WeightFile() {
  if (map_) ::munmap(map_, size_);
}

const std::vector<std::string>& WeightFile::module_weights(const std::string& role) const {
  static const std::vector<std::string> none;
  const auto it = layout_.modules.find(role);
  return it == layout_.modules.end() ? none : it->second;
}

torch::Tensor WeightFile::tensor(const std::string& name) const {
  const auto it = layout_.tensors.find(name);
  if (it == layout_.tensors.end()) {
    throw Error(ErrorKind::kModel, path_.string() + ": no weight named " + name);
  }
  const WeightEntry& e = it->second;
  auto keep = shared_from_this();  // the tensor's storage keeps the mapping alive
  return torch::from_blob(
      static_cast<char*>(map_) + e.offset, e.shape, [keep](void*) {},
      torch::TensorOptions().dtype(scalar_type(e.dtype)));
}

void WeightFile::release(const std::string& name) const {
  const auto it = layout_.tensors.find(name);
  if (it == layout_.tensors.end()) return;
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t begin = (it->second.offset + page - 1) / page * page;
  const std::size_t end = (it->second.offset + it->second.bytes) / page * page;
  // Only whole pages of this weight: a neighbour's view may still be in use. Nothing writes the
  // weights, so the dropped pages are the file's and read back unchanged; failure only costs
  // memory.
  if (end > begin) ::madvise(static_cast<char*>(map_) + begin, end - begin, MADV_DONTNEED);
}

}  // namespace mmsearch
