// mmsearch_spm: a tiny C shim around libsentencepiece for the translator (issue 6).
//
// Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite and exports those
// symbols. In a process that also has libtorch (and so the full libprotobuf.so.32), the
// dynamic linker binds sentencepiece's protobuf references to libtorch's protobuf and the
// process crashes during static initialisation. This library is therefore never linked into
// mmsearch: src/translate_spm.cpp dlopen()s it with RTLD_LOCAL | RTLD_DEEPBIND, so that it
// and libsentencepiece resolve their own symbols first, and talks to it only through the plain
// C functions below (no C++ types cross the boundary).
#include <sentencepiece_processor.h>

#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

void set_error(char* err, size_t err_len, const std::string& msg) {
  if (err == nullptr || err_len == 0) return;
  size_t n = msg.size() < err_len - 1 ? msg.size() : err_len - 1;
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// Runs `body` (which returns 0, or -1 after set_error) with every C++ exception turned into
// -1 and a message in `err`: nothing may unwind through the C boundary.
template <typename Body>
int guarded(char* err, size_t err_len, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
  } catch (...) {
    set_error(err, err_len, "unknown sentencepiece error");
  }
  return -1;
}

// 0 when a sentencepiece call succeeded, else -1 with its message in `err`.
int status_code(const sentencepiece::util::Status& status, char* err, size_t err_len) {
  if (status.ok()) return 0;
  set_error(err, err_len, status.ToString());
  return -1;
}

}  // namespace

extern "C" {

typedef void (*mmspm_piece_cb)(void* user, const char* piece, size_t len);

#define MMSPM_API __attribute__((visibility("default")))

MMSPM_API int mmspm_abi_version(void) { return 1; }

// Loads a sentencepiece model file. Returns nullptr and fills `err` on failure.
MMSPM_API void* mmspm_load(const char* path, char* err, size_t err_len) {
  sentencepiece::SentencePieceProcessor* loaded = nullptr;
  guarded(err, err_len, [&] {
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    if (status_code(sp->Load(std::string(path)), err, err_len) != 0) return -1;
    loaded = sp.release();
    return 0;
  });
  return loaded;
}

MMSPM_API void mmspm_free(void* handle) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

// Segments `text` (`len` bytes, may contain NUL) into pieces; `cb` is called once per piece.
MMSPM_API int mmspm_encode(void* handle, const char* text, size_t len, mmspm_piece_cb cb,
                           void* user, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
    std::vector<std::string> pieces;
    if (status_code(sp->Encode(std::string(text, len), &pieces), err, err_len) != 0) return -1;
    for (const auto& p : pieces) cb(user, p.data(), p.size());
    return 0;
  });
}

// Joins pieces (DecodePieces); the result is passed to `cb` once.
MMSPM_API int mmspm_decode_pieces(void* handle, const char* const* pieces, const size_t* lens,
                                  size_t n, mmspm_piece_cb cb, void* user, char* err,
                                  size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
    std::vector<std::string> in;
    in.reserve(n);
    for (size_t i = 0; i < n; ++i) in.emplace_back(pieces[i], lens[i]);
    std::string out;
    if (status_code(sp->Decode(in, &out), err, err_len) != 0) return -1;
    cb(user, out.data(), out.size());
    return 0;
  });
}

}  // extern "C"
