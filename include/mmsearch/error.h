// Errors thrown by libmmsearch. The library never exits and never prints; the CLI maps
// each ErrorKind to a documented exit code (see README "Exit codes").
#pragma once

#include <stdexcept>
#include <string>

namespace mmsearch {

enum class ErrorKind {
  kUsage,     // bad option values or combinations given by the caller
  kInput,     // an input file (image, captions, text) is missing, unreadable or corrupt
  kModel,     // a model bundle is missing, invalid, or incompatible
  kIndex,     // the index store is missing, locked, corrupt, or holds another model
  kInternal,  // a bug or an unexpected failure of a dependency
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace mmsearch
