#!/usr/bin/env bash
# Installs every Debian 12 package mmsearch needs and builds it in Release.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PACKAGES=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-pthread
  libopencv-dev libjpeg-dev libpng-dev
  libsentencepiece-dev libcli11-dev nlohmann-json3-dev libspdlog-dev
  libicu-dev libsqlite3-dev libssl-dev libcsv-dev libxxhash-dev libfaiss-dev
  libgif-dev libexif-dev libopencv-contrib-dev libfontconfig-dev fonts-noto-cjk
  libcpp-httplib-dev libsixel-bin chromium
  googletest libgtest-dev
  clang libclang-rt-14-dev ccache
  python3-torch python3-torchvision python3-pil python3-numpy python3-pytest
  python3-sentencepiece python3-tqdm
)

# Node.js and npm drive the browser test (playwright-core); a machine that has them already
# (another packaging of Node) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [[ "${1:-}" == "--no-build" ]]; then exit 0; fi

BUILD_DIR="${MMSEARCH_BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
# Only the binary (and its sentencepiece shim): the tests are built by scripts/test.sh.
cmake --build "$BUILD_DIR" -j"$(nproc)" --target mmsearch mmsearch_spm >&2
echo "setup: built $BUILD_DIR/mmsearch" >&2
