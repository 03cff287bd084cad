// Vector segments: building one in memory, writing it durably, and mapping one for reading.
#include "mmsearch/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "mmsearch/error.h"
#include "segment_internal.h"
#include "store_advice.h"
#include "vector_kernels.h"

namespace mmsearch {
namespace fs = std::filesystem;
namespace {

constexpr std::uint64_t kAlignment = 64;
// A scan checks each block just before reading it, and a candidate re-scored alone (from the
// approximate-search index) checks the whole block around it: 16 KiB blocks stay in L1 for the
// scan and cost a candidate 16 KiB of hashing. With 256 KiB blocks the 80 candidates of a 10M
// BLIP query hashed ~60 MB, ~20 ms (docs/PERFORMANCE.md).
constexpr std::uint64_t kScanBlockBytes = 16 * 1024;
// Owners, norms and radii: 2,048 rows (16 KiB of owners) per block, for the same reason.
constexpr std::int64_t kSideBlockRows = 2048;

std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

ArrayType array_type_for(VectorEncoding encoding) {
  switch (encoding) {
    case VectorEncoding::kFloat32:
      return ArrayType::kF32;
    case VectorEncoding::kFloat16:
      return ArrayType::kF16;
    case VectorEncoding::kInt8:
      return ArrayType::kI8;
  }
  return ArrayType::kF32;
}

std::int64_t scan_block_rows(std::uint64_t row_bytes) {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(kScanBlockBytes / row_bytes));
}

[[noreturn]] void io_error(const fs::path& path, const std::string& what, int error) {
  std::string reason = std::strerror(error);
  if (error == ENOSPC || error == EDQUOT) {
    reason = "disk full (" + reason + "); " + store_advice::kDiskFull;
  } else if (error == EROFS || error == EACCES || error == EPERM) {
    reason += "; the index is not writable here: " +
              store_advice::not_writable(path.parent_path().string());
  }
  throw Error(ErrorKind::kIndex,
              "cannot " + what + " vector segment " + path.string() + ": " + reason);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Building.

SegmentBuilder::SegmentBuilder(std::string model_id, std::int64_t items)
    : model_id_(std::move(model_id)), items_(items) {}

void SegmentBuilder::add_kind(VectorKind kind, VectorEncoding encoding, int vectors_per_item,
                              int dim, const std::vector<SegmentEntry>& entries) {
  const std::int64_t n = static_cast<std::int64_t>(entries.size());
  const std::int64_t rows = n * vectors_per_item;
  const std::size_t entry_floats = static_cast<std::size_t>(vectors_per_item) * dim;
  std::vector<float> values(static_cast<std::size_t>(rows) * dim);
  std::vector<std::int32_t> owners(2 * n);
  for (std::int64_t e = 0; e < n; ++e) {
    if (entry_floats > 0) {  // memcpy of a null vector's data is undefined even for 0 bytes
      std::memcpy(values.data() + e * entry_floats, entries[e].values,
                  entry_floats * sizeof(float));
    }
    owners[2 * e] = entries[e].item;
    owners[2 * e + 1] = entries[e].caption_index;
  }
  auto add = [&](std::string name, ArrayType type, std::int64_t array_rows, std::int64_t elems,
                 std::int64_t block_rows, const void* data) {
    PendingArray p;
    p.array.name = std::move(name);
    p.array.type = type;
    p.array.rows = array_rows;
    p.array.row_elems = elems;
    p.array.block_rows = block_rows;
    p.data.resize(p.array.data_bytes());
    if (!p.data.empty()) std::memcpy(p.data.data(), data, p.data.size());
    arrays_.push_back(std::move(p));
  };
  std::vector<std::uint8_t> encoded;
  std::vector<float> scales;
  kernels::encode_rows(encoding, values.data(), rows, dim, encoded, scales);
  const ArrayType type = array_type_for(encoding);
  const std::uint64_t row_bytes = dim * array_type_bytes(type);
  // An item of several vectors is one block: a re-score checks exactly the item it reads.
  const std::int64_t block_rows =
      vectors_per_item > 1 ? vectors_per_item : scan_block_rows(row_bytes);
  add(segment_array_name(kind), type, rows, dim, block_rows, encoded.data());
  if (encoding == VectorEncoding::kInt8) {
    add(segment_array_name(kind, "scale"), ArrayType::kF32, rows, 1, block_rows, scales.data());
  }
  add(segment_array_name(kind, "owner"), ArrayType::kI32, n, 2, kSideBlockRows, owners.data());

  if (vectors_per_item > 1) {
    // The first stage: per entry the mean m of its (decoded) vectors, |m|, and the radius
    // r = max_q |v_q - m|. For a unit query t, m.t <= max_q v_q.t <= m.t + r.
    std::vector<float> decoded(static_cast<std::size_t>(rows) * dim);
    kernels::decode_rows(type, encoded.data(), scales.data(), 0, rows, dim, decoded.data());
    std::vector<float> means(static_cast<std::size_t>(n) * dim, 0.0f), norms(n), radii(n);
    for (std::int64_t e = 0; e < n; ++e) {
      float* mean = means.data() + e * dim;
      const float* item = decoded.data() + e * entry_floats;
      for (int q = 0; q < vectors_per_item; ++q) {
        for (int d = 0; d < dim; ++d) mean[d] += item[q * dim + d];
      }
      double norm = 0.0;
      for (int d = 0; d < dim; ++d) {
        mean[d] /= static_cast<float>(vectors_per_item);
        norm += static_cast<double>(mean[d]) * mean[d];
      }
      norms[e] = static_cast<float>(std::sqrt(norm));
      double radius = 0.0;
      for (int q = 0; q < vectors_per_item; ++q) {
        double distance = 0.0;
        for (int d = 0; d < dim; ++d) {
          const double diff = static_cast<double>(item[q * dim + d]) - mean[d];
          distance += diff * diff;
        }
        radius = std::max(radius, distance);
      }
      radii[e] = static_cast<float>(std::sqrt(radius));
    }
    // The mean is encoded like the vectors; its bound is then loosened by the encoding's error
    // (below), so m'.t + r' still bounds the true maximum.
    std::vector<std::uint8_t> mean_encoded;
    std::vector<float> mean_scales;
    kernels::encode_rows(encoding, means.data(), n, dim, mean_encoded, mean_scales);
    std::vector<float> mean_decoded(static_cast<std::size_t>(n) * dim);
    kernels::decode_rows(type, mean_encoded.data(), mean_scales.data(), 0, n, dim,
                         mean_decoded.data());
    for (std::int64_t e = 0; e < n; ++e) {
      double error = 0.0;
      for (int d = 0; d < dim; ++d) {
        const double diff = static_cast<double>(means[e * dim + d]) - mean_decoded[e * dim + d];
        error += diff * diff;
      }
      radii[e] += static_cast<float>(std::sqrt(error)) * 1.001f + 1e-6f;
    }
    const std::int64_t mean_block_rows = scan_block_rows(row_bytes);
    add(segment_array_name(kind, "mean"), type, n, dim, mean_block_rows, mean_encoded.data());
    if (encoding == VectorEncoding::kInt8) {
      add(segment_array_name(kind, "mean.scale"), ArrayType::kF32, n, 1, mean_block_rows,
          mean_scales.data());
    }
    add(segment_array_name(kind, "mean_norm"), ArrayType::kF32, n, 1, kSideBlockRows, norms.data());
    add(segment_array_name(kind, "radius"), ArrayType::kF32, n, 1, kSideBlockRows, radii.data());
  }
  kinds_.push_back({kind, encoding, vectors_per_item, dim, n});
}

namespace {

// Offsets live in the header, whose length depends on them: lays out from a guessed start and
// grows it until the header fits in front of the data. Returns the prefix; sets the offsets.
std::vector<std::uint8_t> lay_out(SegmentHeader& header) {
  std::uint64_t data_start = 4096;
  while (true) {
    std::uint64_t offset = data_start;
    for (SegmentArray& a : header.arrays) {
      a.offset = offset;
      a.checksums_offset = a.offset + a.data_bytes();
      offset = align_up(a.checksums_offset + a.blocks() * sizeof(std::uint64_t), kAlignment);
    }
    std::vector<std::uint8_t> prefix = serialize_segment_prefix(header);
    if (prefix.size() <= data_start) return prefix;
    data_start = align_up(prefix.size(), 4096);
  }
}

std::uint64_t laid_out_size(const SegmentHeader& header, std::size_t prefix_bytes) {
  if (header.arrays.empty()) return prefix_bytes;
  const SegmentArray& last = header.arrays.back();
  return last.checksums_offset + last.blocks() * sizeof(std::uint64_t);
}

std::uint64_t block_checksum(const SegmentArray& a, const std::uint8_t* data, std::int64_t b) {
  const std::uint64_t begin = b * a.block_rows * a.row_bytes();
  const std::uint64_t end =
      std::min<std::uint64_t>(begin + a.block_rows * a.row_bytes(), a.data_bytes());
  return XXH3_64bits(data + begin, end - begin);
}

void sync_parent(const fs::path& path) {
  // The new name must be durable too before SQLite commits a row naming it.
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace

std::vector<std::uint8_t> SegmentBuilder::serialize() const {
  SegmentHeader header;
  header.model_id = model_id_;
  header.items = items_;
  header.kinds = kinds_;
  for (const PendingArray& p : arrays_) header.arrays.push_back(p.array);
  const std::vector<std::uint8_t> prefix = lay_out(header);
  std::vector<std::uint8_t> out(laid_out_size(header, prefix.size()), 0);
  std::memcpy(out.data(), prefix.data(), prefix.size());
  for (std::size_t i = 0; i < arrays_.size(); ++i) {
    const SegmentArray& a = header.arrays[i];
    const std::vector<std::uint8_t>& data = arrays_[i].data;
    if (!data.empty()) std::memcpy(out.data() + a.offset, data.data(), data.size());
    for (std::int64_t b = 0; b < a.blocks(); ++b) {
      const std::uint64_t sum = block_checksum(a, data.data(), b);
      std::memcpy(out.data() + a.checksums_offset + b * sizeof(sum), &sum, sizeof sum);
    }
  }
  return out;
}

void write_array_file(const fs::path& path, const std::string& model_id, std::int64_t items,
                      const std::vector<ArrayToWrite>& arrays) {
  SegmentHeader header;
  header.model_id = model_id;
  header.items = items;
  for (const ArrayToWrite& w : arrays) {
    SegmentArray a;
    a.name = w.name;
    a.type = w.type;
    a.rows = w.rows;
    a.row_elems = w.row_elems;
    a.block_rows = std::max<std::int64_t>(1, w.block_rows);
    header.arrays.push_back(a);
  }
  const std::vector<std::uint8_t> prefix = lay_out(header);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) io_error(path, "create", errno);
  auto fail = [&](const char* what, int error) {
    ::close(fd);
    ::unlink(path.c_str());
    io_error(path, what, error);
  };
  auto write_at = [&](const void* data, std::uint64_t size, std::uint64_t offset) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (size > 0) {
      const ssize_t n = ::pwrite(fd, p, std::min<std::uint64_t>(size, 1 << 26), offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write", errno);
      }
      p += n;
      offset += static_cast<std::uint64_t>(n);
      size -= static_cast<std::uint64_t>(n);
    }
  };
  // The padding between arrays reads as zeros: the file is extended to its size first.
  if (::ftruncate(fd, static_cast<off_t>(laid_out_size(header, prefix.size()))) != 0) {
    fail("size", errno);
  }
  write_at(prefix.data(), prefix.size(), 0);
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const SegmentArray& a = header.arrays[i];
    const auto* data = static_cast<const std::uint8_t*>(arrays[i].data);
    if (a.data_bytes() > 0) write_at(data, a.data_bytes(), a.offset);
    std::vector<std::uint64_t> sums(a.blocks());
    for (std::int64_t b = 0; b < a.blocks(); ++b) sums[b] = block_checksum(a, data, b);
    write_at(sums.data(), sums.size() * sizeof(std::uint64_t), a.checksums_offset);
  }
  if (::fsync(fd) != 0) fail("sync", errno);
  ::close(fd);
  sync_parent(path);
}

void write_segment_file(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) io_error(path, "create", errno);
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      ::unlink(path.c_str());
      io_error(path, "write", error);
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    ::unlink(path.c_str());
    io_error(path, "sync", error);
  }
  ::close(fd);
  sync_parent(path);
}

// ---------------------------------------------------------------------------------------------
// Reading.

std::shared_ptr<const SegmentFile> SegmentFile::open(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    throw Error(ErrorKind::kIndex,
                "cannot open vector segment " + path.string() + ": " + std::strerror(error) +
                    (error == ENOENT ? std::string("; the store is damaged: ") + kRebuildAdvice
                                     : std::string()));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::kIndex, "vector segment " + path.string() + " is not a regular file");
  }
  std::shared_ptr<SegmentFile> segment(new SegmentFile());
  segment->label_ = path.string();
  segment->size_ = static_cast<std::size_t>(st.st_size);
  if (segment->size_ > 0) {
    void* base = ::mmap(nullptr, segment->size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) {
      throw Error(ErrorKind::kIndex,
                  "cannot map vector segment " + path.string() + ": " + std::strerror(errno));
    }
    segment->base_ = static_cast<const std::uint8_t*>(base);
    segment->mapped_ = true;
  } else {
    ::close(fd);
  }
  segment->header_ = parse_segment_header(segment->base_, segment->size_, segment->label_);
  segment->index_blocks();
  return segment;
}

std::shared_ptr<const SegmentFile> SegmentFile::from_bytes(std::vector<std::uint8_t> bytes,
                                                           const std::string& label) {
  std::shared_ptr<SegmentFile> segment(new SegmentFile());
  segment->label_ = label;
  segment->owned_ = std::move(bytes);
  segment->base_ = segment->owned_.data();
  segment->size_ = segment->owned_.size();
  segment->header_ = parse_segment_header(segment->base_, segment->size_, segment->label_);
  segment->index_blocks();
  return segment;
}

void SegmentFile::index_blocks() {
  std::int64_t blocks = 0;
  for (const SegmentArray& a : header_.arrays) {
    first_block_.push_back(blocks);
    blocks += a.blocks();
  }
  verified_.reset(new std::atomic<bool>[static_cast<std::size_t>(blocks) + 1]);
  for (std::int64_t b = 0; b <= blocks; ++b) verified_[b].store(false, std::memory_order_relaxed);
}

SegmentFile::~SegmentFile() {
  if (mapped_) ::munmap(const_cast<std::uint8_t*>(base_), size_);
  if (read_fd_ >= 0) ::close(read_fd_);
}

void SegmentFile::check_block(const SegmentArray& array, std::int64_t block,
                              const std::uint8_t* bytes, std::uint64_t size) const {
  std::uint64_t stored = 0;
  std::memcpy(&stored, base_ + array.checksums_offset + block * sizeof stored, sizeof stored);
  if (XXH3_64bits(bytes, size) == stored) return;
  throw Error(ErrorKind::kIndex, "vector segment " + label_ + " is corrupt (" + array.name +
                                     " block " + std::to_string(block) + " fails its checksum); " +
                                     kRebuildAdvice);
}

const std::uint8_t* SegmentFile::read_rows(const SegmentArray& array, std::int64_t first,
                                           std::int64_t count,
                                           std::vector<std::uint8_t>& buffer) const {
  const std::uint64_t row_bytes = array.row_bytes();
  if (mapped_ && count > 0) {
    std::call_once(read_fd_once_, [&] { read_fd_ = ::open(label_.c_str(), O_RDONLY | O_CLOEXEC); });
  }
  if (!mapped_ || read_fd_ < 0 || count <= 0) {
    verify_rows(array, first, count);
    return data(array) + first * row_bytes;
  }
  const std::int64_t first_block = first / array.block_rows;
  const std::int64_t last_block = (first + count - 1) / array.block_rows;
  const std::uint64_t block_bytes = array.block_rows * row_bytes;
  const std::uint64_t begin = first_block * block_bytes;
  const std::uint64_t end = std::min((last_block + 1) * block_bytes, array.data_bytes());
  buffer.resize(end - begin);
  for (std::uint64_t done = 0; done < buffer.size();) {
    const ssize_t got = ::pread(read_fd_, buffer.data() + done, buffer.size() - done,
                                static_cast<off_t>(array.offset + begin + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw Error(ErrorKind::kIndex,
                  "cannot read vector segment " + label_ + ": " + std::strerror(errno));
    }
    if (got == 0) {  // shorter than its header says
      throw Error(ErrorKind::kIndex, "vector segment " + label_ + " is corrupt (" + array.name +
                                         " ends early); " + kRebuildAdvice);
    }
    done += static_cast<std::uint64_t>(got);
  }
  for (std::int64_t b = first_block; b <= last_block; ++b) {
    const std::uint64_t block_begin = b * block_bytes - begin;
    check_block(array, b, buffer.data() + block_begin,
                std::min(block_bytes, buffer.size() - block_begin));
  }
  return buffer.data() + (first * row_bytes - begin);
}

void SegmentFile::advise(const SegmentArray& array, Access access) const {
  if (!mapped_ || array.data_bytes() == 0) return;
  // madvise wants page-aligned ranges; widening to whole pages only covers neighbours.
  const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(base_ + array.offset) / page * page;
  const auto end = reinterpret_cast<std::uintptr_t>(base_ + array.offset + array.data_bytes());
  // Advice only: a kernel that declines it changes nothing but speed.
  ::madvise(reinterpret_cast<void*>(begin), end - begin,
            access == Access::kScan ? MADV_WILLNEED : MADV_RANDOM);
}

void SegmentFile::verify_rows(const SegmentArray& array, std::int64_t first,
                              std::int64_t count) const {
  if (count <= 0) return;
  const std::int64_t first_block = first / array.block_rows;
  const std::int64_t last_block = (first + count - 1) / array.block_rows;
  const std::uint64_t block_bytes = array.block_rows * array.row_bytes();
  // Which of this header's arrays it is (callers may pass a copy).
  std::int64_t base = -1;
  const SegmentArray* arrays = header_.arrays.data();
  if (&array >= arrays && &array < arrays + header_.arrays.size()) {
    base = first_block_[&array - arrays];
  } else {
    for (std::size_t i = 0; i < header_.arrays.size(); ++i) {
      if (header_.arrays[i].name == array.name) base = first_block_[i];
    }
  }
  for (std::int64_t b = first_block; b <= last_block && b < array.blocks(); ++b) {
    if (base >= 0 && verified_[base + b].load(std::memory_order_acquire)) continue;
    const std::uint64_t begin = b * block_bytes;
    const std::uint64_t end = std::min(begin + block_bytes, array.data_bytes());
    check_block(array, b, base_ + array.offset + begin, end - begin);
    if (base >= 0) verified_[base + b].store(true, std::memory_order_release);
  }
}

}  // namespace mmsearch
