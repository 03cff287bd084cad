// Vector segments: the immutable, memory-mapped, checksummed files that hold a store's vectors
// next to its SQLite database (docs/STORE.md has the design and the measurements behind it).
//
// A segment holds the vectors of one batch of files of one model: for each stored kind
// (image_proj, image_embed, text_proj, multimodal) one array of encoded rows, an owner array
// saying which item (the file's position in the segment) and caption each entry belongs to,
// and, for kinds with several vectors per item (BLIP-2's 32 query vectors), a first-stage
// summary per item (see search_plan.h). SQLite stays the source of truth: a segment is only
// read through a `segments` row that a committed transaction wrote, and files point at their
// (segment, row); a segment file that no committed row names is an orphan and is deleted.
//
// File layout (version 1), all little-endian:
//   bytes 0-7    magic "MMSVSEG\0"
//   bytes 8-11   format version (uint32)
//   bytes 12-15  header length H (uint32)
//   bytes 16..   the header: UTF-8 JSON (model id, item count, kinds, arrays with offsets)
//   then         XXH3-64 of the header JSON (uint64)
//   then         the arrays, each at a 64-byte aligned offset, each followed by one XXH3-64
//                per block of `block_rows` rows, so that a reader can check exactly the
//                blocks it reads (a scan checks every block it scans, a candidate re-score
//                checks one item) and never interprets damaged bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mmsearch/rules.h"

namespace mmsearch {

// How stored vectors are encoded. fp32 is exact; fp16 halves the disk and the bytes a scan
// reads (relative error ~5e-4 per component); int8 quarters them with one float scale per
// vector (max |x| / 127).
enum class VectorEncoding { kFloat32, kFloat16, kInt8 };
const char* to_string(VectorEncoding encoding);  // "fp32", "fp16", "int8"
// Inverse of to_string; throws Error(kUsage) listing the valid names.
VectorEncoding vector_encoding_from_string(std::string_view name);

enum class ArrayType : std::uint32_t { kF32 = 1, kF16 = 2, kI8 = 3, kI32 = 4 };
std::size_t array_type_bytes(ArrayType type);

struct SegmentArray {
  std::string name;
  ArrayType type = ArrayType::kF32;
  std::int64_t rows = 0;
  std::int64_t row_elems = 0;  // elements per row
  std::uint64_t offset = 0;    // from the start of the file
  std::int64_t block_rows = 1;
  std::uint64_t checksums_offset = 0;  // one uint64 per block
  std::uint64_t row_bytes() const { return row_elems * array_type_bytes(type); }
  std::uint64_t data_bytes() const { return rows * row_bytes(); }
  std::int64_t blocks() const { return rows == 0 ? 0 : (rows + block_rows - 1) / block_rows; }
};

// What one kind holds in a segment.
struct SegmentKind {
  VectorKind kind = VectorKind::kImageProj;
  VectorEncoding encoding = VectorEncoding::kFloat16;
  int vectors_per_item = 1;  // rows of `dim` per entry
  int dim = 0;
  std::int64_t entries = 0;  // items (image kinds) or captions (caption kinds)
};

struct SegmentHeader {
  static constexpr std::uint32_t kFormatVersion = 1;
  std::string model_id;
  std::int64_t items = 0;
  std::vector<SegmentKind> kinds;
  std::vector<SegmentArray> arrays;
  const SegmentKind* find_kind(VectorKind kind) const;
  const SegmentArray* find_array(std::string_view name) const;
};

// Parses and checks the fixed prefix and the header of a segment held in `bytes` (the whole
// file or at least its header). Throws Error(kIndex) with `label` (the file) and the reason for
// anything malformed: bad magic, a newer version, a header checksum mismatch, arrays outside
// the file or overlapping, shapes that disagree. The libFuzzer target fuzz_segment feeds it.
SegmentHeader parse_segment_header(const std::uint8_t* bytes, std::size_t size,
                                   const std::string& label);

// A read-only view of one segment file, memory-mapped (or held in memory for vectors that are
// not in a file, e.g. an old store's inline vectors). Thread-safe for reading.
class SegmentFile {
 public:
  static std::shared_ptr<const SegmentFile> open(const std::filesystem::path& path);
  static std::shared_ptr<const SegmentFile> from_bytes(std::vector<std::uint8_t> bytes,
                                                       const std::string& label);
  ~SegmentFile();
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  const SegmentHeader& header() const { return header_; }
  const std::string& label() const { return label_; }
  std::size_t file_bytes() const { return size_; }
  const std::uint8_t* data(const SegmentArray& array) const { return base_ + array.offset; }
  // Tells the kernel how an array will be read: kScan reads it all (read ahead, in the
  // background), kRandom reads a few rows here and there (no read-ahead, so a re-score of 16
  // KiB reads 16 KiB from disk, not 128 KiB, and the process maps only what it touches).
  enum class Access { kScan, kRandom };
  void advise(const SegmentArray& array, Access access) const;
  // Checks the checksums of every block overlapping rows [first, first + count) of `array`;
  // throws Error(kIndex) naming the file, the array and the block on a mismatch. A block that
  // passed once is not hashed again by this object (the file is immutable): a long-lived
  // process pays for each block once.
  void verify_rows(const SegmentArray& array, std::int64_t first, std::int64_t count) const;
  // Reads the blocks holding rows [first, first + count) of `array` with pread into `buffer`,
  // checks their checksums and returns where row `first` is: for a few rows here and there, as
  // a re-score reads them. Through the mapping, each touched row would map the page cache's
  // large folio around it: 2,048 BLIP-2 candidates put ~3 GB of shared pages in the process's
  // RSS. An in-memory segment, or a file that cannot be opened again (no descriptor left),
  // is read through the mapping instead. Throws Error(kIndex) on a mismatch or a read error.
  const std::uint8_t* read_rows(const SegmentArray& array, std::int64_t first, std::int64_t count,
                                std::vector<std::uint8_t>& buffer) const;

 private:
  SegmentFile() = default;
  std::string label_;
  const std::uint8_t* base_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
  std::vector<std::uint8_t> owned_;
  SegmentHeader header_;
  void index_blocks();
  std::vector<std::int64_t> first_block_;  // per array of header_: its first block's index
  std::unique_ptr<std::atomic<bool>[]> verified_;
  // The file, opened on the first read_rows (a query touches few of a large store's segments).
  mutable std::once_flag read_fd_once_;
  mutable int read_fd_ = -1;
  // Throws Error(kIndex) unless `bytes` (block `block` of `array`) match its stored checksum.
  void check_block(const SegmentArray& array, std::int64_t block, const std::uint8_t* bytes,
                   std::uint64_t size) const;
};

// The vectors of one entry (an item's image vectors or one caption's vectors), as given.
struct SegmentEntry {
  int item = 0;                   // position of the file in the segment
  int caption_index = -1;         // -1 for image kinds
  const float* values = nullptr;  // vectors_per_item * dim floats
};

// Builds a segment in memory: add every kind's entries (ordered by item, then caption), then
// serialize(). Values are encoded as given by `encoding`; kinds with several vectors per item
// also get their first-stage summary (mean, its norm and the radius around it), computed
// from the encoded-then-decoded vectors so that its bounds hold for what is scored.
class SegmentBuilder {
 public:
  SegmentBuilder(std::string model_id, std::int64_t items);
  void add_kind(VectorKind kind, VectorEncoding encoding, int vectors_per_item, int dim,
                const std::vector<SegmentEntry>& entries);
  std::vector<std::uint8_t> serialize() const;

 private:
  struct PendingArray {
    SegmentArray array;
    std::vector<std::uint8_t> data;
  };
  std::string model_id_;
  std::int64_t items_;
  std::vector<SegmentKind> kinds_;
  std::vector<PendingArray> arrays_;
};

// Writes `bytes` to `path` and makes them durable (fsync of the file and its folder) before
// returning; throws Error(kIndex) naming the path (disk full included).
void write_segment_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes);

// One array for write_array_file: its shape and its data (rows * row_elems elements of `type`),
// which must stay valid during the call.
struct ArrayToWrite {
  std::string name;
  ArrayType type = ArrayType::kF32;
  std::int64_t rows = 0;
  std::int64_t row_elems = 1;
  std::int64_t block_rows = 1;
  const void* data = nullptr;
};

// Writes a file in the segment container format (same prefix, header and per-block checksums)
// holding `arrays` and no kinds, streamed from the callers' buffers rather than assembled in
// memory, and durable on return like write_segment_file. For files that are not a batch of
// vectors but live beside them (the approximate-search index, ann_index.h). The file is
// created with O_EXCL; on failure nothing is left at `path`.
void write_array_file(const std::filesystem::path& path, const std::string& model_id,
                      std::int64_t items, const std::vector<ArrayToWrite>& arrays);

// Array names: "<kind>" (encoded rows), "<kind>.scale" (int8 scales), "<kind>.owner" (item,
// caption pairs), "<kind>.mean" / "<kind>.mean.scale" / "<kind>.mean_norm" / "<kind>.radius".
std::string segment_array_name(VectorKind kind, std::string_view part = "");

}  // namespace mmsearch
