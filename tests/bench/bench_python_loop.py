#!/usr/bin/python3
"""The study's Python indexing loop, as its notebook runs it, for scripts/bench.sh to compare
`mmsearch index` against: same photos, same deterministic weights, same cores.

Per item, the seed loop does what LAVIS users do: PIL open + convert, torchvision
Resize/ToTensor/Normalize, pre_caption, then three extract_features-style calls at batch 1
(multimodal, image, text), so the image encoder runs twice. The batched variant does one image
pass, one text pass and one multimodal pass per batch, as `mmsearch index` does.

Prints one JSON object: load seconds, steady-state items/s (after --warmup items), the FLOPs of
one image forward (torch.profiler) when --flops is given. Thread settings come from the
environment (OMP_NUM_THREADS, OMP_WAIT_POLICY) and --threads, as the caller sets them.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

import train_tiny  # noqa: E402  (pre_caption and the bert-base-uncased WordPiece rules)
from mmsearch_models import bundle as mb  # noqa: E402
from mmsearch_models import zoo  # noqa: E402


def load_model(name: str, checkpoints: Path):
    """The eager model with the golden-protocol weights of `export --deterministic-weights`."""
    spec = zoo.MODELS[name]
    paths = {c.filename: checkpoints / c.filename for c in spec.checkpoints}
    if not all(p.exists() for p in paths.values()):
        paths = zoo.write_deterministic_checkpoints(name, checkpoints)
    model = zoo.build_model(name)
    zoo.load_checkpoint_files(model, name, paths)
    return model.eval()


def read_items(photos: Path, count: int):
    with open(photos / "captions.csv", newline="", encoding="utf-8") as f:
        rows = [(photos / r["file"], r["caption"]) for r in csv.DictReader(f)]
    rows = [r for r in rows if r[0].exists()]
    return [rows[i % len(rows)] for i in range(count)]


def image_flops(model, pixels: torch.Tensor) -> float:
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        model.encode_image(pixels)
    return float(sum(e.flops for e in prof.key_averages() if e.flops))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--photos", type=Path, required=True, help="folder with captions.csv")
    ap.add_argument("--vocab", type=Path, required=True, help="bert-base-uncased vocab.txt")
    ap.add_argument("--checkpoints", type=Path, required=True, help="cache of deterministic checkpoints")
    ap.add_argument("--mode", choices=["seed", "batched"], default="seed")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--items", type=int, default=8, help="timed items after the warm-up")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--flops", action="store_true", help="also count one image forward's FLOPs")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    model = load_model(args.model, args.checkpoints)
    load_s = time.monotonic() - t0
    vocab = train_tiny.Vocab(mb.bert_vocab(args.vocab))
    size = int(model.image_size)
    preprocess = transforms.Compose([
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mb.MEAN, mb.STD),
    ])
    step = 1 if args.mode == "seed" else args.batch
    warmup = -(-args.warmup // step) * step
    items = read_items(args.photos, warmup + -(-args.items // step) * step)

    def run(chunk):
        images = torch.stack([preprocess(Image.open(p).convert("RGB")) for p, _ in chunk])
        captions = [train_tiny.pre_caption(c) for _, c in chunk]
        ids, mask = vocab.batch(captions, train_tiny.MAX_TOKENS)
        with torch.no_grad():
            if args.mode == "seed":  # extract_features(mode="multimodal"), then "image", then "text"
                vision, _, _ = model.encode_image(images)
                model.encode_multimodal(vision, ids, mask)
                model.encode_image(images)
                model.encode_text(ids, mask)
            else:
                vision, _, _ = model.encode_image(images)
                model.encode_text(ids, mask)
                model.encode_multimodal(vision, ids, mask)

    t0 = time.monotonic()
    for i in range(0, warmup, step):
        run(items[i:i + step])
    warm_s = time.monotonic() - t0
    t0 = time.monotonic()
    for i in range(warmup, len(items), step):
        run(items[i:i + step])
    steady_s = time.monotonic() - t0
    timed = len(items) - warmup
    out = {"model": args.model, "mode": args.mode, "batch": step, "torch_threads": torch.get_num_threads(),
           "load_seconds": load_s, "warmup_items": warmup, "warmup_seconds": warm_s, "items": timed,
           "seconds": steady_s, "items_per_second": timed / steady_s}
    if args.flops:
        out["image_flops"] = image_flops(model, torch.stack([preprocess(Image.open(items[0][0]).convert("RGB"))]))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
