"""The web page in a real browser (issue 13): Debian's chromium, headless, driven by playwright-core
from npm (tests/browser/serve_page.test.mjs), against `mmsearch serve` on the demo dishes.

scripts/test.sh installs chromium and sets MMSEARCH_REQUIRE_BROWSER=1, so CI fails rather than
skips when the browser is missing. The screenshots go to $MMSEARCH_ARTIFACTS (default
build/test-artifacts); with MMSEARCH_UPDATE_SCREENSHOT=1 the desktop one also replaces
docs/images/serve.png, the README's picture.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Runner
from serve_helper import Served, copy_dishes

REPO = Path(__file__).resolve().parents[2]
BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def ensure_playwright():
    if (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        return
    # The lockfile pins the version and its hash; npm ci installs exactly that.
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True,
                   capture_output=True, timeout=600)


def test_the_page_in_chromium(mmsearch_bin, tiny_models, tmp_path):
    missing = [what for what, ok in (("chromium", CHROMIUM.exists()),
                                     ("node", shutil.which("node") is not None)) if not ok]
    if missing:
        if os.environ.get("MMSEARCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test needs {', '.join(missing)} (scripts/setup.sh installs them)")
        pytest.skip(f"needs {', '.join(missing)}")
    ensure_playwright()
    dishes = copy_dishes(tmp_path / "dishes")
    Runner(mmsearch_bin, tmp_path / "home", tiny_models)("index", dishes, "--model", "dishes-tiny",
                                                         check=0)
    out = Path(os.environ.get("MMSEARCH_ARTIFACTS", REPO / "build" / "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    server = Served(mmsearch_bin, tmp_path / "home", [dishes], models=tiny_models)
    try:
        proc = subprocess.run(["node", str(BROWSER_DIR / "serve_page.test.mjs"), server.base + "/",
                               str(dishes), str(out)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "CHROMIUM": str(CHROMIUM)})
    finally:
        code, log = server.stop()
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "browser test passed" in proc.stdout
    assert code == 0, log
    health_errors = [line for line in log.splitlines() if line.startswith("error")]
    assert not health_errors, log
    for name in ("serve-desktop.png", "serve-phone.png", "serve-matrix.png"):
        assert (out / name).stat().st_size > 10_000
    if os.environ.get("MMSEARCH_UPDATE_SCREENSHOT") == "1":
        target = REPO / "docs" / "images" / "serve.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "serve-desktop.png", target)
