#!/usr/bin/env bash
# Builds --tiny bundles (small, deterministic weights, same architectures) of all five models
# for the C++ and CLI tests. Skips the export when the bundles are up to date: a stamp file
# records a hash of the exporter / model sources, the vocab and the torch version.
# Usage: scripts/make_test_bundles.sh [OUT_DIR]   (default: <repo>/build/test-models)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build/test-models}"
PY="${MMSEARCH_PYTHON:-/usr/bin/python3}"
MODELS=(blip-base blip-coco blip2-pretrain blip2-vitL blip2-coco)
VOCAB="$ROOT/../shared/data/bert-base-uncased-vocab.txt"

stamp_of() {
  {
    cat "$ROOT/scripts/export_models.py" "$ROOT"/scripts/mmsearch_models/*.py "$VOCAB"
    "$PY" -c 'import torch; print(torch.__version__)'
    printf '%s\n' "${MODELS[@]}"
  } | sha256sum | cut -d' ' -f1
}

want="$(stamp_of)"
stamp="$OUT/.stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  complete=1
  for m in "${MODELS[@]}"; do [[ -f "$OUT/$m/mmsearch.json" ]] || complete=0; done
  if ((complete)); then
    echo "make_test_bundles: up to date in $OUT" >&2
    exit 0
  fi
fi

mkdir -p "$OUT"
rm -f "$stamp"
"$PY" "$ROOT/scripts/export_models.py" export "${MODELS[@]}" --tiny --out "$OUT" \
  --vocab "$VOCAB" --threads "${MMSEARCH_EXPORT_THREADS:-2}" >/dev/null
echo "$want" > "$stamp"
echo "make_test_bundles: wrote ${MODELS[*]} to $OUT" >&2
