"""End to end against the LAVIS goldens: deterministic-weight bundles, the golden input
images and texts through the C++ decoder, resize, tokenizer and TorchScript modules.

blip-base and blip2-vitL run in CI; the three slow ones (blip-coco at 384 px, the EVA ViT-g
models) run when MMSEARCH_ALL_MODELS=1 (scripts/test.sh --all-models).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED, Runner

GOLDEN = SHARED / "golden"
MODELS = {
    "blip-base": "blip_feature_extractor_base",
    "blip2-vitL": "blip2_feature_extractor_pretrain_vitL",
    "blip-coco": "blip_retrieval_coco",
    "blip2-pretrain": "blip2_feature_extractor_pretrain",
    "blip2-coco": "blip2_feature_extractor_coco",
}
FAST = {"blip-base", "blip2-vitL"}
ALL = os.environ.get("MMSEARCH_ALL_MODELS") == "1"

# Golden README tolerances: LayerNorm-scale outputs 1e-4, normalised projections 1e-5.
TOLERANCE = {
    "image_embeds": 1e-4, "image_embeds_proj": 1e-5, "text_embeds": 1e-4,
    "text_embeds_proj": 1e-5, "multimodal_embeds": 1e-4, "itm_logits": 1e-4,
}


def golden_models_dir() -> Path:
    return Path(os.environ.get("MMSEARCH_GOLDEN_MODELS", REPO / "build" / "golden-models"))


def deterministic_bundle(name: str) -> Path:
    out = golden_models_dir()
    bundle = out / name
    if not (bundle / "mmsearch.json").exists():
        subprocess.run([sys.executable if "torch" in sys.modules else "/usr/bin/python3",
                        str(REPO / "scripts" / "export_models.py"), "export", name,
                        "--deterministic-weights", "--out", str(out)], check=True)
    return bundle


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.skipif(
    n not in FAST and not ALL, reason="slow model: set MMSEARCH_ALL_MODELS=1")) for n in MODELS])
def test_embed_matches_lavis_golden(mmsearch_bin, tmp_path, name, shared):
    bundle = deterministic_bundle(name)
    golden_dir = GOLDEN / MODELS[name]
    inputs = json.loads((GOLDEN / "inputs" / "inputs.json").read_text())
    run = Runner(mmsearch_bin, tmp_path / "home", bundle.parent)
    out = tmp_path / "out"
    args = ["embed", "--model", name, "--out", out]
    if name == "blip-coco":
        # BlipRetrieval has no extract_features: its goldens follow the COCO retrieval eval,
        # which pads and truncates every text to 35 tokens.
        args += ["--text-length", "35"]
    for image in inputs["images"]:
        args += ["--image", GOLDEN / "inputs" / image]
    for text in inputs["texts"]:
        args += ["--text", text]
    run(*args, check=0, timeout=3000)

    report = []
    for output, tolerance in TOLERANCE.items():
        golden_path = golden_dir / f"{output}.npy"
        if not golden_path.exists():
            assert not (out / f"{output}.npy").exists() or output != "itm_logits"
            continue
        expected = np.load(golden_path)
        actual = np.load(out / f"{output}.npy")
        if output == "itm_logits":
            expected = expected.reshape(-1, 2)  # golden [N,T,2], rows p = i*T + j
        assert actual.shape == expected.shape, (output, actual.shape, expected.shape)
        diff = float(np.max(np.abs(actual - expected)))
        report.append(f"{output}: max |diff| {diff:.2e} (tolerance {tolerance:.0e})")
        assert diff <= tolerance, "\n".join(report)
    print(f"{name}: " + "; ".join(report))
