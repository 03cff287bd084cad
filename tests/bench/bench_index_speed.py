#!/usr/bin/python3
"""Indexing at the speed of the hardware (issue 11): one run, one table, every ratio from the
same run. scripts/bench.sh calls this; docs/PERFORMANCE.md holds the latest table.

For the machine: fp32 sgemm and bf16 GEMM peaks (bench_gemm, under mmsearch's thread split).
Per model and dtype, from `mmsearch index --json` over the shared photos with their captions:
model load, steady-state items/s (image + caption + multimodal, after the first batch), the
image forward's GFLOP/s against the matching peak (FLOPs counted by torch.profiler on the eager
model), the share of wall time in the forward, and peak RSS. The project's Python reference
loop (tests/bench/bench_python_loop.py) runs on the same photos, weights and cores, as users
run it, at its best thread setting, and batched. bf16 against fp32: speed, and the cosine
between their stored embeddings. Then a cold `query --text` process against its own text-module
load + forward, and the dish eval's recall in fp32 and bf16 with the default model.

Usage:
  tests/bench/bench_index_speed.py --bin build/mmsearch --gemm build/tests/bench_gemm \
      --models DIR --work DIR [--photos DIR] [--all] [--markdown FILE]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["blip-base", "blip2-vitL"]
ALL_MODELS = MODELS + ["blip2-pretrain"]
# items indexed per model (batches of 8): the first batch is warm-up, the rest is steady state.
ITEMS = {"blip-base": 40, "blip2-vitL": 24, "blip2-pretrain": 16}
PY_ITEMS = {"blip-base": (6, 2), "blip2-vitL": (4, 1), "blip2-pretrain": (2, 1)}  # seed (timed, warm-up)
CHECKPOINTS = {"blip-base": ["model_base_capfilt_large.pth"],
               "blip2-vitL": ["clip_vit_L.pth", "blip2_pretrained_vitL.pth"],
               "blip2-pretrain": ["eva_vit_g.pth", "blip2_pretrained.pth"]}
QUERY = "a plate of spaghetti with tomato sauce"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None, expect_json=True):
    """Runs cmd; returns (parsed stdout or text, wall seconds, peak RSS in MB of that process)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed ({proc.returncode}):\n{errors[-3000:]}")
    if not expect_json:
        return text, wall, usage.ru_maxrss / 1024.0
    try:  # a pretty-printed document, or JSON lines of which the last one counts
        value = json.loads(text)
    except json.JSONDecodeError:
        value = json.loads(text.strip().splitlines()[-1])
    return value, wall, usage.ru_maxrss / 1024.0


def photo_folder(photos: Path, count: int, work: Path) -> Path:
    """A folder of `count` items (the shared photos, repeated under new names as needed) with
    their English captions."""
    with open(photos / "captions.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if (photos / r["file"]).exists()]
    folder = work / f"photos-{count}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "caption", "category"])
        for i in range(count):
            r = rows[i % len(rows)]
            name = f"{i:04d}_{r['file']}"
            os.symlink(photos / r["file"], folder / name)
            w.writerow([name, r["caption"], r["category"]])
    return folder


def warm_page_cache(folder: Path) -> None:
    """Reads a bundle once, so that every run's load time is a warm load, not the disk's."""
    for f in folder.iterdir():
        with open(f, "rb") as stream:
            while stream.read(1 << 24):
                pass


def process_start_ms(args) -> float:
    """The fastest of five `mmsearch --version`: loading libtorch and the libraries, no model."""
    return min(run([args.bin, "--version"], expect_json=False)[1] for _ in range(5)) * 1e3


def index_run(args, model: str, dtype: str, folder: Path, home: Path) -> dict:
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    env = dict(os.environ, MMSEARCH_HOME=str(home))
    j, wall, rss = run([args.bin, "index", folder, "--model", model, "--models", args.models,
                        "--dtype", dtype, "--batch-size", "8", "--vectors", "fp32", "--ann", "off",
                        "--no-verify", "--json", "-q"], env)
    t = j["timing"]
    steady_items = t["embedded_items"] - t["first_batch_items"]
    steady_s = t["embed_seconds"] - t["first_batch_seconds"]
    steady_forward = t["image_forward_seconds"] + t["text_forward_seconds"] + \
        t["multimodal_forward_seconds"] - t["first_batch_forward_seconds"]
    steady_image = t["image_forward_seconds"] - t["first_batch_image_forward_seconds"]
    return {"wall": wall, "rss_mb": rss, "load_s": t["load_seconds"], "items": t["embedded_items"],
            "steady_items_per_s": steady_items / steady_s, "forward_share": steady_forward / steady_s,
            "image_s_per_item": steady_image / steady_items, "timing": t, "home": home}


def export_vectors(args, model: str, home: Path, out: Path) -> dict:
    env = dict(os.environ, MMSEARCH_HOME=str(home))
    run([args.bin, "export-vectors", out, "--model", model, "--models", args.models, "--no-verify",
         "--json", "-q"], env)
    items = [json.loads(line) for line in open(out / "metadata.jsonl", encoding="utf-8")]
    paths = [item["file"] for item in items]
    arrays = {kind: np.load(out / f"{kind}.npy") for kind in
              ("image_proj", "text_proj", "image_embed", "multimodal") if (out / f"{kind}.npy").exists()}
    caption_rows, offset = {}, 0  # caption arrays hold each item's captions in item order
    for item in items:
        caption_rows[item["file"]] = list(range(offset, offset + len(item["captions"])))
        offset += len(item["captions"])
    return {"paths": paths, "caption_rows": caption_rows, "arrays": arrays}


def min_cosines(a: dict, b: dict) -> dict:
    """Per vector kind, the smallest cosine between the two runs' rows of the same item."""
    order = {p: i for i, p in enumerate(b["paths"])}
    out = {}
    for kind, x in a["arrays"].items():
        if kind in ("text_proj", "multimodal"):
            mine = [r for p in a["paths"] for r in a["caption_rows"][p]]
            rows = [r for p in a["paths"] for r in b["caption_rows"][p]]
            x = x[mine]
        else:
            rows = [order[p] for p in a["paths"]]
        y = b["arrays"][kind][rows].astype(np.float64)
        x = x.astype(np.float64)
        x = x.reshape(x.shape[0], -1, x.shape[-1]) if x.ndim > 2 else x[:, None, :]
        y = y.reshape(y.shape[0], -1, y.shape[-1]) if y.ndim > 2 else y[:, None, :]
        cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
        out[kind] = float(cos.min())
    return out


def python_loop(args, model: str, mode: str, threads: int, passive: bool, batch: int = 8,
                flops: bool = False) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    timed, warm = PY_ITEMS[model]
    if mode == "batched":
        timed, warm = 2 * batch, batch
    cmd = [sys.executable, ROOT / "tests/bench/bench_python_loop.py", "--model", model,
           "--photos", args.photos, "--vocab", args.vocab, "--checkpoints", args.work / "checkpoints",
           "--mode", mode, "--batch", str(batch), "--items", str(timed), "--warmup", str(warm)]
    if threads:
        cmd += ["--threads", str(threads)]
    if flops:
        cmd.append("--flops")
    j, wall, rss = run(cmd, env)
    j["rss_mb"] = rss
    return j


def cold_query(args, model: str, dtype: str, home: Path) -> dict:
    env = dict(os.environ, MMSEARCH_HOME=str(home))
    best = None
    for _ in range(3):
        j, wall, _ = run([args.bin, "query", "--text", QUERY, "--model", model, "--models", args.models,
                          "--dtype", dtype, "--no-verify", "--json", "-q"], env)
        p = j["phases_ms"]
        row = {"wall_ms": wall * 1e3, "load_ms": p["load"], "forward_ms": p["forward"]}
        if best is None or row["wall_ms"] < best["wall_ms"]:
            best = row
    best["ratio"] = best["wall_ms"] / (best["load_ms"] + best["forward_ms"])
    return best


def dish_eval(args, dtype: str) -> dict:
    home = args.work / f"home-eval-{dtype}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = dict(os.environ, MMSEARCH_HOME=str(home))
    j, _, _ = run([args.bin, "eval", ROOT / "data/dishes", "--models", ROOT / "models",
                   "--dtype", dtype, "--json", "-q"], env)
    return j


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--gemm", type=Path, required=True, help="the bench_gemm binary")
    ap.add_argument("--models", type=Path, required=True, help="folder of full-size bundles")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared/data/photos")
    ap.add_argument("--vocab", type=Path, default=ROOT.parent / "shared/data/bert-base-uncased-vocab.txt")
    ap.add_argument("--all", action="store_true", help="add blip2-pretrain (EVA ViT-g)")
    ap.add_argument("--only", help="comma-separated models instead of the default set")
    ap.add_argument("--no-python", action="store_true", help="skip the Python reference loops")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.work = args.work.resolve()
    models = args.only.split(",") if args.only else ALL_MODELS if args.all else MODELS
    started = time.perf_counter()

    log("GEMM peaks")
    peaks = {}
    for line in run([args.gemm], expect_json=False)[0].splitlines():
        j = json.loads(line)
        peaks[j["dtype"]] = j
    lines = ["| | " + " | ".join(models) + " |", "| --- |" + " --- |" * len(models)]
    rows: dict = {}

    def put(label, model, value):
        rows.setdefault(label, {})[model] = value

    for model in models:
        folder = photo_folder(args.photos, ITEMS[model], args.work)
        warm_page_cache(args.models / model)
        runs = {}
        for dtype in ("fp32", "bf16"):
            log(f"{model} {dtype}: mmsearch index of {ITEMS[model]} items")
            runs[dtype] = index_run(args, model, dtype, folder, args.work / f"home-{model}-{dtype}")
        py = {}
        if not args.no_python:
            log(f"{model}: Python seed loop, torch's default threads")
            py["default"] = python_loop(args, model, "seed", 0, False, flops=True)
            log(f"{model}: Python seed loop, 2 threads")
            py["two"] = python_loop(args, model, "seed", 2, False)
            log(f"{model}: Python seed loop, 2 threads, OMP passive")
            py["passive"] = python_loop(args, model, "seed", 2, True)
            for bs in (8, 16):
                log(f"{model}: Python batched loop, batch {bs}")
                py[f"batched{bs}"] = python_loop(args, model, "batched", 2, True, batch=bs)
        flops = py.get("default", {}).get("image_flops")
        log(f"{model}: image forward, modules as stored against frozen")
        freezing = {}
        for line in run([args.gemm.parent / "bench_encoder", args.models / model, "8", "2", "--freeze"],
                        expect_json=False)[0].splitlines():
            j = json.loads(line)
            freezing[(j["dtype"], j["frozen"])] = j["image_ms_per_img"]
        log(f"{model}: bf16 against fp32 embeddings, cold query")
        cos = min_cosines(export_vectors(args, model, runs["bf16"]["home"], args.work / f"vec-{model}-bf16"),
                          export_vectors(args, model, runs["fp32"]["home"], args.work / f"vec-{model}-fp32"))
        queries = {dtype: cold_query(args, model, dtype, runs[dtype]["home"]) for dtype in ("fp32", "bf16")}

        for dtype in ("fp32", "bf16"):
            r = runs[dtype]
            put(f"`index` {dtype}: steady-state items/s", model, fmt(r["steady_items_per_s"]))
            put(f"`index` {dtype}: model load s", model, fmt(r["load_s"]))
            put(f"`index` {dtype}: forward share of steady wall time", model, f"{100 * r['forward_share']:.0f} %")
            if flops:
                gf = flops / r["image_s_per_item"] / 1e9
                put(f"`index` {dtype}: image forward GFLOP/s (share of {dtype} peak)", model,
                    f"{gf:.0f} ({100 * gf / peaks[dtype]['peak_gflops']:.0f} %)")
            put(f"`index` {dtype}: peak RSS MB", model, f"{r['rss_mb']:.0f}")
        if flops:
            put("image forward GFLOP per image", model, f"{flops / 1e9:.1f}")
        for dtype in ("fp32", "bf16"):
            stored, frozen = freezing[(dtype, False)], freezing[(dtype, True)]
            put(f"image forward {dtype} ms/img, batch 8: as stored → frozen", model,
                f"{stored:.0f} → {frozen:.0f} ({stored / frozen:.2f}×)")
        put("bf16 / fp32 index speed", model, f"{runs['bf16']['steady_items_per_s'] / runs['fp32']['steady_items_per_s']:.2f}×")
        put("bf16 vs fp32: smallest cosine (image proj, text proj, multimodal)", model,
            ", ".join(f"{cos[k]:.4f}" for k in ("image_proj", "text_proj", "multimodal") if k in cos))
        if py:
            put(f"Python seed loop, torch default ({py['default']['torch_threads']} thread{'s' if py['default']['torch_threads'] > 1 else ''}) items/s",
                model, fmt(py["default"]["items_per_second"], 3))
            put("Python seed loop, 2 threads items/s", model, fmt(py["two"]["items_per_second"], 3))
            put("Python seed loop, 2 threads, OMP passive items/s", model, fmt(py["passive"]["items_per_second"], 3))
            best_seed = max(py[k]["items_per_second"] for k in ("default", "two", "passive"))
            best_batched = max(py["batched8"]["items_per_second"], py["batched16"]["items_per_second"])
            put("Python batched loop (best of bs 8/16) items/s", model, fmt(best_batched, 3))
            put("Python peak RSS MB (seed, batched)", model,
                f"{py['passive']['rss_mb']:.0f}, {max(py['batched8']['rss_mb'], py['batched16']['rss_mb']):.0f}")
            fp32 = runs["fp32"]["steady_items_per_s"]
            put("fp32 `index` / best seed loop (goal ≥ 3×)", model, f"{fp32 / best_seed:.2f}×")
            put("fp32 `index` / best batched loop (goal ≥ 1.5×)", model, f"{fp32 / best_batched:.2f}×")
            put("bf16 `index` / seed loop at torch default (goal ≥ 8×)", model,
                f"{runs['bf16']['steady_items_per_s'] / py['default']['items_per_second']:.2f}×")
        for dtype in ("fp32", "bf16"):
            q = queries[dtype]
            put(f"cold `query --text` {dtype}: wall ms / (load + forward) ms (goal ≤ 1.2×)", model,
                f"{q['wall_ms']:.0f} / {q['load_ms'] + q['forward_ms']:.0f} = {q['ratio']:.2f}×")
        bundle = args.models / model
        # The modules and, in a format-2 bundle, the weight file they share.
        modules = sum((bundle / f).stat().st_size for f in ("image.pt", "text.pt", "multimodal.pt",
                                                              "weights.bin") if (bundle / f).exists())
        checkpoints = [args.work / "checkpoints" / c for c in CHECKPOINTS[model]]
        if all(c.exists() for c in checkpoints):
            ckpt = sum(c.stat().st_size for c in checkpoints)
            put("bundle weights / checkpoint files, MB (goal ≤ 1.05×)", model,
                f"{modules / 1e6:.0f} / {ckpt / 1e6:.0f} = {modules / ckpt:.2f}×")
        else:
            put("bundle modules MB", model, f"{modules / 1e6:.0f}")
        # Every module is loaded by `index`; bf16 holds the weights at half their fp32 size.
        for dtype, loaded in (("fp32", modules), ("bf16", modules / 2)):
            put(f"`index` {dtype}: peak RSS / weights loaded (goal ≤ 1.3×)", model,
                f"{runs[dtype]['rss_mb'] * 1048576 / loaded:.2f}×")

    start_ms = process_start_ms(args)
    log("dish eval, fp32 and bf16")
    evals = {dtype: dish_eval(args, dtype) for dtype in ("fp32", "bf16")}

    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(values.get(m, "—") for m in models) + " |")
    head = [f"Machine peaks, same run: fp32 sgemm {peaks['fp32']['peak_gflops']:.0f} GFLOP/s "
            f"(torch {peaks['fp32']['torch_threads']} / OpenBLAS {peaks['fp32']['blas_threads']} threads), "
            f"bf16 GEMM {peaks['bf16']['peak_gflops']:.0f} GFLOP/s "
            f"(torch {peaks['bf16']['torch_threads']} / OpenBLAS {peaks['bf16']['blas_threads']} threads).", ""]
    tail = ["", "Dish eval (default model, data/dishes): " + "; ".join(
        f"{dtype} {json.dumps(summarise_eval(evals[dtype]))}" for dtype in ("fp32", "bf16")),
        "", f"Process start (`mmsearch --version`, best of 5): {start_ms:.0f} ms; a cold query pays it "
            "on top of load + forward.",
        "", f"Bench wall time {(time.perf_counter() - started) / 60:.1f} min."]
    text = "\n".join(head + lines + tail)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


def summarise_eval(reports) -> dict:
    """Text->image and image->text Recall@5 and category P@5 of `mmsearch eval --json`."""
    r = reports[0]
    return {"model": r["model"], "t2i_r5": round(r["text_to_image"]["r5"], 3),
            "i2t_r5": round(r["image_to_text"]["r5"], 3),
            "i2i_p5": round(r["image_to_image_category_p5"]["precision"], 3)}


if __name__ == "__main__":
    sys.exit(main())
