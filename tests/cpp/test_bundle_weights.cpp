// The weight file of a format-2 bundle (src/weight_layout.cpp, src/bundle_weights.cpp): a
// valid file gives its tensors as views of the mapping, and every kind of damage is a model
// error naming the file. The export side and the round trip are tested in
// tests/python/test_export.py; the goldens check a full-size format-2 bundle end to end.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "mmsearch/bundle_weights.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using namespace mmsearch;
using mmsearch::test_support::error_of;
using nlohmann::json;

namespace {

std::string aligned(std::string bytes) {
  bytes.resize((bytes.size() + 63) / 64 * 64, '\0');
  return bytes;
}

// magic, header length, header, padding, then the data section.
std::string weight_file(const json& header, const std::string& data) {
  const std::string text = header.dump();
  std::string bytes("MMSTENS\0", 8);
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(text.size() >> (8 * i) & 0xff));
  return aligned(bytes + text) + data;
}

std::string floats(std::initializer_list<float> values) {
  std::string out;
  for (const float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
  return out;
}

json valid_header() {
  return {{"format", "mmsearch-tensors"},
          {"version", 1},
          {"tensors",
           {{"a.weight", {{"dtype", "fp32"}, {"shape", {2, 2}}, {"offset", 0}, {"bytes", 16}}},
            {"b.bias", {{"dtype", "fp32"}, {"shape", {3}}, {"offset", 64}, {"bytes", 12}}}}},
          {"modules", {{"image", {"a.weight"}}, {"text", {"a.weight", "b.bias"}}}}};
}

std::string valid_data() { return aligned(floats({1, 2, 3, 4})) + floats({5, 6, 7}); }

}  // namespace

TEST(WeightFile, TensorsAreTheStoredValuesAndModulesListTheirWeights) {
  const fs::path dir = test_support::fresh_test_dir("weights", "valid");
  test_support::write_file(dir / "weights.bin", weight_file(valid_header(), valid_data()));
  const auto file = WeightFile::open(dir / "weights.bin");
  EXPECT_EQ(file->module_weights("text"), (std::vector<std::string>{"a.weight", "b.bias"}));
  EXPECT_TRUE(file->module_weights("multimodal").empty());
  torch::Tensor a = file->tensor("a.weight");
  EXPECT_TRUE(torch::equal(a, torch::tensor({{1.f, 2.f}, {3.f, 4.f}})));
  torch::Tensor b = file->tensor("b.bias");
  EXPECT_TRUE(torch::equal(b, torch::tensor({5.f, 6.f, 7.f})));
  EXPECT_EQ(error_of([&] { file->tensor("c"); }).first, ErrorKind::kModel);
}

TEST(WeightFile, TensorsOutliveTheFileObject) {
  const fs::path dir = test_support::fresh_test_dir("weights", "outlive");
  test_support::write_file(dir / "weights.bin", weight_file(valid_header(), valid_data()));
  torch::Tensor b;
  {
    auto file = WeightFile::open(dir / "weights.bin");
    b = file->tensor("b.bias");
  }
  EXPECT_FLOAT_EQ(b[2].item<float>(), 7.f);
  b.add_(1);  // a private mapping: the file does not change
  auto again = WeightFile::open(dir / "weights.bin");
  EXPECT_FLOAT_EQ(again->tensor("b.bias")[2].item<float>(), 7.f);
}

// The process's resident set, from /proc/self/statm.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t total = 0, resident = 0;
  statm >> total >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// release() drops a weight's pages from the process once the caller has its own copy, and a
// later read still sees the stored values, as does a small neighbour sharing a page.
TEST(WeightFile, ReleasedWeightsLeaveTheResidentSetAndReadBackUnchanged) {
  constexpr std::int64_t kCount = 4 << 20;  // 16 MiB of fp32
  std::string big(kCount * sizeof(float), '\0');
  for (std::int64_t i = 0; i < kCount; ++i) {
    const float v = static_cast<float>(i % 1000);
    std::memcpy(&big[i * sizeof(float)], &v, sizeof v);
  }
  const json header = {
      {"format", "mmsearch-tensors"},
      {"version", 1},
      {"tensors",
       {{"big", {{"dtype", "fp32"}, {"shape", {kCount}}, {"offset", 0}, {"bytes", big.size()}}},
        {"small", {{"dtype", "fp32"}, {"shape", {3}}, {"offset", big.size()}, {"bytes", 12}}}}},
      {"modules", {{"image", {"big", "small"}}}}};
  const fs::path dir = test_support::fresh_test_dir("weights", "release");
  test_support::write_file(dir / "weights.bin", weight_file(header, big + floats({5, 6, 7})));
  const auto file = WeightFile::open(dir / "weights.bin");
  const torch::Tensor weight = file->tensor("big");
  const double sum = weight.sum(torch::kFloat64).item<double>();  // faults every page in
  const std::size_t before = resident_bytes();
  file->release("big");
  file->release("no such weight");  // ignored
  const std::size_t after = resident_bytes();
  EXPECT_GE(before - std::min(before, after), std::size_t{12} << 20)
      << "resident " << before << " -> " << after;
  EXPECT_DOUBLE_EQ(weight.sum(torch::kFloat64).item<double>(), sum);
  EXPECT_TRUE(torch::equal(file->tensor("small"), torch::tensor({5.f, 6.f, 7.f})));
}

TEST(WeightFile, DamageIsAModelErrorNamingTheFile) {
  const fs::path dir = test_support::fresh_test_dir("weights", "damaged");
  const std::string good = weight_file(valid_header(), valid_data());
  std::vector<std::pair<std::string, std::string>> cases;
  cases.push_back({"empty", ""});
  cases.push_back({"magic", "NOTTENS" + good.substr(7)});
  cases.push_back({"truncated", good.substr(0, good.size() - 4)});
  std::string long_header = good;
  long_header[15] = '\x7f';
  cases.push_back({"header length", long_header});
  cases.push_back({"not json", weight_file(json::array({1, 2}), valid_data()).replace(16, 1, "#")});
  auto with = [&](const std::function<void(json&)>& change) {
    json h = valid_header();
    change(h);
    return weight_file(h, valid_data());
  };
  cases.push_back({"version", with([](json& h) { h["version"] = 2; })});
  cases.push_back({"dtype", with([](json& h) { h["tensors"]["a.weight"]["dtype"] = "fp8"; })});
  cases.push_back({"bytes", with([](json& h) { h["tensors"]["a.weight"]["bytes"] = 20; })});
  cases.push_back({"offset", with([](json& h) { h["tensors"]["b.bias"]["offset"] = 4096; })});
  cases.push_back({"unaligned", with([](json& h) { h["tensors"]["b.bias"]["offset"] = 8; })});
  cases.push_back({"shape", with([](json& h) { h["tensors"]["a.weight"]["shape"] = {-1, 4}; })});
  cases.push_back({"huge shape", with([](json& h) {
                     h["tensors"]["a.weight"]["shape"] = {1LL << 40, 1LL << 40};
                   })});
  cases.push_back({"unknown name", with([](json& h) { h["modules"]["image"] = {"zzz"}; })});
  cases.push_back({"wrong type", with([](json& h) { h["tensors"]["a.weight"]["shape"] = "2x2"; })});
  // Found by fuzz_weight_layout: numbers that are not integers were converted out of range.
  cases.push_back({"float offset", with([](json& h) { h["tensors"]["b.bias"]["offset"] = 5e75; })});
  cases.push_back({"float bytes", with([](json& h) { h["tensors"]["b.bias"]["bytes"] = 12.5; })});
  cases.push_back({"float dim", with([](json& h) {
                     h["tensors"]["a.weight"]["shape"] = {2.0, 1e300};
                   })});
  for (const auto& [what, bytes] : cases) {
    const fs::path path = dir / (what + ".bin");
    test_support::write_file(path, bytes);
    const auto [kind, message] = error_of([&] { WeightFile::open(path); });
    EXPECT_EQ(kind, ErrorKind::kModel) << what << ": " << message;
    EXPECT_NE(message.find(path.string()), std::string::npos) << what << ": " << message;
  }
  const auto [kind, message] = error_of([&] { WeightFile::open(dir / "missing.bin"); });
  EXPECT_EQ(kind, ErrorKind::kModel);
  EXPECT_NE(message.find("missing.bin: cannot open"), std::string::npos) << message;
}
