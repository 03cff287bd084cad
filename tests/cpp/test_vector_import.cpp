// Vector import / export (src/vector_import.cpp, src/vector_format.cpp) and the streaming .npy
// reader and writer under it (src/npy.cpp): header parsing, float16, every validation error,
// batches and crash behaviour, export -> import round trips, and how imported records meet a
// later `index` of their folder (index_plan).
#include <c10/util/Half.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/index.h"
#include "mmsearch/index_plan.h"
#include "mmsearch/npy.h"
#include "mmsearch/vector_format.h"
#include "mmsearch/vector_import.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;
using mmsearch::test_support::write_file;

namespace {

fs::path fresh_dir(const std::string& name) {
  return test_support::fresh_test_dir("vector_import", name);
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A header as numpy writes it (format 1.0, padded to 64 bytes).
std::string numpy_header(const std::string& dict) {
  std::string header = dict;
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out += std::string{'\x01', '\x00'};
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header;
}

Manifest blip2_manifest(int queries = 4, int embed = 8, int hidden = 6) {
  Manifest manifest;
  manifest.name = "test-blip2";
  manifest.family = Family::kBlip2;
  manifest.dims.query_tokens = queries;
  manifest.dims.embed = embed;
  manifest.dims.hidden = hidden;
  return manifest;
}

Manifest blip_manifest() {
  Manifest manifest = blip2_manifest(0, 8, 6);
  manifest.name = "test-blip";
  manifest.family = Family::kBlip;
  return manifest;
}

std::vector<float> unit_rows(std::int64_t rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> values(static_cast<std::size_t>(rows) * cols);
  for (float& v : values) v = normal(rng);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = values.data() + r * cols;
    double sum = 0;
    for (int c = 0; c < cols; ++c) sum += double(row[c]) * row[c];
    for (int c = 0; c < cols; ++c) row[c] = static_cast<float>(row[c] / std::sqrt(sum));
  }
  return values;
}

void write_array(const fs::path& path, const std::string& descr,
                 const std::vector<std::int64_t>& row_shape, const std::vector<float>& values) {
  NpyRowWriter writer(path, descr, row_shape);
  writer.write_rows(values.data(), static_cast<std::int64_t>(values.size()) / writer.row_size());
  writer.finish();
}

// A vector folder of `items` items for `shapes`; item i has i % 3 captions and names
// "photos/img<i>.jpg" (relative).
struct FolderSpec {
  int items = 10;
  std::string descr = "<f4";
  bool optional_arrays = true;
  bool image_proj_2d = false;  // [N, E] instead of [N, Q, E]
};

struct WrittenFolder {
  std::vector<VectorItem> items;
  std::map<std::string, std::vector<float>> arrays;  // file -> values
  std::int64_t captions = 0;
};

WrittenFolder write_folder(const fs::path& dir, const VectorShapes& shapes,
                           const FolderSpec& spec = {}) {
  fs::create_directories(dir);
  WrittenFolder written;
  std::ofstream metadata(dir / kMetadataFileName, std::ios::binary);
  for (int i = 0; i < spec.items; ++i) {
    VectorItem item;
    item.file = "photos/img" + std::to_string(i) + ".jpg";
    item.category = i % 2 ? "pasta" : "";
    for (int c = 0; c < i % 3; ++c) {
      item.captions.push_back({"caption " + std::to_string(i) + "." + std::to_string(c),
                               c == 1 ? "english " + std::to_string(i) : ""});
    }
    written.captions += static_cast<std::int64_t>(item.captions.size());
    metadata << metadata_line(item) << "\n";
    written.items.push_back(item);
  }
  const auto add = [&](const char* file, std::int64_t rows, std::vector<std::int64_t> row_shape,
                       int cols, unsigned seed) {
    const std::int64_t vectors = rows * (row_shape.size() == 2 ? row_shape[0] : 1);
    written.arrays[file] = unit_rows(vectors, cols, seed);
    write_array(dir / file, spec.descr, row_shape, written.arrays[file]);
  };
  const int q = shapes.image_proj_rows;
  if (spec.image_proj_2d) {
    add("image_proj.npy", spec.items, {shapes.embed}, shapes.embed, 1);
  } else {
    add("image_proj.npy", spec.items, {q, shapes.embed}, shapes.embed, 1);
  }
  if (spec.optional_arrays) {
    add("image_embed.npy", spec.items, {shapes.hidden}, shapes.hidden, 2);
    add("text_proj.npy", written.captions, {shapes.embed}, shapes.embed, 3);
    add("multimodal.npy", written.captions, {shapes.hidden}, shapes.hidden, 4);
  }
  return written;
}

const StoredVectors* find_block(const IndexedFile& file, VectorKind kind, int caption) {
  for (const auto& v : file.vectors) {
    if (v.kind == kind && v.caption_index == caption) return &v;
  }
  return nullptr;
}

std::vector<IndexedFile> all_files(const IndexStore& store, const std::string& model) {
  std::vector<IndexedFile> files;
  store.visit_files(model, "/", 1000, [&](std::vector<IndexedFile>& batch) {
    for (auto& f : batch) files.push_back(std::move(f));
  });
  return files;
}

VectorFolder open_folder(const fs::path& dir, const Manifest& manifest,
                         VectorImportOptions options = {}) {
  return open_vector_folder(dir, manifest, manifest.name + "@test", options);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// .npy headers and streaming.

TEST(NpyHeader, ParsesWhatNumpyWrites) {
  const std::string bytes =
      numpy_header("{'descr': '<f2', 'fortran_order': False, 'shape': (3, 32, 256), }");
  const NpyHeader header = parse_npy_header(bytes, "x.npy");
  EXPECT_EQ(header.descr, "<f2");
  EXPECT_FALSE(header.fortran_order);
  EXPECT_EQ(header.shape, (std::vector<std::int64_t>{3, 32, 256}));
  EXPECT_EQ(header.data_offset, bytes.size());
  EXPECT_EQ(header.data_offset % 64, 0u);
  EXPECT_EQ(header.count(), 3 * 32 * 256);
  EXPECT_EQ(header.item_size(), 2u);
  EXPECT_EQ(parse_npy_header(numpy_header("{'descr': '<f4', 'fortran_order': True, 'shape': (5,)}"),
                             "x.npy")
                .shape,
            (std::vector<std::int64_t>{5}));
  EXPECT_TRUE(
      parse_npy_header(numpy_header("{'descr':'<f4','fortran_order':False,'shape':()}"), "x.npy")
          .shape.empty());
}

TEST(NpyHeader, RefusesMalformedHeadersNamingTheFile) {
  const std::vector<std::string> dicts = {
      "{'descr': '<f4', 'fortran_order': False}",                                 // no shape
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",      // extra key
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",  // repeated
      "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",                   // quoting
      "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing",
      "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
      "'descr'",
  };
  for (const std::string& dict : dicts) {
    const auto [kind, message] =
        error_of([&] { parse_npy_header(numpy_header(dict), "dir/bad.npy"); });
    EXPECT_EQ(kind, ErrorKind::kInput) << dict;
    EXPECT_NE(message.find("dir/bad.npy: not a supported .npy file"), std::string::npos) << message;
  }
  const std::string good =
      numpy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
  EXPECT_EQ(error_of([&] { parse_npy_header(good.substr(0, 40), "t.npy"); }).first,
            ErrorKind::kInput);
  EXPECT_EQ(error_of([&] { parse_npy_header("NUMPY\x01\x00", "t.npy"); }).first, ErrorKind::kInput);
  std::string version9 = good;
  version9[6] = 9;
  EXPECT_NE(error_of([&] { parse_npy_header(version9, "t.npy"); }).second.find("version 9"),
            std::string::npos);
}

TEST(NpyHeader, ReadsFormatVersion2) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 2), }\n";
  std::string bytes = "\x93NUMPY";
  bytes += std::string{'\x02', '\x00'};
  const std::uint32_t length = static_cast<std::uint32_t>(dict.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  bytes += dict;
  const NpyHeader header = parse_npy_header(bytes, "v2.npy");
  EXPECT_EQ(header.shape, (std::vector<std::int64_t>{7, 2}));
  EXPECT_EQ(header.data_offset, bytes.size());
}

TEST(NpyHalf, MatchesC10ForEveryValue) {
  // Covers the F16C path (where the CPU has it) against c10's portable conversion.
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> converted(all.size());
  half_to_float(all.data(), converted.data(), all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    const float expected = c10::detail::fp16_ieee_to_fp32_value(all[i]);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(converted[i])) << i;
    } else {
      ASSERT_EQ(std::memcmp(&expected, &converted[i], 4), 0) << i;
    }
  }
  std::vector<std::uint16_t> back(all.size());
  float_to_half(converted.data(), back.data(), converted.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!std::isnan(converted[i])) ASSERT_EQ(back[i], all[i]) << i;
  }
  const std::vector<float> rounding = {1.0f, -2.0f, 65504.0f, 1e6f, 1.0f + 1.0f / 4096, 0.0f};
  std::vector<std::uint16_t> halves(rounding.size());
  float_to_half(rounding.data(), halves.data(), rounding.size());
  EXPECT_EQ(halves, (std::vector<std::uint16_t>{0x3c00, 0xc000, 0x7bff, 0x7c00, 0x3c00, 0}));
}

TEST(NpyRows, WriterAndReaderRoundTripFloat32AndFloat16) {
  const fs::path dir = fresh_dir("round_trip");
  const std::vector<float> values = unit_rows(37 * 3, 5, 7);
  for (const std::string descr : {"<f4", "<f2"}) {
    const fs::path path = dir / ("a" + descr.substr(1) + ".npy");
    {
      NpyRowWriter writer(path, descr, {3, 5});
      writer.write_rows(values.data(), 30);
      writer.write_rows(values.data() + 30 * 15, 7);
      writer.finish();
    }
    NpyRowReader reader(path);
    EXPECT_EQ(reader.header().descr, descr);
    EXPECT_EQ(reader.header().shape, (std::vector<std::int64_t>{37, 3, 5}));
    EXPECT_EQ(reader.rows(), 37);
    EXPECT_EQ(reader.row_size(), 15);
    std::vector<float> all(values.size()), some(2 * 15);
    reader.read_rows(0, 37, all.data());
    reader.read_rows(20, 2, some.data());  // a seek back
    const float tolerance = descr == "<f4" ? 0.0f : 1e-3f;
    for (std::size_t i = 0; i < values.size(); ++i) EXPECT_NEAR(all[i], values[i], tolerance);
    for (std::size_t i = 0; i < some.size(); ++i) EXPECT_EQ(some[i], all[20 * 15 + i]);
    EXPECT_EQ(error_of([&] { reader.read_rows(36, 2, some.data()); }).first, ErrorKind::kInternal);
  }
  // The float32 file is what the whole-array reader (and numpy) read too.
  const NpyArray array = read_npy(dir / "af4.npy");
  EXPECT_EQ(array.shape, (std::vector<std::int64_t>{37, 3, 5}));
  EXPECT_EQ(array.f32, values);
}

TEST(NpyRows, AnUnfinishedFileIsRefused) {
  const fs::path path = fresh_dir("unfinished") / "a.npy";
  {
    NpyRowWriter writer(path, "<f4", {4});
    const std::vector<float> row(4, 0.5f);
    writer.write_rows(row.data(), 1);
  }
  // Header says 0 rows, the file has one: refused as not header + data.
  const auto [kind, message] = error_of([&] { NpyRowReader reader(path); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("its header says"), std::string::npos) << message;
}

TEST(NpyRows, RefusesOtherDtypesOrderAndSizes) {
  const fs::path dir = fresh_dir("refuse");
  const std::vector<std::int64_t> ints = {1, 2, 3};
  write_npy(dir / "ints.npy", {3}, ints.data());
  EXPECT_NE(error_of([&] { NpyRowReader r(dir / "ints.npy"); }).second.find("dtype <i8"),
            std::string::npos);
  write_file(dir / "fortran.npy",
             numpy_header("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }") +
                 std::string(8, '\0'));
  EXPECT_NE(error_of([&] { NpyRowReader r(dir / "fortran.npy"); }).second.find("Fortran"),
            std::string::npos);
  const std::string header = numpy_header(
      "{'descr': '<f4', 'fortran_order': False, "
      "'shape': (2, 2), }");
  write_file(dir / "short.npy", header + std::string(12, '\0'));
  EXPECT_NE(error_of([&] { NpyRowReader r(dir / "short.npy"); }).second.find("truncated"),
            std::string::npos);
  write_file(dir / "long.npy", header + std::string(20, '\0'));
  EXPECT_EQ(error_of([&] { NpyRowReader r(dir / "long.npy"); }).first, ErrorKind::kInput);
  write_file(dir / "scalar.npy",
             numpy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }") +
                 std::string(4, '\0'));
  EXPECT_NE(error_of([&] { NpyRowReader r(dir / "scalar.npy"); }).second.find("0-d"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { NpyRowReader r(dir / "missing.npy"); }).first, ErrorKind::kInput);
}

// ---------------------------------------------------------------------------------------------
// metadata.jsonl and format.json.

TEST(VectorMetadata, ParsesLinesAndWritesThemBack) {
  const VectorItem item = parse_metadata_line(
      R"({"file": "a/b.jpg", "captions": ["una pizza", "x"], "captions_en": ["a pizza", ""],)"
      R"( "category": "pizza", "later": {"ignored": true}})"
      "\r",
      "m.jsonl", 3);
  EXPECT_EQ(item.file, "a/b.jpg");
  EXPECT_EQ(item.category, "pizza");
  ASSERT_EQ(item.captions.size(), 2u);
  EXPECT_EQ(item.captions[0].text, "una pizza");
  EXPECT_EQ(item.captions[0].text_en, "a pizza");
  EXPECT_EQ(item.captions[1].text_en, "");
  const VectorItem again = parse_metadata_line(metadata_line(item), "m", 1);
  EXPECT_EQ(again.file, item.file);
  EXPECT_EQ(again.category, item.category);
  EXPECT_EQ(again.captions[0].text_en, "a pizza");
  EXPECT_EQ(metadata_line({"x.jpg", "", {}}), R"({"file":"x.jpg"})");
  EXPECT_EQ(metadata_line({"x.jpg", "", {{"c", ""}}}), R"({"captions":["c"],"file":"x.jpg"})");
  EXPECT_TRUE(parse_metadata_line(R"({"file": "x", "category": null})", "m", 1).category.empty());
}

TEST(VectorMetadata, ErrorsNameTheLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"file": "a.jpg")", "not valid JSON"},
      {"", "not valid JSON"},
      {R"(["a.jpg"])", "not a JSON object"},
      {R"({"captions": ["x"]})", "no \"file\""},
      {R"({"file": ""})", "no \"file\""},
      {R"({"file": 3})", "\"file\" is not a string"},
      {R"({"file": "a", "captions": "x"})", "\"captions\" is not a list"},
      {R"({"file": "a", "captions": [1]})", "\"captions\" holds a non-string"},
      {R"({"file": "a", "category": ["x"]})", "\"category\" is not a string"},
      {R"({"file": "a", "captions": ["x", "y"], "captions_en": ["x"]})",
       "\"captions_en\" has 1 entries for 2 captions"},
      {"{\"file\": \"\xff\"}", "not valid JSON"},
  };
  for (const auto& [line, reason] : cases) {
    const auto [kind, message] = error_of([&] { parse_metadata_line(line, "dir/m.jsonl", 17); });
    EXPECT_EQ(kind, ErrorKind::kInput) << line;
    EXPECT_EQ(message, "dir/m.jsonl:17: " + reason) << line;
  }
}

TEST(VectorFormatJson, RoundTripsAndRefusesNewerVersions) {
  VectorFormat format;
  format.model = "blip-base@0123456789abcdef";
  format.items = 3;
  format.captions = 0;
  format.checksums = {{"image_proj.npy", "xxh64:00"}};
  format.created_by = "mmsearch test";
  const VectorFormat back = parse_format_json(format_json(format), "f.json");
  EXPECT_EQ(back.version, kVectorFormatVersion);
  EXPECT_EQ(back.model, format.model);
  EXPECT_EQ(back.items, 3);
  EXPECT_EQ(back.captions, 0);
  EXPECT_EQ(back.checksums, format.checksums);
  const VectorFormat minimal =
      parse_format_json(R"({"format": "mmsearch-vectors", "format_version": 1})", "f.json");
  EXPECT_EQ(minimal.items, -1);
  EXPECT_TRUE(minimal.checksums.empty());

  const auto [kind, message] = error_of([] {
    parse_format_json(R"({"format": "mmsearch-vectors", "format_version": 2})", "d/format.json");
  });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("d/format.json: written in vector format version 2 by a newer mmsearch"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("upgrade mmsearch"), std::string::npos);
  for (const std::string bad :
       {R"({"format": "other", "format_version": 1})", R"({"format": "mmsearch-vectors"})",
        R"({"format": "mmsearch-vectors", "format_version": 1, "checksums": []})",
        R"({"format": "mmsearch-vectors", "format_version": 1, "items": -1})", "[1]", "{"}) {
    EXPECT_EQ(error_of([&] { parse_format_json(bad, "f.json"); }).first, ErrorKind::kInput) << bad;
  }
}

// ---------------------------------------------------------------------------------------------
// Import.

TEST(VectorImport, StoresWhatIndexingStores) {
  const fs::path dir = fresh_dir("stores");
  const Manifest manifest = blip2_manifest();
  const WrittenFolder written = write_folder(dir / "vectors", vector_shapes(manifest));
  // Item 1 exists on this machine, the others do not.
  const fs::path root = dir / "root";
  write_file(root / "photos/img1.jpg", "not really a jpeg");
  VectorImportOptions options;
  options.root = root;
  const VectorFolder folder = open_folder(dir / "vectors", manifest, options);
  EXPECT_EQ(folder.items, 10);
  EXPECT_EQ(folder.captions, written.captions);
  EXPECT_EQ(folder.dtype, "<f4");
  EXPECT_EQ(folder.kinds.size(), 4u);

  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  const VectorImportSummary summary = import_vectors(folder, &store, 3, nullptr);
  EXPECT_EQ(summary.items, 10);
  EXPECT_EQ(summary.captions, written.captions);
  EXPECT_EQ(summary.batches, 4);
  EXPECT_EQ(summary.local_files, 1);

  const std::vector<IndexedFile> files = all_files(store, folder.model_id);
  ASSERT_EQ(files.size(), 10u);
  std::map<std::string, const IndexedFile*> by_path;
  for (const auto& f : files) by_path[f.state.path] = &f;
  std::int64_t caption_row = 0;
  const auto& image_proj = written.arrays.at("image_proj.npy");
  const auto& text_proj = written.arrays.at("text_proj.npy");
  for (int i = 0; i < 10; ++i) {
    const std::string path = normalize_index_path(root / written.items[i].file);
    ASSERT_TRUE(by_path.count(path)) << path;
    const IndexedFile& f = *by_path[path];
    EXPECT_EQ(f.category, written.items[i].category);
    ASSERT_EQ(f.captions.size(), written.items[i].captions.size());
    EXPECT_TRUE(f.state.content_hash.empty());
    const StoredVectors* proj = find_block(f, VectorKind::kImageProj, -1);
    ASSERT_NE(proj, nullptr);
    EXPECT_EQ(proj->rows, 4);
    EXPECT_EQ(proj->cols, 8);
    EXPECT_EQ(proj->values,
              std::vector<float>(image_proj.begin() + i * 32, image_proj.begin() + (i + 1) * 32));
    const StoredVectors* embed = find_block(f, VectorKind::kImageEmbed, -1);
    ASSERT_NE(embed, nullptr);
    EXPECT_EQ(embed->rows, 1);
    EXPECT_EQ(embed->cols, 6);
    for (std::size_t c = 0; c < f.captions.size(); ++c, ++caption_row) {
      EXPECT_EQ(f.captions[c].text, written.items[i].captions[c].text);
      EXPECT_EQ(f.captions[c].text_en, written.items[i].captions[c].text_en);
      const StoredVectors* text = find_block(f, VectorKind::kTextProj, static_cast<int>(c));
      ASSERT_NE(text, nullptr);
      EXPECT_EQ(text->values, std::vector<float>(text_proj.begin() + caption_row * 8,
                                                 text_proj.begin() + (caption_row + 1) * 8));
      EXPECT_NE(find_block(f, VectorKind::kMultimodal, static_cast<int>(c)), nullptr);
    }
  }
  // Size and mtime of the local file as the indexer reads them; zeros for the others.
  const IndexedFile& local = *by_path[normalize_index_path(root / "photos/img1.jpg")];
  EXPECT_EQ(local.state.size, static_cast<std::int64_t>(fs::file_size(root / "photos/img1.jpg")));
  EXPECT_EQ(local.state.mtime_ns,
            std::chrono::duration_cast<std::chrono::nanoseconds>(
                fs::last_write_time(root / "photos/img1.jpg").time_since_epoch())
                .count());
  const IndexedFile& remote = *by_path[normalize_index_path(root / "photos/img2.jpg")];
  EXPECT_EQ(remote.state.size, 0);
  EXPECT_EQ(remote.state.mtime_ns, 0);

  // Queries read them like indexed vectors.
  const LoadedVectors loaded = store.load_vectors(folder.model_id, root, VectorKind::kImageProj);
  EXPECT_EQ(loaded.embeddings.count, 10);
  EXPECT_EQ(loaded.embeddings.vectors_per_item, 4);
  EXPECT_EQ(store.load_vectors(folder.model_id, root, VectorKind::kTextProj).embeddings.count,
            written.captions);

  // A rerun (after a crash, say) replaces by path: still 10 files.
  import_vectors(folder, &store, 0, nullptr);
  EXPECT_EQ(all_files(store, folder.model_id).size(), 10u);
}

TEST(VectorImport, RootDefaultsToTheFolderAndAbsolutePathsStay) {
  const fs::path dir = fresh_dir("root");
  const Manifest manifest = blip_manifest();
  const fs::path vectors = dir / "vectors";
  fs::create_directories(vectors);
  write_file(vectors / kMetadataFileName, "{\"file\": \"rel.jpg\"}\n{\"file\": \"/abs/x.jpg\"}\n");
  write_array(vectors / "image_proj.npy", "<f4", {8}, unit_rows(2, 8, 1));  // [N, E] for BLIP
  const VectorFolder folder = open_folder(vectors, manifest);
  EXPECT_EQ(folder.kinds, std::vector<VectorKind>{VectorKind::kImageProj});
  std::vector<std::string> paths;
  read_vector_records(folder, 10, [&](std::vector<IndexedFile>& batch) {
    for (const auto& f : batch) {
      paths.push_back(f.state.path);
      EXPECT_EQ(f.vectors.size(), 1u);
      EXPECT_EQ(f.vectors[0].rows, 1);
    }
  });
  EXPECT_EQ(paths,
            (std::vector<std::string>{normalize_index_path(vectors / "rel.jpg"), "/abs/x.jpg"}));
}

TEST(VectorImport, Float16IsConvertedAndRenormalised) {
  const fs::path dir = fresh_dir("f16");
  const Manifest manifest = blip2_manifest();
  FolderSpec spec;
  spec.descr = "<f2";
  const WrittenFolder written = write_folder(dir / "vectors", vector_shapes(manifest), spec);
  const VectorFolder folder = open_folder(dir / "vectors", manifest);
  EXPECT_EQ(folder.dtype, "<f2");
  std::int64_t item = 0;
  read_vector_records(folder, 4, [&](std::vector<IndexedFile>& batch) {
    for (const auto& f : batch) {
      const StoredVectors& proj = *find_block(f, VectorKind::kImageProj, -1);
      for (int r = 0; r < proj.rows; ++r) {
        double sum = 0;
        for (int c = 0; c < proj.cols; ++c) {
          const float v = proj.values[r * proj.cols + c];
          sum += double(v) * v;
          EXPECT_NEAR(v, written.arrays.at("image_proj.npy")[(item * 4 + r) * 8 + c], 2e-3);
        }
        EXPECT_NEAR(sum, 1.0, 2.1e-5);  // float16 alone is off by ~1e-3
      }
      ++item;
    }
  });
  EXPECT_EQ(item, 10);
}

TEST(VectorImport, OptionalArraysMayBeMissing) {
  const fs::path dir = fresh_dir("optional");
  const Manifest manifest = blip2_manifest();
  FolderSpec spec;
  spec.optional_arrays = false;
  write_folder(dir / "vectors", vector_shapes(manifest), spec);
  const VectorFolder folder = open_folder(dir / "vectors", manifest);
  EXPECT_EQ(folder.kinds, std::vector<VectorKind>{VectorKind::kImageProj});
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  import_vectors(folder, &store, 0, nullptr);
  for (const IndexedFile& f : all_files(store, folder.model_id)) {
    ASSERT_EQ(f.vectors.size(), 1u);
    EXPECT_EQ(f.vectors[0].kind, VectorKind::kImageProj);
  }
}

TEST(VectorImport, ShapeErrorsNameFileShapeAndExpectation) {
  const fs::path dir = fresh_dir("shapes");
  const Manifest manifest = blip2_manifest();
  FolderSpec spec;
  spec.image_proj_2d = true;  // [N, E] for a 4-query model
  write_folder(dir / "q", vector_shapes(manifest), spec);
  auto [kind, message] = error_of([&] { open_folder(dir / "q", manifest); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("image_proj.npy: shape [10, 8], but test-blip2@test expects [10, 4, 8]"),
            std::string::npos)
      << message;

  write_folder(dir / "e", vector_shapes(blip2_manifest(4, 16, 6)));
  std::tie(kind, message) = error_of([&] { open_folder(dir / "e", manifest); });
  EXPECT_NE(message.find("shape [10, 4, 16], but test-blip2@test expects [10, 4, 8]"),
            std::string::npos)
      << message;

  write_folder(dir / "d", vector_shapes(blip2_manifest(4, 8, 12)));
  std::tie(kind, message) = error_of([&] { open_folder(dir / "d", manifest); });
  EXPECT_NE(message.find("image_embed.npy: shape [10, 12], but test-blip2@test expects [10, 6]"),
            std::string::npos)
      << message;

  // One metadata line too many: N differs from the rows.
  write_folder(dir / "n", vector_shapes(manifest));
  std::ofstream(dir / "n" / kMetadataFileName, std::ios::app) << "{\"file\": \"extra.jpg\"}\n";
  std::tie(kind, message) = error_of([&] { open_folder(dir / "n", manifest); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("image_proj.npy: 10 rows, but metadata.jsonl has 11 lines"),
            std::string::npos)
      << message;

  // Captions in metadata and text_proj rows disagree.
  const WrittenFolder c = write_folder(dir / "c", vector_shapes(manifest));
  write_array(dir / "c" / "text_proj.npy", "<f4", {8}, unit_rows(c.captions + 1, 8, 3));
  std::tie(kind, message) = error_of([&] { open_folder(dir / "c", manifest); });
  EXPECT_NE(
      message.find("text_proj.npy: " + std::to_string(c.captions + 1) +
                   " rows, but metadata.jsonl has " + std::to_string(c.captions) + " captions"),
      std::string::npos)
      << message;

  fs::remove(dir / "c" / "image_proj.npy");
  std::tie(kind, message) = error_of([&] { open_folder(dir / "c", manifest); });
  EXPECT_NE(message.find("image_proj.npy: missing"), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { open_folder(dir / "nothing", manifest); }).first, ErrorKind::kInput);
}

TEST(VectorImport, BadMetadataLineIsNamedBeforeAnythingIsWritten) {
  const fs::path dir = fresh_dir("bad_line");
  const Manifest manifest = blip2_manifest();
  write_folder(dir / "v", vector_shapes(manifest));
  std::string text = read_bytes(dir / "v" / kMetadataFileName);
  const std::size_t third = text.find('\n', text.find('\n') + 1) + 1;
  text.replace(third, text.find('\n', third) - third, "{\"file\": broken");
  write_file(dir / "v" / kMetadataFileName, text);
  const auto [kind, message] = error_of([&] { open_folder(dir / "v", manifest); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("metadata.jsonl:3: not valid JSON"), std::string::npos) << message;
}

TEST(VectorImport, NonUnitRowStopsAfterTheBatchesBeforeIt) {
  const fs::path dir = fresh_dir("norm");
  const Manifest manifest = blip2_manifest();
  WrittenFolder written = write_folder(dir / "v", vector_shapes(manifest));
  std::vector<float> proj = written.arrays.at("image_proj.npy");
  for (int c = 0; c < 8; ++c) proj[(7 * 4 + 2) * 8 + c] *= 0.5f;  // item 7, query vector 2
  write_array(dir / "v" / "image_proj.npy", "<f4", {4, 8}, proj);
  const VectorFolder folder = open_folder(dir / "v", manifest);
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  const auto [kind, message] = error_of([&] { import_vectors(folder, &store, 3, nullptr); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("image_proj.npy: row 7 vector 2 has norm 0.5"), std::string::npos)
      << message;
  EXPECT_EQ(all_files(store, folder.model_id).size(), 6u);  // batches 0-2 and 3-5
}

TEST(VectorImport, ChecksumsAndModelFromFormatJson) {
  const fs::path dir = fresh_dir("checksums");
  const Manifest manifest = blip2_manifest();
  write_folder(dir / "v", vector_shapes(manifest));
  VectorFormat format;
  format.model = "test-blip2@test";
  format.items = 10;
  for (const char* name : {"metadata.jsonl", "image_proj.npy", "text_proj.npy"}) {
    format.checksums[name] = hash_file(dir / "v" / name);
  }
  write_file(dir / "v" / kFormatFileName, format_json(format));
  VectorFolder folder = open_folder(dir / "v", manifest);
  EXPECT_EQ(folder.format.model, "test-blip2@test");
  EXPECT_EQ(folder.warnings.size(), 2u);  // image_embed and multimodal have no checksum

  // A flipped byte in the data.
  std::string bytes = read_bytes(dir / "v" / "text_proj.npy");
  bytes[bytes.size() - 1] ^= 0x01;
  write_file(dir / "v" / "text_proj.npy", bytes);
  auto [kind, message] = error_of([&] { open_folder(dir / "v", manifest); });
  EXPECT_EQ(kind, ErrorKind::kInput);
  EXPECT_NE(message.find("text_proj.npy: checksum xxh64:"), std::string::npos) << message;
  VectorImportOptions skip;
  skip.verify_checksums = false;
  EXPECT_EQ(open_folder(dir / "v", manifest, skip).items, 10);

  // Another model's identity.
  format.model = "test-blip2@0000";
  format.checksums.clear();
  write_file(dir / "v" / kFormatFileName, format_json(format));
  std::tie(kind, message) = error_of([&] { open_folder(dir / "v", manifest); });
  EXPECT_EQ(kind, ErrorKind::kModel);
  EXPECT_NE(message.find("computed with test-blip2@0000, not with test-blip2@test"),
            std::string::npos)
      << message;
  VectorImportOptions any;
  any.any_model = true;
  EXPECT_EQ(open_folder(dir / "v", manifest, any).items, 10);

  // Counts that disagree with the metadata, and a newer format.
  format.model.clear();
  format.items = 11;
  write_file(dir / "v" / kFormatFileName, format_json(format));
  std::tie(kind, message) = error_of([&] { open_folder(dir / "v", manifest); });
  EXPECT_NE(message.find("says 11 items, metadata.jsonl has 10"), std::string::npos) << message;
  write_file(dir / "v" / kFormatFileName,
             R"({"format": "mmsearch-vectors", "format_version": 99})");
  std::tie(kind, message) = error_of([&] { open_folder(dir / "v", manifest); });
  EXPECT_NE(message.find("version 99 by a newer mmsearch"), std::string::npos) << message;
}

TEST(VectorImport, DefaultBatchKeepsMemoryBounded) {
  const fs::path dir = fresh_dir("batch");
  write_folder(dir / "small", vector_shapes(blip2_manifest()));
  EXPECT_EQ(default_import_batch(open_folder(dir / "small", blip2_manifest())), 16384u);
  // BLIP-2 sizes (32 x 256, D 768): 160 MiB / (8192 + 768 + 1/3 * (256 + 768)) floats.
  VectorFolder big;
  big.shapes = {32, 256, 768};
  big.items = 3;
  big.captions = 1;
  big.kinds = {VectorKind::kImageProj, VectorKind::kImageEmbed, VectorKind::kTextProj,
               VectorKind::kMultimodal};
  const std::size_t batch = default_import_batch(big);
  EXPECT_GT(batch, 4000u);
  EXPECT_LT(batch * (8192 + 768 + 342) * 4, std::size_t{161} << 20);
}

// ---------------------------------------------------------------------------------------------
// Export.

TEST(VectorExport, ReimportingAnExportGivesTheSameStore) {
  const fs::path dir = fresh_dir("export");
  const Manifest manifest = blip2_manifest();
  write_folder(dir / "v", vector_shapes(manifest));
  IndexStore first(dir / "first.sqlite3");
  import_vectors(open_folder(dir / "v", manifest), &first, 0, nullptr);

  VectorExportOptions options;
  options.batch_size = 3;
  options.created_by = "test";
  const VectorExportSummary summary =
      export_vectors(first, "test-blip2@test", manifest, "/", dir / "out", options);
  EXPECT_EQ(summary.items, 10);
  EXPECT_TRUE(summary.warnings.empty());
  EXPECT_EQ(summary.files.size(), 6u);
  for (const auto& entry : fs::directory_iterator(dir / "out")) {
    EXPECT_EQ(entry.path().extension() == ".partial", false) << entry.path();
  }
  const VectorFolder exported = open_folder(dir / "out", manifest);  // checksums verified
  EXPECT_EQ(exported.format.checksums.size(), 5u);
  EXPECT_EQ(exported.format.items, 10);

  IndexStore second(dir / "second.sqlite3");
  import_vectors(exported, &second, 0, nullptr);
  const std::vector<IndexedFile> a = all_files(first, "test-blip2@test");
  const std::vector<IndexedFile> b = all_files(second, "test-blip2@test");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].state.path, b[i].state.path);
    EXPECT_EQ(a[i].category, b[i].category);
    ASSERT_EQ(a[i].captions.size(), b[i].captions.size());
    for (std::size_t c = 0; c < a[i].captions.size(); ++c) {
      EXPECT_EQ(a[i].captions[c].text, b[i].captions[c].text);
      EXPECT_EQ(a[i].captions[c].text_en, b[i].captions[c].text_en);
    }
    ASSERT_EQ(a[i].vectors.size(), b[i].vectors.size());
    for (std::size_t v = 0; v < a[i].vectors.size(); ++v) {
      EXPECT_EQ(a[i].vectors[v].values, b[i].vectors[v].values);  // bit for bit
    }
  }

  // Half precision: within float16 rounding.
  options.half = true;
  export_vectors(first, "test-blip2@test", manifest, "/", dir / "half", options);
  EXPECT_EQ(NpyRowReader(dir / "half" / "image_proj.npy").header().descr, "<f2");
  EXPECT_EQ(open_folder(dir / "half", manifest).dtype, "<f2");
}

TEST(VectorExport, RelativePathsImportUnderAnotherRoot) {
  const fs::path dir = fresh_dir("relative");
  const Manifest manifest = blip_manifest();
  write_folder(dir / "v", vector_shapes(manifest));
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  VectorImportOptions at;
  at.root = dir / "machine-a";
  import_vectors(open_folder(dir / "v", manifest, at), &store, 0, nullptr);
  VectorExportOptions options;
  options.relative = true;
  export_vectors(store, "test-blip@test", manifest, dir / "machine-a", dir / "out", options);
  std::ifstream metadata(dir / "out" / kMetadataFileName);
  std::string line;
  std::getline(metadata, line);
  EXPECT_EQ(parse_metadata_line(line, "m", 1).file, "photos/img0.jpg");
  VectorImportOptions at_b;
  at_b.root = dir / "machine-b";
  IndexStore other(dir / "other.sqlite3");
  import_vectors(open_folder(dir / "out", manifest, at_b), &other, 0, nullptr);
  EXPECT_EQ(other.list_files("test-blip@test", dir / "machine-b").size(), 10u);
}

TEST(VectorExport, IncompleteArraysAreLeftOutAndStaleOnesRemoved) {
  const fs::path dir = fresh_dir("incomplete");
  const Manifest manifest = blip2_manifest();
  write_folder(dir / "v", vector_shapes(manifest));
  FolderSpec no_optional;
  no_optional.optional_arrays = false;
  no_optional.items = 1;  // img0: no captions, so only image_embed is lacking
  write_folder(dir / "w", vector_shapes(manifest), no_optional);
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  import_vectors(open_folder(dir / "v", manifest), &store, 0, nullptr);
  export_vectors(store, "test-blip2@test", manifest, "/", dir / "out", {});
  ASSERT_TRUE(fs::exists(dir / "out" / "image_embed.npy"));

  VectorImportOptions elsewhere;
  elsewhere.root = dir / "elsewhere";
  import_vectors(open_folder(dir / "w", manifest, elsewhere), &store, 0, nullptr);
  const VectorExportSummary summary =
      export_vectors(store, "test-blip2@test", manifest, "/", dir / "out", {});
  EXPECT_EQ(summary.items, 11);
  ASSERT_EQ(summary.warnings.size(), 1u);
  EXPECT_NE(summary.warnings[0].find("image_embed.npy left out: 1 of 11 rows"), std::string::npos)
      << summary.warnings[0];
  EXPECT_FALSE(fs::exists(dir / "out" / "image_embed.npy"));
  EXPECT_TRUE(fs::exists(dir / "out" / "text_proj.npy"));
  const VectorFolder back = open_folder(dir / "out", manifest);
  EXPECT_EQ(back.kinds, (std::vector<VectorKind>{VectorKind::kImageProj, VectorKind::kTextProj,
                                                 VectorKind::kMultimodal}));
}

TEST(VectorExport, NothingToExportIsAnIndexError) {
  const fs::path dir = fresh_dir("nothing");
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  const auto [kind, message] = error_of(
      [&] { export_vectors(store, "test-blip2@test", blip2_manifest(), dir, dir / "out", {}); });
  EXPECT_EQ(kind, ErrorKind::kIndex);
  EXPECT_NE(message.find("holds no vectors of test-blip2@test"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// Imported records meet `mmsearch index` (index_plan).

namespace {

void write_image(const fs::path& path, int seed) {
  fs::create_directories(path.parent_path());
  cv::Mat image(24, 32, CV_8UC3);
  cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(255));
  image.row(0).setTo(cv::Scalar(seed * 37 % 256, seed * 71 % 256, seed * 13 % 256));
  ASSERT_TRUE(cv::imwrite(path.string(), image));
}

IndexPlan plan_for(const IndexStore& store, const std::string& model, const fs::path& root) {
  const FolderScan scan = scan_folder(root, false);
  return plan_index(scan, {}, store.list_files(model, scan.root),
                    [&](const std::string& hash, std::int64_t size) {
                      return store.find_by_content_hash(model, hash, size);
                    });
}

}  // namespace

TEST(VectorImport, LocalFilesAreUnchangedForIndexAndLateOnesAreEmbedded) {
  const fs::path dir = fresh_dir("plan");
  const Manifest manifest = blip_manifest();
  FolderSpec spec;
  spec.items = 4;  // img0 and img3 have no captions; img0 no category
  write_folder(dir / "v", vector_shapes(manifest), spec);
  const fs::path root = dir / "root";
  // The images are found by content; the metadata names them .jpg.
  write_image(root / "photos/img0.png", 1);
  fs::rename(root / "photos/img0.png", root / "photos/img0.jpg");
  VectorImportOptions options;
  options.root = root;
  IndexStore store(dir / "index.sqlite3");
  store.set_vector_encoding(VectorEncoding::kFloat32);  // exact, to compare values as given
  import_vectors(open_folder(dir / "v", manifest, options), &store, 0, nullptr);

  // img0 exists with the size and mtime recorded, no captions and no category (indexing
  // root/photos gives none): unchanged.
  IndexPlan plan = plan_for(store, "test-blip@test", root / "photos");
  EXPECT_EQ(plan.unchanged, 1);
  EXPECT_TRUE(plan.embed.empty());

  // img3 appears later (its record has size 0, mtime 0 and no content hash): embedded, never
  // matched to another record with an empty hash.
  write_image(root / "photos/img3.png", 2);
  fs::rename(root / "photos/img3.png", root / "photos/img3.jpg");
  plan = plan_for(store, "test-blip@test", root / "photos");
  EXPECT_EQ(plan.unchanged, 1);
  ASSERT_EQ(plan.embed.size(), 1u);
  EXPECT_EQ(plan.embed[0].state.path, normalize_index_path(root / "photos/img3.jpg"));
  EXPECT_TRUE(plan.reuse.empty());
  EXPECT_FALSE(store.find_by_content_hash("test-blip@test", plan.embed[0].state.content_hash,
                                          plan.embed[0].state.size));
}
