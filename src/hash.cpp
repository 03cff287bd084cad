#include "mmsearch/hash.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <vector>

#include "mmsearch/error.h"

namespace mmsearch {
namespace {

// Feeds a file to `consume` in 1 MiB blocks, so no file is ever held in memory whole. The one
// reader behind every file hash, so all of them report an unreadable file the same way.
void for_each_file_block(const std::filesystem::path& path,
                         const std::function<void(const char*, std::size_t)>& consume) {
  // A FIFO or device would block or never end.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!ec && !std::filesystem::is_regular_file(status)) {
    throw Error(ErrorKind::kInput, path.string() + ": not a regular file, so it is not read");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::kInput, path.string() + ": cannot open: " + std::strerror(errno));
  }
  std::vector<char> block(1 << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const std::streamsize got = in.gcount();
    if (got > 0) consume(block.data(), static_cast<std::size_t>(got));
  }
  if (in.bad()) throw Error(ErrorKind::kInput, path.string() + ": read error");
}

struct DigestContextDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};
using DigestContext = std::unique_ptr<EVP_MD_CTX, DigestContextDeleter>;

DigestContext new_sha256_context() {
  DigestContext context(EVP_MD_CTX_new());
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorKind::kInternal, "OpenSSL could not initialise SHA-256");
  }
  return context;
}

std::string finish_hex(EVP_MD_CTX* context) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context, digest.data(), &length) != 1) {
    throw Error(ErrorKind::kInternal, "OpenSSL could not finish SHA-256");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

struct Xxh64StateDeleter {
  void operator()(XXH64_state_t* state) const { XXH64_freeState(state); }
};

}  // namespace

std::string sha256_file(const std::filesystem::path& path) {
  DigestContext context = new_sha256_context();
  for_each_file_block(path, [&](const char* data, std::size_t size) {
    EVP_DigestUpdate(context.get(), data, size);
  });
  return finish_hex(context.get());
}

std::string sha256_bytes(const void* data, std::size_t size) {
  DigestContext context = new_sha256_context();
  EVP_DigestUpdate(context.get(), data, size);
  return finish_hex(context.get());
}

std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed) {
  return XXH64(data, size, seed);
}

std::string hash_file(const std::filesystem::path& path) {
  std::unique_ptr<XXH64_state_t, Xxh64StateDeleter> state(XXH64_createState());
  if (!state || XXH64_reset(state.get(), 0) == XXH_ERROR) {
    throw Error(ErrorKind::kInternal, "libxxhash could not initialise XXH64");
  }
  for_each_file_block(
      path, [&](const char* data, std::size_t size) { XXH64_update(state.get(), data, size); });
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(XXH64_digest(state.get())));
  return std::string("xxh64:") + hex;
}

}  // namespace mmsearch
