// Manifest validation and bundle discovery, on synthetic bundle folders (no TorchScript).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mmsearch/bundle.h"
#include "mmsearch/error.h"
#include "mmsearch/hash.h"
#include "test_dirs.h"

namespace fs = std::filesystem;
using mmsearch::Bundle;
using mmsearch::Error;
using mmsearch::ErrorKind;
using mmsearch::test_support::write_file;
using nlohmann::json;

namespace {

json valid_manifest() {
  return json::parse(R"({
    "format": "mmsearch-bundle", "format_version": 1, "name": "fake-blip", "family": "blip",
    "vision_encoder": "vit-b16",
    "image": {"size": 224, "mean": [0.48145466, 0.4578275, 0.40821073],
              "std": [0.26862954, 0.26130258, 0.27577711], "resize": "pil-bicubic-squash"},
    "text": {"vocab": "vocab.txt", "normalise": "lavis-pre-caption", "max_words": 50,
             "lowercase": true, "max_tokens": 35, "itm_max_tokens": 35,
             "cls_token_id": 101, "sep_token_id": 102, "pad_token_id": 0, "unk_token_id": 100,
             "enc_token_id": 30523, "special_tokens": {"[ENC]": 30523}},
    "dims": {"vision_tokens": 197, "vision_width": 768, "image_tokens": 197, "hidden": 768,
             "embed": 256, "query_tokens": 0},
    "itm": false, "similarity": {"text_image": "cls", "image_image": "cls"},
    "weights_dtype": "fp32", "source": {"kind": "tiny"}, "torch_version": "1.13.0a0",
    "files": {}
  })");
}

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ =
        fs::path(MMSEARCH_TEST_TMP_DIR) /
        ("bundle_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  // Writes a bundle whose files hold fixed bytes and whose manifest lists their real hashes.
  fs::path make_bundle(const std::string& folder, json manifest) {
    const fs::path dir = root_ / folder;
    fs::create_directories(dir);
    for (const char* name : {"image.pt", "text.pt", "multimodal.pt", "vocab.txt"}) {
      const std::string content = std::string("content of ") + name;
      write_file(dir / name, content);
      if (!manifest["files"].contains(name)) {
        manifest["files"][name] = mmsearch::sha256_bytes(content.data(), content.size());
      }
    }
    write_file(dir / "mmsearch.json", manifest.dump(2));
    return dir;
  }
  fs::path root_;
};

TEST_F(BundleTest, ValidManifestParsesEveryField) {
  const fs::path dir = make_bundle("fake-blip", valid_manifest());
  const Bundle bundle = Bundle::open(dir);
  const auto& m = bundle.manifest();
  EXPECT_EQ(m.name, "fake-blip");
  EXPECT_EQ(m.family, mmsearch::Family::kBlip);
  EXPECT_EQ(m.image.size, 224);
  EXPECT_FLOAT_EQ(m.image.std[2], 0.27577711f);
  EXPECT_EQ(m.text.max_tokens, 35);
  ASSERT_TRUE(m.text.enc_token_id.has_value());
  EXPECT_EQ(*m.text.enc_token_id, 30523);
  EXPECT_EQ(m.dims.embed, 256);
  EXPECT_EQ(m.similarity_text_image, mmsearch::ScoreRule::kCls);
  EXPECT_NO_THROW(bundle.verify_files());
  EXPECT_EQ(bundle.identity().rfind("fake-blip@", 0), 0u);
}

TEST_F(BundleTest, MissingFieldIsNamed) {
  json manifest = valid_manifest();
  manifest["dims"].erase("embed");
  const fs::path dir = make_bundle("broken", manifest);
  try {
    Bundle::open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find("dims.embed"), std::string::npos) << e.what();
  }
}

TEST_F(BundleTest, UnknownFamilyOrScoreRuleMakesTheBundleInvalid) {
  // Family and score rules are enums validated when the manifest is parsed: a bad value is a
  // model error (exit 4) naming the field, never a string compared later.
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"family", "blip3"}, {"text_image", "max"}, {"image_image", "mean"}}) {
    json manifest = valid_manifest();
    if (field == "family") {
      manifest["family"] = value;
    } else {
      manifest["similarity"][field] = value;
    }
    const fs::path dir = make_bundle("bad-" + field, manifest);
    try {
      Bundle::open(dir);
      FAIL() << "expected an error for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModel);
      EXPECT_NE(std::string(e.what()).find(value), std::string::npos) << e.what();
      if (field != "family") {
        EXPECT_NE(std::string(e.what()).find("similarity." + field), std::string::npos) << e.what();
      }
    }
  }
  // A translation bundle is not an image-text model.
  json marian = valid_manifest();
  marian["family"] = "marian";
  EXPECT_THROW(Bundle::open(make_bundle("marian", marian)), Error);
}

TEST_F(BundleTest, WrongTypesInTheCommonFieldsAreModelErrors) {
  // A hostile or broken manifest is an invalid bundle naming the file, never a JSON type error
  // escaping as an internal error.
  for (const char* field : {"format", "format_version", "family", "name", "files"}) {
    const fs::path dir = make_bundle(std::string("typed-") + field, valid_manifest());
    json manifest = valid_manifest();
    manifest[field] = json::array({1, 2});
    write_file(dir / "mmsearch.json", manifest.dump(2));
    try {
      Bundle::open(dir);
      FAIL() << "expected an error for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModel) << field << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("mmsearch.json"), std::string::npos) << e.what();
    }
  }
}

// Found by fuzz_manifest: an integer field holding 1e300, 2^40 or 35.5 was converted out of
// range (undefined behaviour), and a number beyond a double escaped as a JSON exception.
TEST_F(BundleTest, NumbersOutOfRangeAreModelErrorsNamingTheField) {
  const std::vector<std::pair<std::string, json>> cases = {{"1e300", json(1e300)},
                                                           {"2^40", json(std::int64_t{1} << 40)},
                                                           {"35.5", json(35.5)},
                                                           {"negative", json(-3)}};
  for (const auto& [label, value] : cases) {
    json manifest = valid_manifest();
    manifest["image"]["size"] = value;
    const fs::path dir = make_bundle("range-" + label, manifest);
    try {
      Bundle::open(dir);
      FAIL() << "expected an error for " << label;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModel) << label << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("image.size"), std::string::npos) << e.what();
    }
  }
  const fs::path dir = make_bundle("range-1e400", valid_manifest());
  write_file(dir / "mmsearch.json", R"({"format": "mmsearch-bundle", "format_version": 1e400})");
  try {
    Bundle::open(dir);
    FAIL() << "expected an error for 1e400";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel) << e.what();
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}

TEST_F(BundleTest, NewerFormatVersionIsRefused) {
  json manifest = valid_manifest();
  manifest["format_version"] = mmsearch::kBundleFormatVersion + 1;
  const fs::path dir = make_bundle("future", manifest);
  try {
    Bundle::open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("format version 3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("versions 1 to 2"), std::string::npos) << e.what();
  }
}

TEST_F(BundleTest, NewerTorchIsRefused) {
  json manifest = valid_manifest();
  manifest["torch_version"] = "2.3.0";
  const fs::path dir = make_bundle("newtorch", manifest);
  try {
    Bundle::open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("torch 2.3.0"), std::string::npos) << e.what();
  }
}

TEST_F(BundleTest, TamperedFileFailsVerificationAndNamesIt) {
  const fs::path dir = make_bundle("tampered", valid_manifest());
  write_file(dir / "text.pt", "something else");
  const Bundle bundle = Bundle::open(dir);
  try {
    bundle.verify_files();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text.pt"), std::string::npos) << e.what();
  }
}

TEST_F(BundleTest, VerificationCacheIsInvalidatedByAChange) {
  const fs::path dir = make_bundle("cached", valid_manifest());
  const fs::path cache = root_ / "verified.json";
  const Bundle bundle = Bundle::open(dir);
  bundle.verify_files(cache);
  ASSERT_TRUE(fs::exists(cache));
  write_file(dir / "image.pt", "tampered after verification!");
  EXPECT_THROW(bundle.verify_files(cache), Error);
}

TEST_F(BundleTest, MissingFileIsNamed) {
  const fs::path dir = make_bundle("missing", valid_manifest());
  fs::remove(dir / "multimodal.pt");
  try {
    Bundle::open(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multimodal.pt"), std::string::npos) << e.what();
  }
}

TEST_F(BundleTest, DiscoveryListsBrokenBundlesWithTheirReason) {
  make_bundle("good", valid_manifest());
  const fs::path bad = make_bundle("bad", valid_manifest());
  write_file(bad / "mmsearch.json", "{not json");
  const auto listings = mmsearch::discover_bundles({root_}, true);
  ASSERT_EQ(listings.size(), 2u);
  int valid = 0, invalid = 0;
  for (const auto& listing : listings) {
    if (listing.bundle) {
      ++valid;
    } else {
      ++invalid;
      EXPECT_NE(listing.invalid_reason.find("not valid JSON"), std::string::npos);
    }
  }
  EXPECT_EQ(valid, 1);
  EXPECT_EQ(invalid, 1);
}

TEST_F(BundleTest, UnknownModelSaysWhatExists) {
  make_bundle("fake-blip", valid_manifest());
  try {
    mmsearch::find_bundle("nope", {root_});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(message.find("unknown model 'nope'"), std::string::npos) << message;
    EXPECT_NE(message.find("fake-blip"), std::string::npos) << message;
  }
  EXPECT_EQ(mmsearch::find_bundle("fake-blip", {root_}).manifest().name, "fake-blip");
}

TEST_F(BundleTest, FileNamesMayNotEscapeTheBundle) {
  json manifest = valid_manifest();
  manifest["files"]["../../etc/passwd"] = std::string(64, 'a');
  const fs::path dir = make_bundle("escape", manifest);
  EXPECT_THROW(Bundle::open(dir), Error);
}

}  // namespace
