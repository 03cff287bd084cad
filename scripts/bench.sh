#!/usr/bin/env bash
# Indexing speed against the hardware and the Python reference loop, in one run and one table
# (issue 11; docs/PERFORMANCE.md explains each row). Installs what is missing, builds, exports
# the full-size deterministic-weight bundles it needs (once, into $BUILD_DIR/golden-models, the
# folder the golden tests use), then runs tests/bench/bench_index_speed.py.
# Usage: scripts/bench.sh [--all] [--only MODEL[,MODEL]] [--no-python]
#   --all adds blip2-pretrain (EVA ViT-g, ~8 GB of bundle, slow); the default run takes under
#   20 minutes on 2 cores. The table goes to stdout and to $BUILD_DIR/bench/index-speed.md.
# Run it on a quiet machine: every ratio in the table compares numbers from this run only.
# scripts/bench.sh --soak [SECONDS] [bench_soak.py options] runs the concurrency soak instead
#   (issue 12; default 600 s, tiny bundles): errors, lost rows, integrity, query latency.
# scripts/bench.sh --serve [bench_serve.py options] benchmarks `mmsearch serve` (issue 13):
#   100k imported BLIP-2 items, full-size text model, latency split, thumbnails/s, 20 clients.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3

if [[ "${1:-}" == "--soak" ]]; then
  shift
  SOAK_SECONDS=600
  if [[ "${1:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then SOAK_SECONDS="$1"; shift; fi
  scripts/setup.sh --no-build
  BUILD_DIR="${MMSEARCH_BUILD_DIR:-$ROOT/build}"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target mmsearch >&2
  scripts/make_test_bundles.sh "$BUILD_DIR/test-models"
  mkdir -p "$BUILD_DIR/bench"
  exec "$PY" tests/bench/bench_soak.py --bin "$BUILD_DIR/mmsearch" \
    --models "$BUILD_DIR/test-models" --seconds "$SOAK_SECONDS" \
    --json-out "$BUILD_DIR/bench/soak.json" "$@"
fi

if [[ "${1:-}" == "--serve" ]]; then
  shift
  scripts/setup.sh --no-build
  BUILD_DIR="${MMSEARCH_BUILD_DIR:-$ROOT/build}"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target mmsearch mmsearch_spm >&2
  BUNDLES="$BUILD_DIR/golden-models"
  if [[ ! -f "$BUNDLES/blip2-vitL/mmsearch.json" ]]; then
    "$PY" scripts/export_models.py export blip2-vitL --deterministic-weights --out "$BUNDLES" >&2
  fi
  mkdir -p "$BUILD_DIR/bench"
  exec "$PY" tests/bench/bench_serve.py --bin "$BUILD_DIR/mmsearch" --models "$BUNDLES" \
    --work "${MMSEARCH_BENCH_WORK:-/tmp/mmsearch-bench-serve}" \
    --json "$BUILD_DIR/bench/serve.json" "$@"
fi

MODELS=(blip-base blip2-vitL)
for arg in "$@"; do
  case "$arg" in
    --all) MODELS+=(blip2-pretrain) ;;
    --only|--no-python) ;;
    -h|--help) sed -n 2,13p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == "--only" ]]; then
    next=$((i + 1))
    IFS=, read -r -a MODELS <<< "${!next}"
  fi
done

scripts/setup.sh --no-build

BUILD_DIR="${MMSEARCH_BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" --target mmsearch mmsearch_spm bench_gemm bench_encoder >&2

BUNDLES="$BUILD_DIR/golden-models"
for model in "${MODELS[@]}"; do
  if [[ ! -f "$BUNDLES/$model/mmsearch.json" ]]; then
    echo "bench.sh: exporting $model with deterministic full-size weights into $BUNDLES" >&2
    "$PY" scripts/export_models.py export "$model" --deterministic-weights --out "$BUNDLES" >&2
  fi
done

WORK="$BUILD_DIR/bench/index-speed"
mkdir -p "$WORK"
exec "$PY" tests/bench/bench_index_speed.py --bin "$BUILD_DIR/mmsearch" \
  --gemm "$BUILD_DIR/tests/bench_gemm" --models "$BUNDLES" --work "$WORK" \
  --markdown "$BUILD_DIR/bench/index-speed.md" "$@"
