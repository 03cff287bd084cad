// SHA-256 (OpenSSL) for bundle verification and content identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace mmsearch {

// Lower-case hex SHA-256 of a file's bytes. Throws Error(kInput) naming the file if unreadable.
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_bytes(const void* data, std::size_t size);

}  // namespace mmsearch
