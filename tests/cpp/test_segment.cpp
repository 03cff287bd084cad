// Vector segments: encodings, the first stage's bounds, and that damage is always detected.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "../../src/vector_kernels.h"
#include "mmsearch/error.h"
#include "mmsearch/segment.h"
#include "random_embeddings.h"
#include "test_dirs.h"

namespace mmsearch {
namespace {
namespace fs = std::filesystem;
using test_support::random_embeddings;

std::vector<std::uint8_t> build(const Embeddings& e, VectorEncoding encoding) {
  std::vector<SegmentEntry> entries;
  for (std::int64_t i = 0; i < e.count; ++i)
    entries.push_back({static_cast<int>(i), -1, e.item(i)});
  SegmentBuilder builder("m@1", e.count);
  builder.add_kind(VectorKind::kImageProj, encoding, e.vectors_per_item, e.dim, entries);
  return builder.serialize();
}

std::vector<float> decode_all(const SegmentFile& seg) {
  const SegmentArray& a = *seg.header().find_array("image_proj");
  const SegmentArray* scales = seg.header().find_array("image_proj.scale");
  std::vector<float> out(a.rows * a.row_elems);
  kernels::decode_rows(a.type, seg.data(a),
                       scales ? reinterpret_cast<const float*>(seg.data(*scales)) : nullptr, 0,
                       a.rows, static_cast<int>(a.row_elems), out.data());
  return out;
}

TEST(Segment, EncodingsRoundTripWithinTheirError) {
  const Embeddings e = random_embeddings(50, 4, 64, 1);
  for (const auto& [encoding, tolerance] :
       std::vector<std::pair<VectorEncoding, float>>{{VectorEncoding::kFloat32, 0.0f},
                                                     {VectorEncoding::kFloat16, 1e-3f},
                                                     {VectorEncoding::kInt8, 0.01f}}) {
    const auto seg = SegmentFile::from_bytes(build(e, encoding), "mem");
    EXPECT_EQ(seg->header().model_id, "m@1");
    EXPECT_EQ(seg->header().items, 50);
    const std::vector<float> decoded = decode_all(*seg);
    ASSERT_EQ(decoded.size(), e.values.size());
    float worst = 0.0f;
    for (std::size_t i = 0; i < decoded.size(); ++i) {
      worst = std::max(worst, std::fabs(decoded[i] - e.values[i]));
    }
    EXPECT_LE(worst, tolerance) << to_string(encoding);
  }
}

TEST(Segment, FirstStageBoundsHoldForEveryQuery) {
  // m.t <= max_q v_q.t <= m.t + r for unit t, whatever the encoding: what makes the two-stage
  // search exact when it says so.
  const Embeddings items = random_embeddings(200, 8, 32, 2);
  const Embeddings queries = random_embeddings(50, 1, 32, 3);
  for (VectorEncoding encoding :
       {VectorEncoding::kFloat32, VectorEncoding::kFloat16, VectorEncoding::kInt8}) {
    const auto seg = SegmentFile::from_bytes(build(items, encoding), "mem");
    const SegmentHeader& h = seg->header();
    const SegmentArray& mean = *h.find_array("image_proj.mean");
    const SegmentArray* mean_scales = h.find_array("image_proj.mean.scale");
    const auto* radius =
        reinterpret_cast<const float*>(seg->data(*h.find_array("image_proj.radius")));
    const std::vector<float> decoded = decode_all(*seg);
    for (std::int64_t q = 0; q < queries.count; ++q) {
      std::vector<float> lower(items.count);
      kernels::scan_rows(
          mean.type, seg->data(mean),
          mean_scales ? reinterpret_cast<const float*>(seg->data(*mean_scales)) : nullptr,
          items.count, 32, queries.item(q), 1, lower.data());
      for (std::int64_t i = 0; i < items.count; ++i) {
        std::vector<float> rows(8);
        kernels::scan_rows(ArrayType::kF32,
                           reinterpret_cast<const std::uint8_t*>(decoded.data() + i * 8 * 32),
                           nullptr, 8, 32, queries.item(q), 1, rows.data());
        const float exact = *std::max_element(rows.begin(), rows.end());
        EXPECT_LE(lower[i], exact + 1e-5f);
        EXPECT_GE(lower[i] + radius[i], exact - 1e-5f) << to_string(encoding);
      }
    }
  }
}

TEST(Segment, ScanKernelsAgreeWithAPlainDotProduct) {
  const Embeddings items = random_embeddings(37, 1, 200, 4);  // a dim that is no multiple of 16
  const Embeddings query = random_embeddings(3, 1, 200, 5);
  std::vector<float> scores(37);
  kernels::scan_rows(ArrayType::kF32, reinterpret_cast<const std::uint8_t*>(items.values.data()),
                     nullptr, 37, 200, query.values.data(), 3, scores.data());
  for (int i = 0; i < 37; ++i) {
    float best = -2.0f;
    for (int q = 0; q < 3; ++q) {
      double dot = 0.0;
      for (int d = 0; d < 200; ++d) dot += items.item(i)[d] * query.item(q)[d];
      best = std::max(best, static_cast<float>(dot));
    }
    EXPECT_NEAR(scores[i], best, 1e-5f);
  }
}

class SegmentFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::fresh_test_dir(
        "segment", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    path_ = dir_ / "a.seg";
    write_segment_file(path_, build(random_embeddings(3000, 1, 64, 6), VectorEncoding::kFloat16));
  }
  void flip_byte(std::uint64_t offset) {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c ^= 0x40;
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }
  std::string error_of_open() {
    try {
      const auto seg = SegmentFile::open(path_);
      const SegmentArray& a = *seg->header().find_array("image_proj");
      seg->verify_rows(a, 0, a.rows);
      return "";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIndex) << e.what();
      return e.what();
    }
  }
  fs::path dir_, path_;
};

TEST_F(SegmentFileTest, AnIntactFileOpensAndVerifies) { EXPECT_EQ(error_of_open(), ""); }

TEST_F(SegmentFileTest, AFlippedVectorByteFailsItsBlockChecksum) {
  const auto seg = SegmentFile::open(path_);
  const SegmentArray a = *seg->header().find_array("image_proj");
  flip_byte(a.offset + a.row_bytes() * 2900 + 3);  // block 22 (128 rows of 128 B per block)
  const auto reopened = SegmentFile::open(path_);
  // Blocks before the damage still verify; the damaged one names itself.
  EXPECT_NO_THROW(reopened->verify_rows(a, 0, 10));
  const std::string message = error_of_open();
  EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
  EXPECT_NE(message.find(path_.string()), std::string::npos) << message;
  EXPECT_NE(message.find("--rebuild"), std::string::npos) << message;
}

TEST_F(SegmentFileTest, RowsReadAloneMatchTheMappingAndDamageIsCaught) {
  const auto seg = SegmentFile::open(path_);
  const SegmentArray a = *seg->header().find_array("image_proj");
  std::vector<std::uint8_t> buffer;
  // Any range, across block boundaries too, reads the bytes the mapping holds.
  for (const auto& [first, count] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {0, 1}, {127, 2}, {2900, 1}, {a.rows - 1, 1}, {100, 300}}) {
    const std::uint8_t* rows = seg->read_rows(a, first, count, buffer);
    EXPECT_EQ(std::memcmp(rows, seg->data(a) + first * a.row_bytes(), count * a.row_bytes()), 0)
        << first;
  }
  flip_byte(a.offset + a.row_bytes() * 2900 + 3);
  const auto reopened = SegmentFile::open(path_);
  EXPECT_NO_THROW(reopened->read_rows(a, 10, 1, buffer));
  try {
    reopened->read_rows(a, 2901, 1, buffer);  // same block as the damage, another row
    ADD_FAILURE() << "read a damaged block";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIndex);
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path_.string()), std::string::npos) << e.what();
  }
}

TEST_F(SegmentFileTest, AFlippedHeaderByteOrATruncatedFileIsRefused) {
  flip_byte(40);
  EXPECT_NE(error_of_open().find("header checksum"), std::string::npos);
  fs::resize_file(path_, 0);
  EXPECT_NE(error_of_open().find("corrupt"), std::string::npos);
  write_segment_file(dir_ / "b.seg",
                     build(random_embeddings(10, 1, 8, 7), VectorEncoding::kFloat32));
  fs::resize_file(dir_ / "b.seg", fs::file_size(dir_ / "b.seg") - 9);
  path_ = dir_ / "b.seg";
  EXPECT_NE(error_of_open().find("outside the file"), std::string::npos);
}

TEST_F(SegmentFileTest, ANewerFormatVersionIsRefusedAsSuch) {
  std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(8);
  const std::uint32_t version = SegmentHeader::kFormatVersion + 1;
  f.write(reinterpret_cast<const char*>(&version), 4);
  f.close();
  const std::string message = error_of_open();
  EXPECT_NE(message.find("newer mmsearch"), std::string::npos) << message;
}

TEST(Segment, WritingNeverReplacesAnExistingFile) {
  const fs::path dir = test_support::fresh_test_dir("segment", "exclusive");
  write_segment_file(dir / "x.seg", build(random_embeddings(2, 1, 8, 8), VectorEncoding::kFloat32));
  EXPECT_THROW(write_segment_file(dir / "x.seg", {1, 2, 3}), Error);
  EXPECT_NO_THROW(SegmentFile::open(dir / "x.seg"));
}

}  // namespace
}  // namespace mmsearch
