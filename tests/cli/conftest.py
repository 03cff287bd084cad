"""Fixtures for CLI integration tests: they run the real `mmsearch` binary.

CTest sets MMSEARCH_BIN (the built binary) and MMSEARCH_TEST_MODELS (tiny bundles made by
scripts/make_test_bundles.sh). Every test gets its own MMSEARCH_HOME so that no user state is
read or written.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MMSEARCH_SHARED_DIR", REPO.parent / "shared"))
TINY_NAMES = ["blip-base", "blip-coco", "blip2-pretrain", "blip2-vitL", "blip2-coco"]


def _binary() -> Path:
    path = Path(os.environ.get("MMSEARCH_BIN", REPO / "build" / "mmsearch"))
    if not path.exists():
        pytest.fail(f"mmsearch binary not found at {path}; build first or set MMSEARCH_BIN")
    return path


@pytest.fixture(scope="session")
def mmsearch_bin() -> Path:
    return _binary()


@pytest.fixture(scope="session")
def tiny_models() -> Path:
    path = Path(os.environ.get("MMSEARCH_TEST_MODELS", REPO / "build" / "test-models"))
    missing = [n for n in TINY_NAMES if not (path / n / "mmsearch.json").exists()]
    if missing:
        pytest.fail(f"tiny bundles {missing} missing in {path}; run scripts/make_test_bundles.sh")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    # A clone without the shared test data still runs every test that does not need it.
    if not (SHARED / "data").is_dir():
        pytest.skip(f"needs the shared test data (photos, goldens) at {SHARED}; "
                    "set MMSEARCH_SHARED_DIR to where it is")
    return SHARED


class Runner:
    def __init__(self, binary: Path, home: Path, models: Path):
        self.binary, self.home, self.models = binary, home, models

    def __call__(self, *args, check=None, input=None, env=None, cwd=None, timeout=600):
        full_env = dict(os.environ)
        # fp32 unless a test asks otherwise: the expected values are fp32's (auto is bf16 on
        # CPUs with native bf16).
        full_env.update({"MMSEARCH_HOME": str(self.home), "OMP_NUM_THREADS": "1",
                         "MMSEARCH_DTYPE": "fp32"})
        full_env.pop("MMSEARCH_MODELS", None)
        full_env.pop("MMSEARCH_DEFAULT_MODEL", None)
        if env:
            full_env.update(env)
        argv = [str(self.binary)]
        if self.models is not None:
            argv += ["--models", str(self.models)]
        argv += [str(a) for a in args]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, env=full_env,
                              cwd=cwd, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, (
                f"{argv} exited {proc.returncode}, expected {check}\nstdout:\n{proc.stdout}\n"
                f"stderr:\n{proc.stderr}")
        return proc

    def json(self, *args, **kwargs):
        proc = self(*args, check=0, **kwargs)
        return json.loads(proc.stdout)


@pytest.fixture
def run(mmsearch_bin, tiny_models, tmp_path) -> Runner:
    return Runner(mmsearch_bin, tmp_path / "home", tiny_models)
