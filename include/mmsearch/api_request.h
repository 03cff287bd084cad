// The body of `POST /api/query` (docs/API.md), read into a checked request. Kept apart from the
// server so that it can be fuzzed (tests/fuzz/fuzz_api_query.cpp) and unit tested without a
// socket. Every problem is an Error(kUsage) whose message names the field, which the server
// answers with 400.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mmsearch/rules.h"

namespace mmsearch {

struct ApiQueryTerm {
  enum class Kind {
    kText,     // value: the words
    kUpload,   // value: the multipart field holding the image
    kInline,   // value: the image's bytes (from "image_base64")
    kSimilar,  // value: the path of an indexed file, searched by its stored vectors
  };
  Kind kind = Kind::kText;
  std::string value;
  float weight = 1.0f;
};

struct ApiQuery {
  std::vector<ApiQueryTerm> terms;
  std::string model;                    // "" = as indexed
  std::string folder;                   // "" = every served root
  std::vector<std::string> categories;  // empty = any
  Against against = Against::kImage;
  std::int64_t k = 20;
  std::int64_t offset = 0;
  std::optional<float> threshold;
  int rerank = 0;
  std::string translate;  // source language of the text terms, "" = none
  bool exact = false;
};

struct ApiLimits {
  std::int64_t max_k = 1000;  // offset + k
  std::size_t max_terms = 16;
  std::size_t max_text_bytes = 4096;
  int max_rerank = 100;
};

// Parses and checks a query body; Error(kUsage) names the field and what it takes.
ApiQuery parse_api_query(std::string_view body, const ApiLimits& limits = {});

// Standard base64 (RFC 4648, padding optional, no line breaks); Error(kUsage) for anything else.
std::string decode_base64(std::string_view text);

}  // namespace mmsearch
