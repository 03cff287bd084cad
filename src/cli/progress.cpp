#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace mmsearch::cli {
namespace {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 360000) return "--";
  const long total = static_cast<long>(seconds + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  } else if (total >= 60) {
    std::snprintf(text, sizeof text, "%ldm%02lds", total / 60, total % 60);
  } else {
    std::snprintf(text, sizeof text, "%lds", total);
  }
  return text;
}

}  // namespace

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::update(std::int64_t done, std::int64_t total, std::int64_t rate_count) {
  if (!enabled_ || total <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  // A terminal redraws 10 times a second; a log gets a line every 5 seconds.
  if (done < total && since_last < (tty_ ? 0.1 : 5.0)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? rate_count / elapsed : 0;
  const double eta = rate > 0 ? (total - done) * (elapsed / std::max<std::int64_t>(done, 1)) : -1;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total);
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld  %.1f img/s  ETA %s   ", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total), rate,
                 format_duration(eta).c_str());
    drawn_ = true;
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%.0f%%), %.1f img/s, ETA %s\n", label_.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total), 100.0 * done / total,
                 rate, format_duration(eta).c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace mmsearch::cli
