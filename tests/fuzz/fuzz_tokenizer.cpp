// libFuzzer target: pre_caption and the BLIP v1 tokenizer on arbitrary bytes. Invalid UTF-8
// must give Error(kInput) and nothing else; valid input must give well-formed results.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "mmsearch/error.h"
#include "mmsearch/text.h"

namespace {

const mmsearch::WordPieceTokenizer& tokenizer() {
  static const std::unique_ptr<mmsearch::WordPieceTokenizer> instance = [] {
    const char* shared = std::getenv("MMSEARCH_SHARED_DIR");
    const std::filesystem::path shared_dir = shared != nullptr ? shared : MMSEARCH_SHARED_DIR;
    mmsearch::TokenizerOptions options;
    options.added_tokens = {{"[DEC]", 30522}, {"[ENC]", 30523}};
    return std::make_unique<mmsearch::WordPieceTokenizer>(
        shared_dir / "data" / "bert-base-uncased-vocab.txt", options);
  }();
  return *instance;
}

void check(bool condition) {
  if (!condition) std::abort();
}

bool is_valid_utf8(std::string_view text) {
  try {
    mmsearch::pre_caption(text, 1 << 30);
    return true;
  } catch (const mmsearch::Error& error) {
    check(error.kind() == mmsearch::ErrorKind::kInput);
    return false;
  }
}

// Most random byte strings are invalid UTF-8 and stop at the first check; reading the bytes
// also as 21-bit code points (surrogates skipped) reaches all of Unicode on the valid path.
std::string bytes_as_code_points(const std::uint8_t* data, std::size_t size) {
  std::string out;
  for (std::size_t i = 0; i + 3 <= size; i += 3) {
    const std::uint32_t value = (static_cast<std::uint32_t>(data[i]) << 16 |
                                 static_cast<std::uint32_t>(data[i + 1]) << 8 | data[i + 2]) %
                                0x110000;
    if (value >= 0xD800 && value <= 0xDFFF) continue;
    if (value < 0x80) {
      out.push_back(static_cast<char>(value));
    } else if (value < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (value >> 6)));
      out.push_back(static_cast<char>(0x80 | (value & 0x3F)));
    } else if (value < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (value >> 12)));
      out.push_back(static_cast<char>(0x80 | ((value >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (value & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (value >> 18)));
      out.push_back(static_cast<char>(0x80 | ((value >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((value >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (value & 0x3F)));
    }
  }
  return out;
}

void check_text(std::string_view input);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_text(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::string valid = bytes_as_code_points(data, size);
  check(is_valid_utf8(valid));
  check_text(valid);
  return 0;
}

namespace {

void check_text(std::string_view input) {
  const auto& bert = tokenizer();

  std::string caption;
  try {
    caption = mmsearch::pre_caption(input, 50);
  } catch (const mmsearch::Error& error) {
    check(error.kind() == mmsearch::ErrorKind::kInput);
    try {
      bert.tokenize(input);
      std::abort();  // the tokenizer must reject what pre_caption rejects
    } catch (const mmsearch::Error& tokenizer_error) {
      check(tokenizer_error.kind() == mmsearch::ErrorKind::kInput);
    }
    return;
  }

  // pre_caption output: valid UTF-8, stripped of spaces, at most 50 space-separated words.
  check(is_valid_utf8(caption));
  check(caption.empty() || (caption.front() != ' ' && caption.back() != ' '));
  std::size_t spaces = 0;
  for (char c : caption) spaces += c == ' ' ? 1 : 0;
  check(spaces < 50);

  for (const std::string_view text : {std::string_view(caption), input}) {
    const mmsearch::Encoding full = bert.encode(text);
    check(full.ids.size() == full.tokens.size() + 2);
    check(full.mask.size() == full.ids.size());
    check(full.ids.front() == 101 && full.ids.back() == 102);
    for (std::size_t i = 0; i < full.tokens.size(); ++i) {
      const std::string& token = full.tokens[i];
      check(!token.empty() && is_valid_utf8(token));
      check(bert.id_to_token(full.ids[i + 1]) == token);  // every token is a real vocab entry
    }
    const mmsearch::BatchEncoding padded = bert.encode_batch({std::string(text)}, 35, true);
    check(padded.ids.size() == 35 && padded.mask.size() == 35);
    const std::size_t kept = std::min<std::size_t>(full.ids.size(), 35);
    for (std::size_t i = 0; i + 1 < kept; ++i) check(padded.ids[i] == full.ids[i]);
    check(padded.ids[kept - 1] == 102);
    for (std::size_t i = 0; i < 35; ++i) check(padded.mask[i] == (i < kept ? 1 : 0));
  }
}

}  // namespace
