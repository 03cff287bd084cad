// JSON on stdout for every subcommand: it never throws on bytes that are not UTF-8, and paths,
// which are bytes on Linux, stay recoverable exactly.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace mmsearch::cli {

// Standard base64 (RFC 4648) of bytes, on one line.
std::string base64(const std::string& bytes);

// object[key] = path; when path is not valid UTF-8, the shown value has U+FFFD for the bad bytes
// and object[key + "_bytes"] holds the exact bytes in base64 (RFC 4648), so a script can open
// the file (README "JSON output").
void put_path(nlohmann::json& object, const std::string& key, const std::string& path);

// `value` as text with `indent` (-1: one line). Invalid UTF-8 in any string becomes U+FFFD
// instead of an exception; put_path has kept the exact bytes of paths beside them.
std::string json_text(const nlohmann::json& value, int indent = 2);

}  // namespace mmsearch::cli
