// File and byte hashes: SHA-256 (OpenSSL) to verify model bundles against their manifest, and
// XXH64 (libxxhash) as the content hash of indexed photos.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace mmsearch {

// Lower-case hex SHA-256 of a file's bytes. Throws Error(kInput) naming the file if unreadable.
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_bytes(const void* data, std::size_t size);

// Content hash of an indexed file.
//
// XXH64 (seed 0) of the file's bytes, stored as "xxh64:<16 hex digits>". Why XXH64 and not
// SHA-256: the hash only has to recognise the same photo under another name (rename,
// duplicate) and a touched-but-unchanged file, it guards no security boundary. XXH64 runs at
// memory speed (~10 GB/s), so hashing never shows next to decoding, while SHA-256 without
// hardware support (~0.4 GB/s) would dominate an incremental rerun. Accidental collisions are
// negligible (p ~ n^2 / 2^65, ~3e-8 for a million photos), and reuse also requires the same
// size. The algorithm name is part of the value, so a later change of hash cannot match old
// values by accident.
std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0);
// The content hash of a file's bytes. Throws Error(kInput) naming the file if unreadable.
std::string hash_file(const std::filesystem::path& path);

}  // namespace mmsearch
