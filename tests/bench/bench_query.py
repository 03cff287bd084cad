#!/usr/bin/python3
"""Query-at-scale benchmark (issue 10): builds stores through `mmsearch import` from synthetic
normalised vectors, times the real `mmsearch query --text` process end to end and its search
phase, and reports peak RSS, disk per item, import rate and recall@10 against exact fp32 brute
force (max over queries for BLIP-2). Prints a markdown table; docs/PERFORMANCE.md holds the
latest one.

The synthetic vectors are shaped like a photo collection, not uniform noise: every item belongs
to a theme. 20 themes are the bench queries' own text vectors (so every query has true matches,
as a real query does), the rest are random directions. Each image is a noisy copy of its theme,
and for BLIP-2 each of its 32 query vectors is a noisy copy of the image. The noise levels are
parameters (--image-noise, --query-noise, each the ratio of the noise's norm to the
signal's); see docs/PERFORMANCE.md for what they mean for recall.

Usage:
  tests/bench/bench_query.py --bin build/mmsearch --models DIR_WITH_FULL_SIZE_BUNDLES \
      --work /big/disk/dir [--sizes 8,10000,100000,1000000] [--shapes blip,blip2]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

QUERIES = [
    "a plate of spaghetti", "a pizza with basil", "a bowl of soup", "a slice of cake",
    "grilled fish on a plate", "a salad with tomatoes", "lasagne in a dish", "a cup of coffee",
    "fried food on paper", "a risotto with mushrooms", "a dessert with cream", "bread and cheese",
    "a seafood dish", "a meat stew", "ice cream in a cone", "a sandwich", "pasta with sauce",
    "a plate of vegetables", "a bowl of fruit", "a glass of wine",
]
SHAPES = {"blip": ("blip-base", 1), "blip2": ("blip2-vitL", 32)}
CHUNK = 8192


def run_measured(cmd, env):
    """Runs cmd; returns (stdout, stderr, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_query: {' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                 f"{err.decode()[-3000:]}")
    return out.decode(), err.decode(), wall


def peak_rss_mb(cmd, env):
    """Runs cmd and returns (stdout, wall, peak RSS MB) using wait4 for this process alone."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        out_fd = os.open(env["BENCH_OUT"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out_fd, 1)
        os.dup2(fd, 2)
        os.execve(cmd[0], [str(c) for c in cmd], env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_query: {' '.join(map(str, cmd))} failed")
    return Path(env["BENCH_OUT"]).read_text(), wall, usage.ru_maxrss / 1024.0


def query_vectors(binary, model, models_dir, work):
    out = work / f"queries-{model}"
    env = dict(os.environ, MMSEARCH_MODELS=str(models_dir), MMSEARCH_HOME=str(work / "embed-home"))
    cmd = [binary, "embed", "--model", model, "--out", out]
    for q in QUERIES:
        cmd += ["--text", q]
    run_measured(cmd, env)
    t = np.load(out / "text_embeds_proj.npy")[:, 0, :].astype(np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def normalise(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def generate(folder, n, per_item, queries, args, seed=1234):
    """Writes metadata.jsonl + image_proj.npy (fp16) in chunks; returns exact top-10 per query
    (indices into the items) by fp32 max-over-queries brute force, computed on the fly."""
    dim = queries.shape[1]
    rng = np.random.default_rng(seed)
    themes = np.concatenate([queries, normalise(rng.standard_normal((args.themes, dim)))])
    folder.mkdir(parents=True, exist_ok=True)
    shape = (n, per_item, dim) if per_item > 1 else (n, dim)
    array = np.lib.format.open_memmap(folder / "image_proj.npy", mode="w+", dtype=np.float16,
                                      shape=shape)
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_index = np.zeros((len(queries), 0), dtype=np.int64)
    with open(folder / "metadata.jsonl", "w") as meta:
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            theme = rng.integers(0, len(themes), m)
            # Noise is scaled to unit expected norm, so a level of 1 means as much noise as
            # signal (cosine ~0.7 between an image and its theme).
            scale = 1.0 / np.sqrt(dim)
            image = normalise(themes[theme] + args.image_noise * scale *
                              rng.standard_normal((m, dim)))
            if per_item > 1:
                vectors = normalise(image[:, None, :] + args.query_noise * scale *
                                    rng.standard_normal((m, per_item, dim)))
                scores = np.einsum("mqd,td->tmq", vectors, queries, optimize=True).max(axis=2)
            else:
                vectors = image
                scores = queries @ vectors.T
            array[start:start + m] = vectors.astype(np.float16)
            for i in range(m):
                meta.write(json.dumps({"file": f"img/{start + i:08d}.jpg",
                                       "category": f"theme{theme[i]}"}) + "\n")
            scores = np.concatenate([best_scores, scores.astype(np.float32)], axis=1)
            index = np.concatenate([best_index, np.broadcast_to(
                np.arange(start, start + m), (len(queries), m))], axis=1)
            keep = np.argsort(-scores, axis=1, kind="stable")[:, :10]
            best_scores = np.take_along_axis(scores, keep, axis=1)
            best_index = np.take_along_axis(index, keep, axis=1)
    array.flush()
    return best_index


def disk_bytes(home):
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file() and
               not p.name.endswith(("-shm", ".json")))


def bench_size(binary, models_dir, work, shape, n, queries, args, lists_to_probe=None):
    model, per_item = SHAPES[shape]
    folder = work / f"{shape}-{n}"
    home = folder / "home"
    root = folder / "root"
    env = dict(os.environ, MMSEARCH_MODELS=str(models_dir), MMSEARCH_HOME=str(home),
               BENCH_OUT=str(folder / "stdout.txt"))
    saved = folder / "bench-import.json"
    if args.reuse and saved.exists():
        # Queries only, against the store an earlier run built (a new binary, the same data).
        imported = json.loads(saved.read_text())
        exact = np.load(folder / "exact-top10.npy")
    else:
        if folder.exists():
            shutil.rmtree(folder)
        exact = generate(folder / "import", n, per_item, queries, args)
        (root / "img").mkdir(parents=True)
        out, _, import_wall = run_measured([binary, "import", folder / "import", "--model",
                                            model, "--root", root, "--json"], env)
        imported = json.loads(out)
        # From kAnnAutoItems on, import builds the approximate-search index: its share of the
        # wall.
        imported["ann_build_s"] = (import_wall - imported["seconds"]
                                   if imported.get("ann_built") else 0.0)
        imported["disk_per_item"] = disk_bytes(home) / n
        shutil.rmtree(folder / "import")  # the store holds the vectors now
        np.save(folder / "exact-top10.npy", exact)
        saved.write_text(json.dumps(imported))
    import_rate = imported["items_per_second"]  # the import itself, not the process start
    ann_build_s = imported["ann_build_s"]
    disk = imported["disk_per_item"]
    walls, rss, search_ms, recalls, proven, nprobe = [], [], [], [], 0, 0
    exact_ms, exact_recalls = [], []
    probe = ["--nprobe", str(lists_to_probe)] if lists_to_probe else []
    for qi, text in enumerate(QUERIES[: args.queries]):
        out, wall, peak = peak_rss_mb([binary, "query", "--in", root, "--model", model, "--text",
                                       text, "-k", "10", "--json", *probe], env)
        result = json.loads(out)
        walls.append(wall)
        rss.append(peak)
        search_ms.append(result["phases_ms"]["search"])
        proven += bool(result["proven_exact"])
        nprobe = result.get("nprobe", 0)
        truth = set(int(i) for i in exact[qi][: min(10, n)])
        found = {int(Path(r["path"]).stem) for r in result["results"]}
        recalls.append(len(found & truth) / max(1, len(truth)))
        if result.get("approximate") and qi < args.exact_queries:
            # The same query without the index, for the ratio in the same run.
            out, _, _ = peak_rss_mb([binary, "query", "--in", root, "--model", model, "--text",
                                     text, "-k", "10", "--json", "--exact"], env)
            plain = json.loads(out)
            exact_ms.append(plain["phases_ms"]["search"])
            found = {int(Path(r["path"]).stem) for r in plain["results"]}
            exact_recalls.append(len(found & truth) / max(1, len(truth)))
    return {
        "ann_nprobe": nprobe, "ann_build_s": ann_build_s,
        "exact_search_ms": float(np.median(exact_ms)) if exact_ms else None,
        "exact_recall10": float(np.mean(exact_recalls)) if exact_recalls else None,
        "shape": shape, "items": n, "import_items_per_s": import_rate, "disk_per_item": disk,
        "wall_s": float(np.median(walls)), "rss_mb": float(max(rss)),
        "search_ms": float(np.median(search_ms)), "search_ms_p90": float(np.percentile(search_ms, 90)),
        "recall10": float(np.mean(recalls)), "proven": proven, "queries": len(walls),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--sizes", default="8,10000,100000,1000000")
    parser.add_argument("--shapes", default="blip,blip2")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--themes", type=int, default=2000)
    parser.add_argument("--image-noise", type=float, default=1.0,
                        help="noise norm / signal norm of an image around its theme")
    parser.add_argument("--query-noise", type=float, default=1.0,
                        help="BLIP-2: noise norm / signal norm of a query vector around its image")
    parser.add_argument("--exact-queries", type=int, default=3,
                        help="with an approximate-search index: queries also run with --exact")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--nprobe", type=lambda v: [int(x) for x in v.split(",")],
                        help="with an approximate-search index: a row per lists-probed value "
                             "(default: the index's own)")
    parser.add_argument("--reuse", action="store_true",
                        help="query the stores an earlier run left in --work instead of "
                             "building them again (import figures are that run's)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape in args.shapes.split(","):
        model = SHAPES[shape][0]
        queries = query_vectors(args.bin, model, args.models, args.work)
        for n in [int(s) for s in args.sizes.split(",")]:
            for i, nprobe in enumerate(args.nprobe or [None]):
                # Every nprobe after the first queries the store the first one built.
                row = bench_size(args.bin, args.models, args.work, shape, n, queries,
                                 argparse.Namespace(**{**vars(args), "reuse": args.reuse or i > 0}),
                                 nprobe)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print("| shape | items | query wall (median) | vs 8 items | search phase median / p90 | "
          "peak RSS | vs 8 items | disk / item | import | recall@10 | proven exact |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        base = next((r for r in rows if r["shape"] == row["shape"] and r["items"] == 8), row)
        print(f"| {row['shape']} | {row['items']:,} | {row['wall_s']:.2f} s | "
              f"{row['wall_s'] / base['wall_s']:.2f}x | {row['search_ms']:.1f} / "
              f"{row['search_ms_p90']:.1f} ms | {row['rss_mb']:.0f} MB | "
              f"+{row['rss_mb'] - base['rss_mb']:.0f} MB | {row['disk_per_item'] / 1024:.1f} KiB | "
              f"{row['import_items_per_s']:,.0f}/s | {row['recall10']:.3f} | "
              f"{row['proven']}/{row['queries']} |")
    ann_rows = [r for r in rows if r["ann_nprobe"]]
    if ann_rows:
        print()
        print("| shape | items | index build | lists probed | search phase (ANN) | recall@10 | "
              "search phase --exact | recall@10 --exact |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in ann_rows:
            print(f"| {row['shape']} | {row['items']:,} | {row['ann_build_s']:.0f} s | "
                  f"{row['ann_nprobe']} | {row['search_ms']:.1f} ms | {row['recall10']:.3f} | "
                  + (f"{row['exact_search_ms']:.1f} ms | {row['exact_recall10']:.3f} |"
                     if row["exact_search_ms"] is not None else "— | — |"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
