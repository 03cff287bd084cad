#include "terminal_preview.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/thumbnail.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string find_on_path(const std::string& program) {
  const std::string path = env("PATH");
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find(':', start), path.size());
    const fs::path candidate = fs::path(path.substr(start, end - start)) / program;
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    start = end + 1;
  }
  return {};
}

}  // namespace

PreviewProtocol choose_preview(const std::string& requested, bool stdout_is_terminal,
                               std::string& why) {
  if (requested == "none") return PreviewProtocol::kNone;
  if (requested == "kitty") return PreviewProtocol::kKitty;
  if (requested == "iterm") return PreviewProtocol::kIterm;
  if (requested == "sixel") {
    if (find_on_path("img2sixel").empty()) {
      throw Error(ErrorKind::kUsage,
                  "--preview sixel: needs img2sixel on PATH (Debian: apt install libsixel-bin)");
    }
    return PreviewProtocol::kSixel;
  }
  if (requested != "auto") {
    throw Error(ErrorKind::kUsage,
                "--preview: '" + requested + "' is not one of auto, kitty, iterm, sixel, none");
  }
  if (!stdout_is_terminal) {
    why = "standard output is not a terminal";
    return PreviewProtocol::kNone;
  }
  const std::string term = env("TERM"), program = env("TERM_PROGRAM");
  if (!env("KITTY_WINDOW_ID").empty() || term == "xterm-kitty" || program == "ghostty") {
    return PreviewProtocol::kKitty;
  }
  if (program == "iTerm.app" || program == "WezTerm" || env("LC_TERMINAL") == "iTerm2") {
    return PreviewProtocol::kIterm;
  }
  // Terminals known to draw sixel by default; others would print the codes as text.
  const bool sixel_terminal = term.find("sixel") != std::string::npos || term == "foot" ||
                              term.rfind("mlterm", 0) == 0 || term == "yaft-256color";
  if (sixel_terminal) {
    if (!find_on_path("img2sixel").empty()) return PreviewProtocol::kSixel;
    why = "this terminal draws sixel, but img2sixel is not installed (apt install libsixel-bin)";
    return PreviewProtocol::kNone;
  }
  why = "no inline-image terminal recognised (TERM=" + term +
        "); --preview kitty, iterm or sixel forces one";
  return PreviewProtocol::kNone;
}

bool print_preview(PreviewProtocol protocol, const RgbImage& thumbnail, int rows, std::FILE* out) {
  switch (protocol) {
    case PreviewProtocol::kNone:
      return false;
    case PreviewProtocol::kKitty: {
      // The PNG in chunks of 4096 base64 bytes (the protocol's limit), `rows` cells high.
      const std::string data = base64(encode_png(thumbnail));
      for (std::size_t at = 0; at < data.size(); at += 4096) {
        const bool first = at == 0, last = at + 4096 >= data.size();
        std::fprintf(out, "\x1b_G");
        if (first) std::fprintf(out, "a=T,f=100,q=2,r=%d,", rows);
        std::fprintf(out, "m=%d;%s\x1b\\", last ? 0 : 1, data.substr(at, 4096).c_str());
      }
      std::fputc('\n', out);
      return true;
    }
    case PreviewProtocol::kIterm: {
      const std::string png = encode_png(thumbnail);
      std::fprintf(out, "\x1b]1337;File=inline=1;size=%zu;height=%d;preserveAspectRatio=1:%s\a\n",
                   png.size(), rows, base64(png).c_str());
      return true;
    }
    case PreviewProtocol::kSixel: {
      char name[] = "/tmp/mmsearch-preview-XXXXXX.png";
      const int fd = ::mkstemps(name, 4);
      if (fd < 0) return false;
      ::close(fd);
      {
        std::ofstream file(name, std::ios::binary);
        const std::string png = encode_png(thumbnail);
        file.write(png.data(), static_cast<std::streamsize>(png.size()));
      }
      const std::string command = "img2sixel '" + std::string(name) + "' 2>/dev/null";
      std::fflush(out);
      std::FILE* pipe = ::popen(command.c_str(), "r");
      bool ok = false;
      if (pipe) {
        std::array<char, 8192> buffer{};
        std::size_t n = 0;
        while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
          std::fwrite(buffer.data(), 1, n, out);
          ok = true;
        }
        ok = ::pclose(pipe) == 0 && ok;
      }
      ::unlink(name);
      if (ok) std::fputc('\n', out);
      return ok;
    }
  }
  return false;
}

}  // namespace mmsearch::cli
