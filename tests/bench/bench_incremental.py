#!/usr/bin/python3
"""Incremental re-index benchmark (issue 10): the time `mmsearch index DIR` takes over N files
that are all unchanged since they were stored. The store is filled through `mmsearch import`
(which records the size and mtime of files that exist locally), so no model forward is needed
to set it up; the files are tiny valid PNGs, the index run only lists, stats and compares them.

  tests/bench/bench_incremental.py --bin build/mmsearch --models DIR --work DIR [--files 100000]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np


def tiny_png(seed: int) -> bytes:
    """A valid 1x1 PNG whose pixel (and so whose bytes) depend on the seed."""
    def chunk(kind, data):
        return (len(data).to_bytes(4, "big") + kind + data +
                zlib.crc32(kind + data).to_bytes(4, "big"))
    pixel = bytes([0, seed & 255, (seed >> 8) & 255, (seed >> 16) & 255])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (1).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00")
            + chunk(b"IDAT", zlib.compress(pixel)) + chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--files", type=int, default=100000)
    parser.add_argument("--model", default="blip-base")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    photos = args.work / "photos"
    vectors = args.work / "vectors"
    vectors.mkdir(parents=True)
    env = dict(os.environ, MMSEARCH_MODELS=str(args.models), MMSEARCH_HOME=str(args.work / "home"))
    manifest = json.loads((args.models / args.model / "mmsearch.json").read_text())
    dim = manifest["dims"]["embed"]
    per_folder = 1000
    with open(vectors / "metadata.jsonl", "w") as meta:
        for i in range(args.files):
            rel = f"{i // per_folder:04d}/{i:07d}.png"
            path = photos / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tiny_png(i))
            # The category `index` derives (the first sub-folder), so that nothing differs.
            meta.write(json.dumps({"file": str(path), "category": rel.split("/")[0]}) + "\n")
    rng = np.random.default_rng(1)
    v = rng.standard_normal((args.files, dim)).astype(np.float32)
    np.save(vectors / "image_proj.npy", v / np.linalg.norm(v, axis=1, keepdims=True))
    subprocess.run([args.bin, "import", vectors, "--model", args.model], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    rows = []
    for attempt in range(3):
        start = time.perf_counter()
        out = subprocess.run([args.bin, "index", photos, "--model", args.model, "--json"],
                             env=env, check=True, capture_output=True, text=True).stdout
        wall = time.perf_counter() - start
        summary = json.loads(out)
        rows.append((wall, summary["unchanged"], summary["indexed"], summary["found"]))
        print(f"run {attempt + 1}: {wall:.2f} s, found {summary['found']}, unchanged "
              f"{summary['unchanged']}, indexed {summary['indexed']}", file=sys.stderr)
    print(f"| files | unchanged | re-index wall (best of 3) |")
    print(f"| --- | --- | --- |")
    best = min(rows)
    print(f"| {args.files:,} | {best[1]:,} | {best[0]:.2f} s |")


if __name__ == "__main__":
    main()
