#include "json_output.h"

#include <openssl/evp.h>

#include <vector>

#include "mmsearch/text.h"

namespace mmsearch::cli {

std::string base64(const std::string& bytes) {
  std::vector<unsigned char> out(4 * ((bytes.size() + 2) / 3) + 1);
  const int written =
      EVP_EncodeBlock(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  return std::string(reinterpret_cast<const char*>(out.data()), static_cast<std::size_t>(written));
}

void put_path(nlohmann::json& object, const std::string& key, const std::string& path) {
  object[key] = path;
  if (!is_valid_utf8(path)) object[key + "_bytes"] = base64(path);
}

std::string json_text(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace mmsearch::cli
