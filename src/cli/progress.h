// Progress on stderr: a bar with rate and ETA when stderr is a terminal, plain lines every few
// seconds otherwise (logs, CI), so long work never looks hung and never floods a log.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mmsearch::cli {

class Progress {
 public:
  Progress(std::string label, bool enabled);
  // done of total; `rate_count` is what the rate counts (e.g. images embedded so far).
  void update(std::int64_t done, std::int64_t total, std::int64_t rate_count);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace mmsearch::cli
