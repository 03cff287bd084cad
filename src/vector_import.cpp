#include "mmsearch/vector_import.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>

#include "mmsearch/error.h"
#include "mmsearch/npy.h"
#include "mmsearch/scope_model.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

constexpr float kNormTolerance = 1e-2f;
constexpr float kExactNorm = 1e-5f;  // a float32 sum of squares of a unit vector stays closer
constexpr std::size_t kMaxBatchItems = 16384;
constexpr std::size_t kBatchBytes = std::size_t{160} << 20;  // two batches are in flight; each becomes one segment of ~80 MiB (fp16), past the size merges stop at

[[noreturn]] void input_error(const std::string& message) {
  throw Error(ErrorKind::kInput, message);
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return text + "]";
}

// Reads metadata.jsonl one item per line; line numbers are 1-based.
class MetadataReader {
 public:
  explicit MetadataReader(const fs::path& path) : in_(path, std::ios::binary), source_(path) {
    if (!in_) input_error(source_ + ": cannot open (every vector folder has one, see models/README.md)");
  }
  bool next(VectorItem& item) {
    if (!std::getline(in_, text_)) {
      if (in_.bad()) input_error(source_ + ": read error");
      return false;
    }
    ++line_;
    item = parse_metadata_line(text_, source_, line_);
    return true;
  }

 private:
  std::ifstream in_;
  std::string source_;
  std::string text_;
  std::int64_t line_ = 0;
};

const VectorArrayFile& array_file(VectorKind kind) {
  for (const auto& array : vector_array_files()) {
    if (array.kind == kind) return array;
  }
  throw Error(ErrorKind::kInternal, "no array file for a vector kind");
}

// Vectors per item (or caption) and their width for `kind`.
std::pair<int, int> block_shape(VectorKind kind, const VectorShapes& shapes) {
  switch (kind) {
    case VectorKind::kImageProj:
      return {shapes.image_proj_rows, shapes.embed};
    case VectorKind::kTextProj:
      return {1, shapes.embed};
    case VectorKind::kImageEmbed:
    case VectorKind::kMultimodal:
      return {1, shapes.hidden};
  }
  return {0, 0};
}

std::vector<std::int64_t> expected_shape(VectorKind kind, const VectorFolder& folder) {
  const std::int64_t rows = is_caption_kind(kind) ? folder.captions : folder.items;
  const auto [per_row, cols] = block_shape(kind, folder.shapes);
  if (kind == VectorKind::kImageProj) return {rows, per_row, cols};
  return {rows, cols};
}

bool shape_fits(VectorKind kind, const std::vector<std::int64_t>& actual,
                const std::vector<std::int64_t>& expected) {
  if (actual == expected) return true;
  // One vector per image may come as [N, E] as well as [N, 1, E].
  return kind == VectorKind::kImageProj && expected[1] == 1 &&
         actual == std::vector<std::int64_t>{expected[0], expected[2]};
}

void check_array_shape(const VectorFolder& folder, VectorKind kind, const NpyHeader& header,
                       const std::string& name) {
  const std::vector<std::int64_t> expected = expected_shape(kind, folder);
  if (shape_fits(kind, header.shape, expected)) return;
  const bool per_caption = is_caption_kind(kind);
  if (!header.shape.empty() && header.shape[0] != expected[0]) {
    input_error(name + ": " + std::to_string(header.shape[0]) + " rows, but " + kMetadataFileName +
                " has " + std::to_string(expected[0]) +
                (per_caption ? " captions (one row per caption, in line order)"
                             : " lines (one row per item)"));
  }
  input_error(name + ": shape " + shape_text(header.shape) + ", but " + folder.model_id +
              " expects " + shape_text(expected) + " (image_proj rows " +
              std::to_string(folder.shapes.image_proj_rows) + ", embed " +
              std::to_string(folder.shapes.embed) + ", hidden " +
              std::to_string(folder.shapes.hidden) +
              "); were the vectors computed with another model? (--model)");
}

void verify_checksums(VectorFolder& folder) {
  std::vector<std::string> known{kMetadataFileName};
  for (const auto& array : vector_array_files()) known.push_back(array.file);
  for (const auto& [name, sum] : folder.format.checksums) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      folder.warnings.push_back(std::string(kFormatFileName) + ": checksum of unknown file " +
                                name + " ignored");
      continue;
    }
    const fs::path path = folder.dir / name;
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      input_error(path.string() + ": listed in " + kFormatFileName + " but missing");
    }
    const std::string actual = hash_file(path);
    if (actual != sum) {
      input_error(path.string() + ": checksum " + actual + ", " + kFormatFileName + " says " + sum +
                  ": the file is damaged or was changed after the export " +
                  "(--skip-checksums imports it anyway)");
    }
  }
}

void read_format(VectorFolder& folder, const VectorImportOptions& options) {
  const fs::path path = folder.dir / kFormatFileName;
  std::error_code ec;
  if (!fs::exists(path, ec)) return;  // version 1 without checksums
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) input_error(path.string() + ": cannot read");
  folder.format = parse_format_json(text, path.string());
  if (!folder.format.model.empty() && folder.format.model != folder.model_id &&
      !options.any_model) {
    throw Error(ErrorKind::kModel, path.string() + ": the vectors were computed with " +
                                       folder.format.model + ", not with " + folder.model_id +
                                       "; import them with that bundle (--model " +
                                       model_name_of(folder.format.model) +
                                       "), or pass --any-model if both have the same weights");
  }
  if (options.verify_checksums) verify_checksums(folder);
}

void count_metadata(VectorFolder& folder) {
  MetadataReader reader(folder.dir / kMetadataFileName);
  VectorItem item;
  while (reader.next(item)) {
    ++folder.items;
    folder.captions += static_cast<std::int64_t>(item.captions.size());
  }
  const std::string source = (folder.dir / kFormatFileName).string();
  const auto check = [&](std::int64_t said, std::int64_t found, const char* what) {
    if (said >= 0 && said != found) {
      input_error(source + ": says " + std::to_string(said) + " " + what + ", " +
                  kMetadataFileName + " has " + std::to_string(found));
    }
  };
  check(folder.format.items, folder.items, "items");
  check(folder.format.captions, folder.captions, "captions");
}

void check_arrays(VectorFolder& folder) {
  for (const auto& array : vector_array_files()) {
    const fs::path path = folder.dir / array.file;
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      if (array.kind == VectorKind::kImageProj) input_error(path.string() + ": missing");
      continue;
    }
    const NpyRowReader reader(path);  // checks dtype, order and size
    check_array_shape(folder, array.kind, reader.header(), path.string());
    if (array.kind == VectorKind::kImageProj) folder.dtype = reader.header().descr;
    if (!folder.format.checksums.empty() && !folder.format.checksums.count(array.file)) {
      folder.warnings.push_back(path.string() + ": no checksum in " + kFormatFileName);
    }
    folder.kinds.push_back(array.kind);
  }
}

fs::path absolute_folder(const fs::path& path) { return fs::path(normalize_index_path(path)); }

// ---------------------------------------------------------------------------------------------
// Reading records.

// The state of the file an item names: its size and mtime when it exists here (as the
// indexer's plan reads them), else 0 and 0.
FileState local_state(const fs::path& root, const std::string& file) {
  const fs::path given(file);
  FileState state;
  state.path = normalize_index_path(given.is_absolute() ? given : root / given);
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(state.path, ec);
  if (ec) return state;
  const auto time = fs::last_write_time(state.path, ec);
  if (ec) return state;
  state.size = static_cast<std::int64_t>(size);
  state.mtime_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
  return state;
}

// Eight independent sums, so that the compiler vectorises the loop (a single running sum
// must be added in order).
float sum_of_squares(const float* values, int count) {
  float lanes[8] = {};
  int i = 0;
  for (; i + 8 <= count; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] += values[i + j] * values[i + j];
  }
  float sum = 0;
  for (; i < count; ++i) sum += values[i] * values[i];
  for (float lane : lanes) sum += lane;
  return sum;
}

// Checks that every vector of `v` has unit length within kNormTolerance and renormalises it, so
// imported rows (e.g. float16 ones) are as exactly normalised as the indexer's. Rows already
// within float32 rounding stay bit for bit as given: an export imported again is the same.
void normalize_checked(StoredVectors& v, const std::string& file, std::int64_t row) {
  for (int r = 0; r < v.rows; ++r) {
    float* values = v.values.data() + static_cast<std::size_t>(r) * v.cols;
    const float norm = std::sqrt(sum_of_squares(values, v.cols));
    if (!(std::fabs(norm - 1.0f) <= kNormTolerance)) {
      input_error(file + ": row " + std::to_string(row) +
                  (v.rows > 1 ? " vector " + std::to_string(r) : std::string()) + " has norm " +
                  std::to_string(norm) + "; vectors must be L2-normalised (norm 1 within 0.01)");
    }
    if (std::fabs(norm - 1.0f) <= kExactNorm) continue;
    const float scale = 1.0f / norm;
    for (int c = 0; c < v.cols; ++c) values[c] *= scale;
  }
}

struct ArrayStream {
  VectorKind kind;
  std::string name;
  NpyRowReader reader;
  int rows;  // vectors per item or caption
  int cols;
};

// Reads one item's (or caption's) block into `v`, reusing its buffer when it has the size.
void read_block(ArrayStream& stream, std::int64_t row, int caption_index, StoredVectors& v) {
  v.kind = stream.kind;
  v.caption_index = caption_index;
  v.rows = stream.rows;
  v.cols = stream.cols;
  v.values.resize(static_cast<std::size_t>(v.rows) * v.cols);
  stream.reader.read_rows(row, 1, v.values.data());
  normalize_checked(v, stream.name, row);
}

std::vector<ArrayStream> open_streams(const VectorFolder& folder) {
  std::vector<ArrayStream> streams;
  for (VectorKind kind : folder.kinds) {
    const fs::path path = folder.dir / array_file(kind).file;
    const auto [rows, cols] = block_shape(kind, folder.shapes);
    streams.push_back({kind, path.string(), NpyRowReader(path), rows, cols});
  }
  return streams;
}

// Fills `record` for one item. The batch's records are refilled in place from batch to batch,
// so their vector buffers are allocated once, not per item (malloc, zero-filling and freeing
// 32 KB per BLIP-2 item cost more than reading it).
void fill_record(const VectorFolder& folder, VectorItem& item, std::vector<ArrayStream>& streams,
                 std::int64_t item_row, std::int64_t& caption_row, IndexedFile& record) {
  record.state = local_state(folder.root, item.file);
  record.category = std::move(item.category);
  record.captions = std::move(item.captions);
  std::size_t image_streams = 0;
  for (const ArrayStream& stream : streams) image_streams += !is_caption_kind(stream.kind);
  record.vectors.resize(image_streams + record.captions.size() * (streams.size() - image_streams));
  std::size_t next = 0;
  for (ArrayStream& stream : streams) {
    if (!is_caption_kind(stream.kind)) read_block(stream, item_row, -1, record.vectors[next++]);
  }
  for (std::size_t c = 0; c < record.captions.size(); ++c, ++caption_row) {
    for (ArrayStream& stream : streams) {
      if (is_caption_kind(stream.kind)) {
        read_block(stream, caption_row, static_cast<int>(c), record.vectors[next++]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing.

// The files of one export, written under temporary names.
class ExportFiles {
 public:
  ExportFiles(const fs::path& out, const VectorShapes& shapes, bool half)
      : out_(out), metadata_(partial(kMetadataFileName), std::ios::binary) {
    if (!metadata_) input_error(partial(kMetadataFileName).string() + ": cannot write");
    for (const auto& array : vector_array_files()) {
      const auto [rows, cols] = block_shape(array.kind, shapes);
      std::vector<std::int64_t> row_shape{cols};
      if (array.kind == VectorKind::kImageProj) row_shape.insert(row_shape.begin(), rows);
      arrays_.emplace(array.kind,
                      Array{NpyRowWriter(partial(array.file), half ? "<f2" : "<f4", row_shape), 0});
    }
  }

  void write(const IndexedFile& file, const std::string& path_text) {
    VectorItem item{path_text, file.category, file.captions};
    metadata_ << metadata_line(item) << '\n';
    for (VectorKind kind : {VectorKind::kImageProj, VectorKind::kImageEmbed}) {
      write_block(file, kind, -1);
    }
    for (std::size_t c = 0; c < file.captions.size(); ++c) {
      for (VectorKind kind : {VectorKind::kTextProj, VectorKind::kMultimodal}) {
        write_block(file, kind, static_cast<int>(c));
      }
    }
  }

  ExportFiles(const ExportFiles&) = delete;
  ExportFiles& operator=(const ExportFiles&) = delete;
  // An export that failed half-way leaves no temporary files behind.
  ~ExportFiles() {
    if (finished_) return;
    std::error_code ec;
    for (const auto& array : vector_array_files()) fs::remove(partial(array.file), ec);
    fs::remove(partial(kMetadataFileName), ec);
    fs::remove(partial(kFormatFileName), ec);
  }

  // Closes everything, keeps the complete arrays and renames them into place, format.json last.
  VectorExportSummary finish(VectorFormat format) {
    VectorExportSummary summary;
    metadata_.close();
    if (!metadata_) input_error(partial(kMetadataFileName).string() + ": write failed");
    std::vector<std::string> kept{kMetadataFileName};
    for (const auto& array : vector_array_files()) {
      Array& a = arrays_.at(array.kind);
      a.writer.finish();
      if (a.missing == 0) {
        kept.push_back(array.file);
        continue;
      }
      if (array.kind == VectorKind::kImageProj) {
        throw Error(ErrorKind::kIndex, std::to_string(a.missing) + " stored files have no " +
                                           "image_proj vectors: the store is damaged");
      }
      fs::remove(partial(array.file));
      fs::remove(out_ / array.file);  // a previous export's array would not match
      summary.warnings.push_back(std::string(array.file) +
                                 " left out: " + std::to_string(a.missing) + " of " +
                                 std::to_string(a.writer.rows()) + " rows have no " +
                                 to_string(array.kind) + " vectors in the index");
    }
    for (const std::string& name : kept) format.checksums[name] = hash_file(partial(name));
    for (const std::string& name : kept) fs::rename(partial(name), out_ / name);
    {
      std::ofstream json(partial(kFormatFileName), std::ios::binary);
      json << format_json(format);
      if (!json) input_error(partial(kFormatFileName).string() + ": write failed");
    }
    fs::rename(partial(kFormatFileName), out_ / kFormatFileName);
    kept.push_back(kFormatFileName);
    summary.files = kept;
    finished_ = true;
    return summary;
  }

 private:
  struct Array {
    NpyRowWriter writer;
    std::int64_t missing = 0;  // rows written as zeros because the record had none
  };

  fs::path partial(const std::string& name) const { return out_ / (name + ".partial"); }

  void write_block(const IndexedFile& file, VectorKind kind, int caption_index) {
    Array& a = arrays_.at(kind);
    const StoredVectors* found = nullptr;
    for (const StoredVectors& v : file.vectors) {
      if (v.kind == kind && v.caption_index == caption_index) found = &v;
    }
    if (found && found->values.size() == static_cast<std::size_t>(a.writer.row_size())) {
      a.writer.write_rows(found->values.data(), 1);
      return;
    }
    if (found) {
      throw Error(ErrorKind::kIndex, file.state.path + ": stored " + to_string(kind) + " is " +
                                         std::to_string(found->rows) + " x " +
                                         std::to_string(found->cols) + ", not the model's shape");
    }
    zeros_.assign(static_cast<std::size_t>(a.writer.row_size()), 0.0f);
    a.writer.write_rows(zeros_.data(), 1);
    ++a.missing;
  }

  fs::path out_;
  std::ofstream metadata_;
  std::map<VectorKind, Array> arrays_;
  std::vector<float> zeros_;
  bool finished_ = false;
};

// ---------------------------------------------------------------------------------------------
// Importing.

// Passes full batches from the reading thread to the writing one and the emptied buffers back,
// so reading overlaps writing with two batch buffers in all.
class BatchHandoff {
 public:
  struct Stopped {};  // thrown into the reader when the writer failed

  // Reader: hands `batch` over and gets the spare buffer back in it.
  void put(std::vector<IndexedFile>& batch) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return stopped_ || (!has_full_ && spare_ready_); });
    if (stopped_) throw Stopped{};
    full_ = std::move(batch);
    has_full_ = true;
    batch = std::move(spare_);
    spare_ready_ = false;
    changed_.notify_all();
  }
  // Reader: no more batches (done, or failed).
  void close() { set(closed_); }
  // Writer: the next batch; false once the reader closed and everything was taken.
  bool take(std::vector<IndexedFile>& batch) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return has_full_ || closed_; });
    if (!has_full_) return false;
    batch = std::move(full_);
    has_full_ = false;
    changed_.notify_all();
    return true;
  }
  // Writer: the buffer of a written batch, for the reader to refill.
  void give_back(std::vector<IndexedFile>&& batch) {
    std::lock_guard<std::mutex> lock(mutex_);
    spare_ = std::move(batch);
    spare_ready_ = true;
    changed_.notify_all();
  }
  // Writer: failed; the reader stops at its next batch.
  void stop() { set(stopped_); }

 private:
  void set(bool& flag) {
    std::lock_guard<std::mutex> lock(mutex_);
    flag = true;
    changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<IndexedFile> full_, spare_;
  bool has_full_ = false, spare_ready_ = true, closed_ = false, stopped_ = false;
};

void count_batch(const std::vector<IndexedFile>& records, VectorImportSummary& summary) {
  for (const IndexedFile& record : records) {
    summary.captions += static_cast<std::int64_t>(record.captions.size());
    if (record.state.size != 0 || record.state.mtime_ns != 0) ++summary.local_files;
  }
  summary.items += static_cast<std::int64_t>(records.size());
  ++summary.batches;
}

// ---------------------------------------------------------------------------------------------
// Exporting.

std::int64_t files_in_scope(const IndexStore& store, const std::string& model_id,
                            const fs::path& scope) {
  const std::vector<ModelUsage> usages = store.models_in_scope(scope);
  for (const ModelUsage& usage : usages) {
    if (usage.model_id == model_id) return usage.file_count;
  }
  const std::string where = normalize_index_path(scope);
  throw Error(ErrorKind::kIndex,
              where + " holds no vectors of " + model_id +
                  (usages.empty() ? std::string(" (nothing is indexed there)")
                                  : " (indexed there: " + describe_usages(usages) + ")") +
                  "; index it first (mmsearch index DIR --model " + model_name_of(model_id) +
                  ") or choose another --model / --in");
}

// How an export names a stored file: its absolute path, or its path relative to `base`.
std::string exported_path(const std::string& path, const std::optional<fs::path>& base) {
  if (!base) return path;
  return fs::path(path).lexically_relative(*base).generic_string();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

VectorShapes vector_shapes(const Manifest& manifest) {
  return {image_proj_rows(manifest), manifest.dims.embed, manifest.dims.hidden};
}

const std::vector<VectorArrayFile>& vector_array_files() {
  static const std::vector<VectorArrayFile> files = {
      {VectorKind::kImageProj, "image_proj.npy"},
      {VectorKind::kImageEmbed, "image_embed.npy"},
      {VectorKind::kTextProj, "text_proj.npy"},
      {VectorKind::kMultimodal, "multimodal.npy"},
  };
  return files;
}

VectorFolder open_vector_folder(const fs::path& dir, const Manifest& manifest,
                                const std::string& model_id, const VectorImportOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) input_error(dir.string() + ": not a folder");
  VectorFolder folder;
  folder.dir = absolute_folder(dir);
  folder.root = absolute_folder(options.root.empty() ? dir : options.root);
  folder.model_id = model_id;
  folder.shapes = vector_shapes(manifest);
  read_format(folder, options);
  count_metadata(folder);
  check_arrays(folder);
  return folder;
}

std::size_t default_import_batch(const VectorFolder& folder) {
  std::size_t floats_per_item = 0;
  const double captions_per_item =
      folder.items > 0 ? static_cast<double>(folder.captions) / folder.items : 0;
  for (VectorKind kind : folder.kinds) {
    const auto [rows, cols] = block_shape(kind, folder.shapes);
    const double per_item = is_caption_kind(kind) ? captions_per_item : 1;
    floats_per_item += static_cast<std::size_t>(std::ceil(per_item * rows * cols));
  }
  const std::size_t bytes = std::max<std::size_t>(1, floats_per_item * sizeof(float));
  return std::clamp<std::size_t>(kBatchBytes / bytes, 16, kMaxBatchItems);
}

void read_vector_records(const VectorFolder& folder, std::size_t batch_size,
                         const std::function<void(std::vector<IndexedFile>&)>& visit) {
  batch_size = std::max<std::size_t>(1, batch_size);
  MetadataReader metadata(folder.dir / kMetadataFileName);
  std::vector<ArrayStream> streams = open_streams(folder);
  std::vector<IndexedFile> batch;
  VectorItem item;
  std::int64_t caption_row = 0;
  for (std::int64_t row = 0; row < folder.items; ++row) {
    // The counts were checked when the folder was opened; a file changed since then ends here.
    if (!metadata.next(item)) {
      input_error((folder.dir / kMetadataFileName).string() + ": changed during the import");
    }
    if (caption_row + static_cast<std::int64_t>(item.captions.size()) > folder.captions) {
      input_error((folder.dir / kMetadataFileName).string() + ": changed during the import");
    }
    const std::size_t slot = static_cast<std::size_t>(row % batch_size);
    if (batch.size() <= slot) batch.emplace_back();
    fill_record(folder, item, streams, row, caption_row, batch[slot]);
    if (slot + 1 == batch_size || row + 1 == folder.items) {
      batch.resize(slot + 1);
      visit(batch);
    }
  }
}

VectorImportSummary import_vectors(const VectorFolder& folder, IndexStore* store,
                                   std::size_t batch_size,
                                   const std::function<void(const VectorProgress&)>& on_progress) {
  const auto start = std::chrono::steady_clock::now();
  VectorImportSummary summary;
  if (batch_size == 0) batch_size = default_import_batch(folder);
  BatchHandoff handoff;
  // The reader thread parses and converts the next batch while this one writes the current.
  auto reader = std::async(std::launch::async, [&] {
    try {
      read_vector_records(folder, batch_size, [&](std::vector<IndexedFile>& b) { handoff.put(b); });
    } catch (...) {
      handoff.close();
      throw;
    }
    handoff.close();
  });
  std::vector<IndexedFile> records;
  try {
    while (handoff.take(records)) {
      if (store) store->upsert_batch(folder.model_id, records);
      count_batch(records, summary);
      if (on_progress) on_progress({summary.items, folder.items});
      handoff.give_back(std::move(records));
    }
  } catch (...) {
    handoff.stop();
    reader.wait();
    throw;
  }
  reader.get();  // the reader's error, if it stopped early
  summary.seconds = seconds_since(start);
  return summary;
}

VectorExportSummary export_vectors(const IndexStore& store, const std::string& model_id,
                                   const Manifest& manifest, const fs::path& scope,
                                   const fs::path& out, const VectorExportOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t total = files_in_scope(store, model_id, scope);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) input_error(out.string() + ": cannot create the folder: " + ec.message());
  std::optional<fs::path> base;
  if (options.relative) {
    base = fs::path(normalize_index_path(scope));
    if (store.find_file(model_id, *base)) base = base->parent_path();  // the scope is one file
  }
  ExportFiles files(out, vector_shapes(manifest), options.half);
  std::int64_t items = 0, captions = 0;
  store.visit_files(model_id, scope, std::max<std::size_t>(1, options.batch_size),
                    [&](std::vector<IndexedFile>& batch) {
                      for (const IndexedFile& file : batch) {
                        files.write(file, exported_path(file.state.path, base));
                        captions += static_cast<std::int64_t>(file.captions.size());
                      }
                      items += static_cast<std::int64_t>(batch.size());
                      if (options.on_progress) options.on_progress({items, total});
                    });
  VectorFormat format;
  format.model = model_id;
  format.items = items;
  format.captions = captions;
  format.created_by = options.created_by;
  VectorExportSummary summary = files.finish(format);
  summary.items = items;
  summary.captions = captions;
  summary.seconds = seconds_since(start);
  return summary;
}

}  // namespace mmsearch
