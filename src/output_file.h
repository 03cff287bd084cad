// Internal: a result file (montage or heatmap PNG, similarity CSV) written whole or not at
// all. Bytes go to a temporary file beside the target, which replaces the target only once
// everything was written and closed; a failure leaves any earlier file as it was and says why
// in the system's words (no such folder, disk full, read-only, permission denied).
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

namespace mmsearch {

class OutputFile {
 public:
  // `what` names the content in messages ("PNG", "CSV"). Throws Error(kInput).
  OutputFile(std::filesystem::path target, std::string what);
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();  // without commit(): removes the temporary file

  std::FILE* stream() { return file_; }
  void write(const void* data, std::size_t size);
  // Flushes, closes and renames over the target; throws Error(kInput) with the reason.
  void commit();
  // Throws Error(kInput) for a failed write seen on stream() (ferror), with errno's reason.
  [[noreturn]] void fail_write() const;

 private:
  [[noreturn]] void fail(const std::string& action, int error_number) const;

  std::filesystem::path target_;       // as the user gave it, for messages
  std::filesystem::path destination_;  // the file replaced: the target, or what its link names
  std::filesystem::path temporary_;    // empty when writing in place (a device or pipe)
  std::string what_;
  std::FILE* file_ = nullptr;
};

}  // namespace mmsearch
