#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS, one after
# the other, then prints a table: target, seconds it ran, execs, exec/s, coverage (cov / ft from
# libFuzzer's last status line), corpus size, crashes. Exits 1 when any target crashed (or
# leaked, timed out, ran out of memory, or failed to start), naming the saved input.
#
# Usage: scripts/fuzz.sh SECONDS [TARGET ...]
#   scripts/fuzz.sh 20                  # what scripts/test.sh runs: 20 s per target
#   scripts/fuzz.sh 600 fuzz_store      # one target, 10 minutes
# Environment:
#   MMSEARCH_FUZZ_BUILD_DIR  build folder (default build-fuzz; gitignored)
#   MMSEARCH_FUZZ_JOBS       parallel compile jobs (default: nproc)
#   MMSEARCH_FUZZ_KEEP_CORPUS=1  keep the grown corpus of an earlier run instead of starting
#                            again from the repo's seeds
#
# Each target starts from a copy of tests/fuzz/corpus/<target> and tests/fuzz/regressions/<target>
# in <build>/corpus-work/<target>, which libFuzzer grows; its log and any crash input go to
# <build>/fuzz-out/<target>/. A crash input worth keeping goes to tests/fuzz/regressions/<target>/
# with the fix: the replay tests of the ordinary build (fuzz_replay_<target>, tests/cpp/fuzz.cmake)
# run it from then on. To reproduce one: <build>/tests/<target> <input>. Targets run at nice 10,
# one at a time (each is one process). clang (and its libFuzzer runtime) is installed with apt
# when missing; ccache is used when present. docs/FUZZING.md says what each target covers.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
SECONDS_EACH="$1"
shift
ALL_TARGETS=(fuzz_api_query fuzz_captions fuzz_image_decode fuzz_import fuzz_manifest fuzz_segment fuzz_store
             fuzz_tokenizer fuzz_weight_layout)
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=("${ALL_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
  if [[ ! -f tests/fuzz/$t.cpp ]]; then echo "fuzz.sh: no target $t (tests/fuzz/$t.cpp)" >&2; exit 2; fi
done

BUILD="${MMSEARCH_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
JOBS="${MMSEARCH_FUZZ_JOBS:-$(nproc)}"
SHARED_DIR="${MMSEARCH_SHARED_DIR:-$(cd "$ROOT/.." && pwd)/shared}"

# --- clang with the libFuzzer and sanitizer runtimes ---
if ! command -v clang++ >/dev/null || ! command -v clang >/dev/null ||
   ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
       clang++ -x c++ -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; then
  echo "fuzz.sh: installing clang and its libFuzzer runtime" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    clang libclang-rt-14-dev llvm >&2 || { echo "fuzz.sh: cannot install clang" >&2; exit 2; }
fi

# --- configure and build (only the fuzz targets) ---
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMSEARCH_FUZZ=ON -DCMAKE_C_COMPILER=clang
            -DCMAKE_CXX_COMPILER=clang++ "-DMMSEARCH_SHARED_DIR=$SHARED_DIR")
if command -v ccache >/dev/null; then
  CMAKE_ARGS+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
fi
mkdir -p "$BUILD"
build_start=$(date +%s)
if ! cmake -S "$ROOT" -B "$BUILD" "${CMAKE_ARGS[@]}" >"$BUILD/fuzz-configure.log" 2>&1; then
  cat "$BUILD/fuzz-configure.log" >&2
  echo "fuzz.sh: configure failed" >&2
  exit 2
fi
if ! nice -n 10 cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}" >"$BUILD/fuzz-build.log" 2>&1; then
  grep -E "error|Error" "$BUILD/fuzz-build.log" | head -40 >&2
  echo "fuzz.sh: build failed (log: $BUILD/fuzz-build.log)" >&2
  exit 2
fi
echo "fuzz.sh: built ${#TARGETS[@]} targets in $(($(date +%s) - build_start)) s" >&2

# --- per-target options ---
options_for() {
  case "$1" in
    fuzz_store) echo "-max_len=65536 -malloc_limit_mb=1024" ;;
    fuzz_image_decode) echo "-max_len=65536 -malloc_limit_mb=1024" ;;
    fuzz_segment) echo "-max_len=16384" ;;
    *) echo "-max_len=4096" ;;
  esac
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1

rows=()
failed=()
for t in "${TARGETS[@]}"; do
  out="$BUILD/fuzz-out/$t"
  work="$BUILD/corpus-work/$t"
  mkdir -p "$out"
  rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* "$out"/slow-unit-*
  if [[ "${MMSEARCH_FUZZ_KEEP_CORPUS:-0}" != 1 ]]; then rm -rf "$work"; fi
  mkdir -p "$work"
  for seeds in tests/fuzz/corpus/$t tests/fuzz/regressions/$t; do
    if [[ -d $seeds ]]; then cp -n "$seeds"/* "$work"/ 2>/dev/null || true; fi
  done
  if [[ $t == fuzz_tokenizer && ! -f "$SHARED_DIR/data/bert-base-uncased-vocab.txt" ]]; then
    echo "fuzz.sh: $t skipped: it needs $SHARED_DIR/data/bert-base-uncased-vocab.txt" >&2
    rows+=("$t|skipped|-|-|-|-|-|-")
    continue
  fi
  echo "fuzz.sh: $t for $SECONDS_EACH s" >&2
  started=$(date +%s)
  # shellcheck disable=SC2046
  MMSEARCH_SHARED_DIR="$SHARED_DIR" nice -n 10 "$BUILD/tests/$t" $(options_for "$t") \
    -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/" "$work" >"$out/log" 2>&1
  rc=$?
  ran=$(($(date +%s) - started))  # less than SECONDS when a crash stopped the target
  status_line=$(grep -E '^#[0-9]+.*cov: ' "$out/log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$status_line")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$status_line")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log" | tail -1)
  if [[ -z $execs ]]; then execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$status_line"); fi
  corpus=$(find "$work" -type f | wc -l)
  artifacts=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o \
               -name 'timeout-*' -o -name 'oom-*' \) | sort)
  crashes=$(grep -c . <<<"$artifacts")
  if [[ $rc -ne 0 || $crashes -gt 0 ]]; then
    crashes=$((crashes > 0 ? crashes : 1))
    failed+=("$t: exit $rc, input(s): ${artifacts:-none saved}; log $out/log")
    grep -E 'ERROR: |SUMMARY: |runtime error|==ABORTING|deadly signal' "$out/log" | head -5 >&2
  fi
  rows+=("$t|$ran|${execs:-?}|${rate:-?}|${cov:-?}|${ft:-?}|$corpus|$crashes")
done

printf '\n%-20s %8s %11s %8s %7s %7s %7s %8s\n' TARGET SECONDS EXECS "EXEC/S" COV FT CORPUS CRASHES
for row in "${rows[@]}"; do
  IFS='|' read -r t s e r c f n k <<<"$row"
  printf '%-20s %8s %11s %8s %7s %7s %7s %8s\n' "$t" "$s" "$e" "$r" "$c" "$f" "$n" "$k"
done
if ((${#failed[@]})); then
  echo >&2
  for f in "${failed[@]}"; do echo "fuzz.sh: CRASH $f" >&2; done
  exit 1
fi
exit 0
