#include "output_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

std::string reason(int error_number) {
  std::string text = std::strerror(error_number);
  switch (error_number) {
    case ENOENT:
    case ENOTDIR:
      return text + " (the folder does not exist)";
    case ENOSPC:
    case EDQUOT:
      return "disk full (" + text + ")";
    default:
      return text;
  }
}

fs::path temporary_beside(const fs::path& target) {
  static std::atomic<unsigned> counter{0};
  fs::path name = target.filename();
  name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  return target.parent_path() / name;
}

}  // namespace

OutputFile::OutputFile(fs::path target, std::string what)
    : target_(std::move(target)), what_(std::move(what)) {
  std::error_code ec;
  const fs::file_status status = fs::status(target_, ec);  // through symlinks
  if (fs::is_directory(status)) fail("cannot write " + what_ + " over", EISDIR);
  int fd = -1;
  if (fs::exists(status) && !fs::is_regular_file(status)) {
    // A device or pipe (/dev/stdout, a FIFO): written in place, nothing to rename.
    fd = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
  } else {
    // A link to a file is followed, so the link stays and its file is replaced.
    const fs::path real =
        fs::is_symlink(fs::symlink_status(target_, ec)) ? fs::canonical(target_, ec) : target_;
    temporary_ = temporary_beside(ec ? target_ : real);
    destination_ = ec ? target_ : real;
    fd = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  }
  if (fd < 0) fail("cannot write " + what_, errno);
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    const int error_number = errno;
    ::close(fd);
    if (!temporary_.empty()) ::unlink(temporary_.c_str());
    fail("cannot write " + what_, error_number);
  }
}

OutputFile::~OutputFile() {
  if (file_) {
    std::fclose(file_);
    if (!temporary_.empty()) ::unlink(temporary_.c_str());
  }
}

void OutputFile::write(const void* data, std::size_t size) {
  if (std::fwrite(data, 1, size, file_) != size) fail_write();
}

void OutputFile::fail_write() const { fail("cannot write " + what_, errno ? errno : EIO); }

void OutputFile::commit() {
  std::FILE* file = file_;
  file_ = nullptr;
  errno = 0;
  const bool write_failed = std::ferror(file) != 0;
  const int flush_error = std::fflush(file) != 0 ? errno : 0;
  const int close_error = std::fclose(file) != 0 ? errno : 0;
  if (write_failed || flush_error || close_error) {
    const int error_number = flush_error ? flush_error : close_error ? close_error : EIO;
    if (!temporary_.empty()) ::unlink(temporary_.c_str());
    fail("cannot write " + what_, error_number);
  }
  if (temporary_.empty()) return;
  if (std::rename(temporary_.c_str(), destination_.c_str()) != 0) {
    const int error_number = errno;
    ::unlink(temporary_.c_str());
    fail("cannot replace", error_number);
  }
}

void OutputFile::fail(const std::string& action, int error_number) const {
  throw Error(ErrorKind::kInput, action + " " + target_.string() + ": " + reason(error_number));
}

}  // namespace mmsearch
