"""pytest setup for the Python model tests.

* puts ``<repo>/scripts`` on sys.path (``import mmsearch_models``);
* ``SHARED`` = ``<repo>/../shared`` (golden data in ``SHARED/golden``);
* ``--all-models``: also run the tests marked ``full_model`` (blip-coco, blip2-pretrain,
  blip2-coco fidelity: minutes each, ~10 GB RAM for the EVA ViT-g models);
* torch threads: ``MMSEARCH_TEST_THREADS`` (default 2).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"

if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

try:
    import torch

    torch.set_num_threads(int(os.environ.get("MMSEARCH_TEST_THREADS", "2")))
except ImportError:  # pragma: no cover - reported by the tests that need torch
    torch = None


def pytest_addoption(parser):
    parser.addoption("--all-models", action="store_true", default=False,
                     help="also run full_model tests (blip-coco, blip2-pretrain, blip2-coco fidelity; slow, ~10 GB RAM)")


def pytest_configure(config):
    config.addinivalue_line("markers", "full_model: slow full-size model test, runs only with --all-models")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--all-models"):
        return
    skip = pytest.mark.skip(reason="full-size model test: run with --all-models")
    for item in items:
        if "full_model" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def ckpt_cache(tmp_path_factory) -> Path:
    """Session-scoped directory for deterministic checkpoint files."""
    return tmp_path_factory.mktemp("det_ckpt")
