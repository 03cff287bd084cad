#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 clone: install, build, generate the demo
# dishes, index them with the default model, run a text and an image query, draw the four
# similarity matrices of the study and a montage, and measure retrieval quality.
# Usage: scripts/demo.sh [OUT_DIR]    (default out/demo)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3
OUT="${1:-$ROOT/out/demo}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

scripts/setup.sh
BIN="${MMSEARCH_BUILD_DIR:-$ROOT/build}/mmsearch"

# The demo keeps its own index so that it never touches the user's.
export MMSEARCH_HOME="$OUT/home"
rm -rf "$MMSEARCH_HOME"

DISHES="$ROOT/data/dishes"
if [[ ! -f "$DISHES/captions.csv" ]]; then
  echo "demo: generating the 68 demo dishes into $DISHES" >&2
  "$PY" scripts/make_dishes.py --out "$DISHES" --count 68 --seed 68 >&2
fi

MODELS_ARGS=()
MODEL=dishes-tiny
if [[ ! -f models/dishes-tiny/mmsearch.json ]]; then
  # Without the trained default, fall back to a random-weight tiny bundle: the flow runs, but
  # its results are NOT meaningful.
  MODEL=blip2-vitL
  scripts/make_test_bundles.sh "$ROOT/build/test-models" >&2
  MODELS_ARGS=(--models "$ROOT/build/test-models")
  echo "demo: WARNING: models/dishes-tiny is missing; using a random-weight tiny bundle." >&2
  echo "demo: WARNING: the rankings below are not meaningful." >&2
fi
ms() { "$BIN" "${MODELS_ARGS[@]}" "$@"; }

echo "== mmsearch models"
ms models
echo
echo "== mmsearch index data/dishes --model $MODEL"
ms index "$DISHES" --model "$MODEL"
echo
echo "== mmsearch query --text \"lasagne with ragù\""
(cd "$DISHES" && ms query --text "lasagne with ragù" -k 5 --montage "$OUT/montage-text.png")
echo
QUERY_IMAGE="$(find "$DISHES" -type f \( -name '*.png' -o -name '*.jpg' \) | sort | head -1)"
echo "== mmsearch query --image ${QUERY_IMAGE#$ROOT/}"
ms query --in "$DISHES" --image "$QUERY_IMAGE" -k 5 --montage "$OUT/montage-image.png"
echo
echo "== mmsearch simmatrix --kind all"
ms simmatrix --in "$DISHES" --model "$MODEL" --kind image-image --kind image-text \
  --kind image-multimodal --kind multimodal-multimodal --out "$OUT/simmatrix-$MODEL"
echo
echo "== mmsearch eval data/dishes"
ms eval "$DISHES" --model "$MODEL"
echo
echo "Pictures:"
ls -1 "$OUT"/*.png | sed 's/^/  /'
