#include "mmsearch/api_request.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "json_number.h"
#include "mmsearch/error.h"
#include "mmsearch/text.h"

namespace mmsearch {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& message) { throw Error(ErrorKind::kUsage, message); }

std::string string_field(const json& object, const char* name, std::size_t max_bytes = 4096) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return {};
  if (!it->is_string()) bad(std::string("\"") + name + "\" must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (value.size() > max_bytes) {
    bad(std::string("\"") + name + "\" is longer than " + std::to_string(max_bytes) + " bytes");
  }
  std::size_t offset = 0;
  if (!is_valid_utf8(value, &offset)) {
    bad(std::string("\"") + name + "\" is not valid UTF-8 (byte " + std::to_string(offset) + ")");
  }
  return value;
}

std::int64_t integer_field(const json& object, const char* name, std::int64_t fallback,
                           std::int64_t low, std::int64_t high) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return fallback;
  if (!is_json_integer_of<std::int64_t>(*it) || it->get<std::int64_t>() < low ||
      it->get<std::int64_t>() > high) {
    bad(std::string("\"") + name + "\" must be an integer from " + std::to_string(low) + " to " +
        std::to_string(high));
  }
  return it->get<std::int64_t>();
}

std::optional<float> number_field(const json& object, const char* name, double low, double high) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad(std::string("\"") + name + "\" must be a number");
  const double value = it->get<double>();
  if (!std::isfinite(value) || value < low || value > high) {
    bad(std::string("\"") + name + "\" must be a number from " + std::to_string(low) + " to " +
        std::to_string(high));
  }
  return static_cast<float>(value);
}

bool bool_field(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return false;
  if (!it->is_boolean()) bad(std::string("\"") + name + "\" must be true or false");
  return it->get<bool>();
}

ApiQueryTerm parse_term(const json& term, std::size_t index, const ApiLimits& limits) {
  const std::string where = "terms[" + std::to_string(index) + "]";
  if (!term.is_object()) bad(where + " must be an object such as {\"text\": \"pizza\"}");
  static const char* const kKinds[] = {"text", "upload", "image_base64", "similar"};
  int given = 0;
  for (const char* kind : kKinds) given += term.contains(kind) ? 1 : 0;
  if (given != 1) {
    bad(where + " needs exactly one of \"text\", \"upload\", \"image_base64\" or \"similar\"");
  }
  for (const auto& item : term.items()) {
    if (item.key() != "weight" &&
        std::none_of(std::begin(kKinds), std::end(kKinds),
                     [&](const char* kind) { return item.key() == kind; })) {
      bad(where + ": unknown field \"" + item.key() + "\"");
    }
  }
  ApiQueryTerm parsed;
  try {
    if (term.contains("text")) {
      parsed.kind = ApiQueryTerm::Kind::kText;
      parsed.value = string_field(term, "text", limits.max_text_bytes);
      if (parsed.value.find_first_not_of(" \t\r\n\v\f") == std::string::npos) {
        bad("\"text\" is empty or blank");
      }
    } else if (term.contains("upload")) {
      parsed.kind = ApiQueryTerm::Kind::kUpload;
      parsed.value = string_field(term, "upload", 256);
      if (parsed.value.empty()) bad("\"upload\" must name a multipart field");
    } else if (term.contains("image_base64")) {
      parsed.kind = ApiQueryTerm::Kind::kInline;
      const auto& data = term["image_base64"];
      if (!data.is_string()) bad("\"image_base64\" must be a string");
      parsed.value = decode_base64(data.get_ref<const std::string&>());
      if (parsed.value.empty()) bad("\"image_base64\" holds no bytes");
    } else {
      parsed.kind = ApiQueryTerm::Kind::kSimilar;
      parsed.value = string_field(term, "similar", 8192);
      if (parsed.value.empty()) bad("\"similar\" must be the path of an indexed file");
    }
    parsed.weight = number_field(term, "weight", -100.0, 100.0).value_or(1.0f);
  } catch (const Error& e) {
    bad(where + ": " + e.what());
  }
  return parsed;
}

}  // namespace

std::string decode_base64(std::string_view text) {
  // A data: URL's prefix is what a browser's FileReader gives; taking it saves clients a step.
  if (text.rfind("data:", 0) == 0) {
    const auto comma = text.find(',');
    if (comma == std::string_view::npos ||
        text.substr(0, comma).find(";base64") == std::string_view::npos) {
      bad("a data: URL must be base64 (data:image/...;base64,...)");
    }
    text.remove_prefix(comma + 1);
  }
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) bad("base64 text has a stray last character");
  static const char* const kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_";
  if (const auto bad_at = text.find_first_not_of(kAlphabet); bad_at != std::string_view::npos) {
    bad("base64 text has an invalid character at offset " + std::to_string(bad_at));
  }
  // OpenSSL decodes the standard alphabet in whole quads: the URL-safe letters are mapped and
  // the padding put back, and the zero bytes it decodes for the padding are dropped.
  std::string padded(text);
  std::replace(padded.begin(), padded.end(), '-', '+');
  std::replace(padded.begin(), padded.end(), '_', '/');
  const std::size_t padding = (4 - padded.size() % 4) % 4;
  padded.append(padding, '=');
  std::string out(padded.size() / 4 * 3, '\0');
  const int written = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(padded.data()),
                                      static_cast<int>(padded.size()));
  if (written < 0) bad("base64 text could not be decoded");
  out.resize(static_cast<std::size_t>(written) - padding);
  return out;
}

ApiQuery parse_api_query(std::string_view body, const ApiLimits& limits) {
  json request;
  try {
    request = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    bad(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!request.is_object()) bad("the body must be a JSON object such as {\"text\": \"pizza\"}");
  static const char* const kFields[] = {"terms",      "text",    "model",     "folder",
                                        "categories", "against", "k",         "offset",
                                        "threshold",  "rerank",  "translate", "exact"};
  for (const auto& item : request.items()) {
    if (std::none_of(std::begin(kFields), std::end(kFields),
                     [&](const char* field) { return item.key() == field; })) {
      bad("unknown field \"" + item.key() + "\"");
    }
  }
  ApiQuery query;
  // {"text": "pizza"} is the one-term shorthand of {"terms": [{"text": "pizza"}]}.
  if (request.contains("text") && request.contains("terms")) {
    bad("give \"text\" or \"terms\", not both");
  }
  if (request.contains("text")) {
    query.terms.push_back(parse_term(json{{"text", request["text"]}}, 0, limits));
  } else {
    const auto it = request.find("terms");
    if (it == request.end() || !it->is_array() || it->empty()) {
      bad("\"terms\" must be a non-empty array, e.g. [{\"text\": \"pizza\"}]");
    }
    if (it->size() > limits.max_terms) {
      bad("\"terms\" holds more than " + std::to_string(limits.max_terms) + " terms");
    }
    for (std::size_t i = 0; i < it->size(); ++i) {
      query.terms.push_back(parse_term((*it)[i], i, limits));
    }
  }
  query.model = string_field(request, "model", 256);
  query.folder = string_field(request, "folder", 8192);
  if (const auto it = request.find("categories"); it != request.end() && !it->is_null()) {
    if (!it->is_array() || it->size() > 1000) {
      bad("\"categories\" must be an array of at most 1000 names");
    }
    for (const auto& name : *it) {
      if (!name.is_string()) bad("\"categories\" must hold strings");
      query.categories.push_back(name.get<std::string>());
    }
  }
  const std::string against = string_field(request, "against", 64);
  if (!against.empty()) {
    if (against != "image" && against != "text" && against != "multimodal") {
      bad("\"against\" must be \"image\", \"text\" or \"multimodal\"");
    }
    query.against = against_from_string(against);
  }
  query.k = integer_field(request, "k", query.k, 1, limits.max_k);
  query.offset = integer_field(request, "offset", 0, 0, limits.max_k);
  if (query.offset + query.k > limits.max_k) {
    bad("\"offset\" + \"k\" must be at most " + std::to_string(limits.max_k));
  }
  query.threshold = number_field(request, "threshold", -1e6, 1e6);
  query.rerank = static_cast<int>(integer_field(request, "rerank", 0, 0, limits.max_rerank));
  query.translate = string_field(request, "translate", 16);
  query.exact = bool_field(request, "exact");
  return query;
}

}  // namespace mmsearch
