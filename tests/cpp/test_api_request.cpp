// The body of `POST /api/query` (mmsearch/api_request.h): what parses, and that every problem
// is Error(kUsage) naming the field (the server's 400).
#include <gtest/gtest.h>

#include "mmsearch/api_request.h"
#include "mmsearch/error.h"
#include "test_dirs.h"

using namespace mmsearch;
using mmsearch::test_support::error_of;

namespace {

std::string usage_error(const std::string& body) {
  const auto [kind, message] = error_of([&] { parse_api_query(body); });
  EXPECT_EQ(kind, ErrorKind::kUsage) << body;
  return message;
}

TEST(ApiRequest, TheShorthandAndTheDefaults) {
  const ApiQuery q = parse_api_query(R"({"text": "a pizza"})");
  ASSERT_EQ(q.terms.size(), 1u);
  EXPECT_EQ(q.terms[0].kind, ApiQueryTerm::Kind::kText);
  EXPECT_EQ(q.terms[0].value, "a pizza");
  EXPECT_EQ(q.terms[0].weight, 1.0f);
  EXPECT_EQ(q.k, 20);
  EXPECT_EQ(q.offset, 0);
  EXPECT_EQ(q.against, Against::kImage);
  EXPECT_FALSE(q.threshold);
  EXPECT_EQ(q.rerank, 0);
}

TEST(ApiRequest, EveryField) {
  const ApiQuery q = parse_api_query(R"({"terms": [{"text": "basil", "weight": 0.3},
      {"upload": "image", "weight": 0.7}, {"similar": "/p/a.jpg"}, {"image_base64": "aGk="}],
      "k": 24, "offset": 48, "against": "multimodal", "folder": "/p", "categories": ["pizza"],
      "model": "blip-base", "threshold": -0.5, "rerank": 20, "translate": "it", "exact": true})");
  ASSERT_EQ(q.terms.size(), 4u);
  EXPECT_EQ(q.terms[1].kind, ApiQueryTerm::Kind::kUpload);
  EXPECT_EQ(q.terms[1].value, "image");
  EXPECT_FLOAT_EQ(q.terms[1].weight, 0.7f);
  EXPECT_EQ(q.terms[2].kind, ApiQueryTerm::Kind::kSimilar);
  EXPECT_EQ(q.terms[3].kind, ApiQueryTerm::Kind::kInline);
  EXPECT_EQ(q.terms[3].value, "hi");
  EXPECT_EQ(q.k, 24);
  EXPECT_EQ(q.offset, 48);
  EXPECT_EQ(q.against, Against::kMultimodal);
  EXPECT_EQ(q.folder, "/p");
  EXPECT_EQ(q.categories, std::vector<std::string>{"pizza"});
  EXPECT_EQ(q.model, "blip-base");
  EXPECT_FLOAT_EQ(*q.threshold, -0.5f);
  EXPECT_EQ(q.rerank, 20);
  EXPECT_EQ(q.translate, "it");
  EXPECT_TRUE(q.exact);
}

TEST(ApiRequest, ProblemsNameTheirField) {
  EXPECT_NE(usage_error("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(usage_error(R"({"text": "a", "k": 2.5})").find("\"k\""), std::string::npos);
  EXPECT_NE(usage_error(R"({"text": "a", "k": 18446744073709551615})").find("\"k\""),
            std::string::npos);
  EXPECT_NE(usage_error(R"({"text": "a", "rerank": 101})").find("\"rerank\""), std::string::npos);
  EXPECT_NE(usage_error(R"({"terms": [{"text": "a", "weight": 1e40}]})").find("terms[0]"),
            std::string::npos);
  EXPECT_NE(usage_error(R"({"terms": [{"text": "a", "colour": 1}]})").find("\"colour\""),
            std::string::npos);
  EXPECT_NE(usage_error(R"({"text": "a", "terms": [{"text": "b"}]})").find("not both"),
            std::string::npos);
  EXPECT_NE(usage_error("{\"text\": \"\xff\"}").find("JSON"), std::string::npos);
  std::string many = R"({"terms": [)";
  for (int i = 0; i < 17; ++i) many += std::string(i ? "," : "") + R"({"text": "a"})";
  EXPECT_NE(usage_error(many + "]}").find("more than 16"), std::string::npos);
  EXPECT_NE(usage_error(R"({"text": ")" + std::string(5000, 'a') + "\"}").find("longer than"),
            std::string::npos);
}

TEST(ApiRequest, Base64) {
  EXPECT_EQ(decode_base64("aGVsbG8="), "hello");
  EXPECT_EQ(decode_base64("aGVsbG8"), "hello");  // padding optional
  EXPECT_EQ(decode_base64("data:image/png;base64,aGk="), "hi");
  EXPECT_EQ(decode_base64("-_8"), std::string("\xfb\xff"));  // URL-safe alphabet
  EXPECT_EQ(decode_base64(""), "");
  EXPECT_EQ(error_of([] { decode_base64("a"); }).first, ErrorKind::kUsage);
  EXPECT_EQ(error_of([] { decode_base64("aGk*"); }).first, ErrorKind::kUsage);
  EXPECT_EQ(error_of([] { decode_base64("data:text/plain,hi"); }).first, ErrorKind::kUsage);
}

}  // namespace
