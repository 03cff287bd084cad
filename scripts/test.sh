#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: GoogleTest/CTest (unit + CLI
# integration) and pytest (model fidelity, export, end-to-end goldens through the binary).
# Usage: scripts/test.sh [--all-models]   (--all-models also runs the three slow EVA/384 models)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3
EXTRA_PYTEST=()
if [[ "${1:-}" == "--all-models" ]]; then
  EXTRA_PYTEST+=(--all-models)
  export MMSEARCH_ALL_MODELS=1  # the CLI end-to-end golden test of the three slow models too
fi

if [[ ! -d ../shared/golden ]]; then
  echo "test.sh: ../shared (golden data and test images) is missing beside the repo" >&2
  exit 2
fi

scripts/setup.sh --no-build

BUILD_DIR="${MMSEARCH_BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j"$(nproc)"

# Tiny bundles of all five architectures, used by the C++ CLI tests and pytest.
export MMSEARCH_TEST_MODELS="$BUILD_DIR/test-models"
scripts/make_test_bundles.sh "$MMSEARCH_TEST_MODELS"

export MMSEARCH_BIN="$BUILD_DIR/mmsearch"
# The browser test (tests/cli/test_browser.py) fails rather than skips without chromium, and
# gets playwright-core exactly as the lockfile pins it.
export MMSEARCH_REQUIRE_BROWSER=1
export MMSEARCH_ARTIFACTS="$BUILD_DIR/test-artifacts"
if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
  (cd tests/browser && npm ci --no-audit --no-fund >&2)
fi
status=0
(cd "$BUILD_DIR" && ctest --output-on-failure -j"$(nproc)") || status=$?

"$PY" -m pytest -q -p no:cacheprovider tests/python "${EXTRA_PYTEST[@]}" || status=$?

# The libFuzzer targets, 20 s each with ASan + UBSan, from the seed corpora (their own clang
# build in build-fuzz; docs/FUZZING.md). A crash fails the run and names the saved input.
MMSEARCH_SHARED_DIR="${MMSEARCH_SHARED_DIR:-$ROOT/../shared}" scripts/fuzz.sh 20 || status=$?

if [[ $status -ne 0 ]]; then echo "test.sh: FAILED (status $status)" >&2; fi
exit $status
