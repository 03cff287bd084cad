#!/usr/bin/python3
"""Train the default bundle `models/dishes-tiny/`: a small BLIP-2 on synthetic Italian dishes.

    scripts/train_tiny.py [--out models/dishes-tiny] [--steps N] [--seed S] [--threads T]
    scripts/train_tiny.py --smoke [--out DIR]      # CI: a few steps, asserts the loss decreases

The model is the project's BLIP-2 feature extractor (`mmsearch_models.blip2`) with a small
config: an EVA-style ViT (96 px, 12 px patches, 64+1 tokens) -> ln_vision -> Q-Former with
cross-attention and 8 learned query tokens -> vision/text projections and the ITM head. It is
trained from scratch, CPU only and deterministically, with BLIP-2's two retrieval losses:

* ITC, image-text contrastive: max over the query embeddings of image_proj[q] . text_proj[CLS]
  (the bundle's `max-over-queries` rule), with a learned temperature; targets are spread over
  every pair in the batch that shows the same dish (same English caption), as LAVIS does with
  image ids, so duplicates are not pushed apart;
* ITM, image-text matching: the ITM head on the joint (queries + text) pass, on the positive
  pairs and one hard negative text per image and one hard negative image per text, sampled from
  the ITC similarities (LAVIS `Blip2Qformer.forward`).

Data come from scripts/make_dishes.py (train split, seeds 1000+), generated in memory and
JPEG-encoded like the files `mmsearch index` reads, then resized exactly as the C++ side does
(Pillow bicubic squash, CLIP mean/std). Text: each sample takes its caption (mostly), another
English phrasing or the Italian caption, so that both languages and natural queries work.

The vocabulary is built here from the captions with the bert-base-uncased tokenizer rules
(lowercase, strip accents, punctuation split, WordPiece): [PAD] [UNK] [CLS] [SEP] [MASK], every
caption word whole, then single letters and ##letters so an unknown word still tokenises to
known pieces; [DEC] is an added token right after the vocabulary (as in BLIP-2). The bundle is
written by `mmsearch_models.bundle.write_bundle` with this vocabulary (its tokens give the
manifest's text section and the token ids of the export's trace examples and round-trip check).
"""
from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
import unicodedata
from multiprocessing import Pool
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.rnn import pad_sequence  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

import make_dishes as md  # noqa: E402
from mmsearch_models import bundle as mb  # noqa: E402
from mmsearch_models.blip2 import Blip2FeatureExtractor  # noqa: E402

NAME = "dishes-tiny"
CONFIG = dict(
    image_size=96, embed_dim=64, num_query_token=8,
    vit=dict(patch_size=12, embed_dim=96, depth=4, num_heads=4, mlp_hidden=256),
    qformer=dict(hidden=96, layers=4, heads=4, inter=256, cross_attention_freq=2, max_positions=64),
)
SPECIALS = list(mb.SPECIAL_TOKENS)
MAX_TOKENS = 35
ITM_MAX_TOKENS = 32
TRAIN_SEED_BASE = 1000   # training data seeds: 1000, 1001, ... (eval/test sets use other seeds)
CHECK_SEED = 7           # eval-split seed for the in-script held-out check


# ------------------------------------------------------------------------------------------------
# Text: LAVIS pre_caption + bert-base-uncased BasicTokenizer + WordPiece (as include/mmsearch/text.h)


def pre_caption(text: str, max_words: int = 50) -> str:
    import re
    t = re.sub(r'([.!"()*#:;~])', " ", text.lower())
    t = re.sub(r"\s{2,}", " ", t).rstrip("\n").strip(" ")
    return " ".join(t.split(" ")[:max_words])


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def basic_tokenize(text: str) -> List[str]:
    text = "".join(" " if unicodedata.category(c) in ("Zs",) or c in "\t\n\r" else c for c in text
                   if not (ord(c) == 0 or ord(c) == 0xFFFD or (unicodedata.category(c).startswith("C")
                                                            and c not in "\t\n\r")))
    out: List[str] = []
    for w in text.strip().split():
        w = unicodedata.normalize("NFD", w.lower())
        w = "".join(c for c in w if unicodedata.category(c) != "Mn")
        cur = ""
        for c in w:
            if _is_punct(c):
                if cur:
                    out.append(cur)
                out.append(c)
                cur = ""
            else:
                cur += c
        if cur:
            out.append(cur)
    return out


class Vocab:
    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pad, self.unk, self.cls, self.sep, self.mask = (self.ids[t] for t in SPECIALS)
        self.dec = len(self.tokens)  # added token after the vocabulary

    @classmethod
    def build(cls, texts: Sequence[str]) -> "Vocab":
        words = set()
        for t in texts:
            words.update(basic_tokenize(pre_caption(t)))
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
        toks = list(SPECIALS) + sorted(words - set(letters))
        toks += letters + ["##" + c for c in letters] + list(",'-&/?")  # letters and common punctuation
        return cls(toks)

    def wordpiece(self, word: str) -> List[int]:
        if len(word) > 100:
            return [self.unk]
        out, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.ids:
                    cur = self.ids[sub]
                    break
                end -= 1
            if cur is None:
                return [self.unk]
            out.append(cur)
            start = end
        return out

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> List[int]:
        ids = []
        for w in basic_tokenize(pre_caption(text)):
            ids += self.wordpiece(w)
        return [self.cls] + ids[: max_tokens - 2] + [self.sep]

    def batch(self, texts: Sequence[str], max_tokens: int = MAX_TOKENS) -> Tuple[torch.Tensor, torch.Tensor]:
        rows = [torch.tensor(self.encode(t, max_tokens)) for t in texts]
        ids = pad_sequence(rows, batch_first=True, padding_value=self.pad)
        mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
        return ids, mask


def all_texts() -> List[str]:
    out = []
    for d in md.all_dishes():
        out += md.caption_variants(d)
    # words of the hand-written demo/test queries
    out += ["a pizza with mushrooms", "a chocolate cake", "spaghetti with tomato sauce", "lasagne with ragù"]
    return out


# ------------------------------------------------------------------------------------------------
# Data


MEAN = torch.tensor(mb.MEAN).view(3, 1, 1)
STD = torch.tensor(mb.STD).view(3, 1, 1)


def to_pixels_u8(img: Image.Image, size: int) -> bytes:
    """JPEG round trip (the files are JPEG) + Pillow bicubic squash, as `mmsearch` preprocesses."""
    img = Image.open(io.BytesIO(md.encode(img, "jpg"))).convert("RGB")
    return img.resize((size, size), Image.BICUBIC).tobytes()


def _gen(args):
    seed, split, i, size = args
    d, img = md.make_item(seed, split, i)
    return md.caption_en(d), to_pixels_u8(img, size)


def generate(seed_items: List[Tuple[int, str, int]], size: int, procs: int) -> Tuple[torch.Tensor, List[str]]:
    jobs = [(s, sp, i, size) for s, sp, i in seed_items]
    if procs > 1:
        with Pool(procs) as p:
            res = p.map(_gen, jobs, chunksize=64)
    else:
        res = [_gen(j) for j in jobs]
    caps = [r[0] for r in res]
    px = torch.frombuffer(bytearray(b"".join(r[1] for r in res)), dtype=torch.uint8)
    return px.view(len(res), size, size, 3).permute(0, 3, 1, 2).contiguous(), caps


def normalise(px_u8: torch.Tensor) -> torch.Tensor:
    return (px_u8.float() / 255.0 - MEAN) / STD


# ------------------------------------------------------------------------------------------------
# Model and losses


def build_model(vocab: Vocab) -> Blip2FeatureExtractor:
    q = dict(CONFIG["qformer"], vocab_size=vocab.dec + 1)
    m = Blip2FeatureExtractor(vision_encoder="eva-vit-g14", image_size=CONFIG["image_size"],
                              embed_dim=CONFIG["embed_dim"], num_query_token=CONFIG["num_query_token"],
                              vit=dict(CONFIG["vit"]), qformer=q)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2:  # Linear / Conv / Embedding weights, query tokens, cls token, pos embed
                p.copy_(torch.randn(p.shape, generator=g).clamp_(-2, 2) * 0.02)
        m.temp.fill_(0.07)
    return m


def text_cls(model, ids, mask):
    t, _ = model.encode_text(ids, mask)
    return F.normalize(model.text_proj(t[:, 0]), dim=-1)


def losses(model, px: torch.Tensor, ids, mask, itm_ids, itm_mask, dish: torch.Tensor, gen: torch.Generator):
    v, _, img_proj = model.encode_image(px)                 # [B,Nv,Dv], _, [B,Q,E]
    txt = text_cls(model, ids, mask)                        # [B,E]
    temp = model.temp.clamp(0.01, 0.5)
    sim_q = torch.einsum("bqe,te->btq", img_proj, txt)      # image b, text t, query q
    sim_i2t = sim_q.max(-1).values / temp                   # [B,B]
    sim_t2i = sim_i2t.t()
    same = (dish[:, None] == dish[None, :]).float()
    tgt = same / same.sum(1, keepdim=True)
    itc = 0.5 * (-(F.log_softmax(sim_i2t, 1) * tgt).sum(1).mean() - (F.log_softmax(sim_t2i, 1) * tgt).sum(1).mean())
    # Image-image contrast on what mmsearch compares for image queries (the re-normalised mean of
    # the query projections): other pictures of the same dish are the positives. Text alone
    # only pulls images towards their caption; this also pulls same-dish images together,
    # which is what image->image search (category precision) needs.
    z = F.normalize(img_proj.mean(1), dim=-1)
    sim_ii = (z @ z.t()) / temp
    self_mask = torch.eye(z.shape[0], dtype=torch.bool)
    pos = same.masked_fill(self_mask, 0)
    has_pos = pos.sum(1) > 0
    if bool(has_pos.any()):
        log_p = F.log_softmax(sim_ii.masked_fill(self_mask, -1e4), 1)
        ii = -((log_p * pos).sum(1)[has_pos] / pos.sum(1)[has_pos]).mean()
        itc = itc + 0.5 * ii

    # ITM with hard negatives (different dish) sampled from the contrastive similarities
    B = px.shape[0]
    with torch.no_grad():
        w_i2t = F.softmax(sim_i2t.float(), 1).masked_fill(same.bool(), 0) + 1e-9 * (1 - same)
        w_t2i = F.softmax(sim_t2i.float(), 1).masked_fill(same.bool(), 0) + 1e-9 * (1 - same)
        neg_txt = torch.multinomial(w_i2t, 1, generator=gen).squeeze(1)  # for each image
        neg_img = torch.multinomial(w_t2i, 1, generator=gen).squeeze(1)  # for each text
    v_all = torch.cat([v, v, v[neg_img]], 0)
    ids_all = torch.cat([itm_ids, itm_ids[neg_txt], itm_ids], 0)
    mask_all = torch.cat([itm_mask, itm_mask[neg_txt], itm_mask], 0)
    _, logits = model.encode_multimodal(v_all, ids_all, mask_all)
    labels = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)])
    # One positive for two negatives: weigh the positives double, or predicting "no match"
    # everywhere is a comfortable 67% minimum the head never leaves.
    itm = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 2.0]))
    acc = (logits.argmax(1) == labels).float().mean()
    return itc, itm, acc


# ------------------------------------------------------------------------------------------------
# Held-out check in Python (the authoritative one is `mmsearch eval`, see tests/python/test_dishes.py)


@torch.no_grad()
def quick_eval(model, vocab: Vocab, px_u8: torch.Tensor, caps: List[str], cats: List[str]) -> Dict[str, float]:
    model.eval()
    projs = []
    for i in range(0, len(caps), 128):
        projs.append(model.encode_image(normalise(px_u8[i:i + 128]))[2])
    img = torch.cat(projs)                                   # [N,Q,E]
    uniq = sorted(set(caps))
    ids, mask = vocab.batch(uniq)
    txt = text_cls(model, ids, mask)
    s = torch.einsum("nqe,te->tnq", img, txt).max(-1).values  # [T,N]
    cap_idx = torch.tensor([uniq.index(c) for c in caps])
    hits1 = hits5 = 0
    for j, c in enumerate(caps):  # every caption a query (identical-caption rule, pessimistic ties)
        row = s[uniq.index(c)]
        rel = cap_idx == uniq.index(c)
        best = row[rel].max()
        rank = int((row[~rel] >= best).sum())
        hits1 += rank < 1
        hits5 += rank < 5
    mean = F.normalize(img.mean(1), dim=-1)
    ii = mean @ mean.t()
    ii.fill_diagonal_(-float("inf"))
    top = ii.topk(5, dim=1).indices
    p5 = sum(sum(cats[k] == cats[i] for k in top[i].tolist()) / 5 for i in range(len(cats))) / len(cats)
    model.train()
    return {"t2i_r1": hits1 / len(caps), "t2i_r5": hits5 / len(caps), "i2i_p5": p5}


# ------------------------------------------------------------------------------------------------
# Export


def export(model: Blip2FeatureExtractor, vocab: Vocab, dest: Path, meta: dict, log=print) -> dict:
    model = model.eval().requires_grad_(False)
    return mb.write_bundle(
        model, dest, name=NAME, family="blip2",
        description=("small BLIP-2 (EVA-style ViT 96px/12 -> Q-Former, 8 queries) trained from scratch by "
                     "scripts/train_tiny.py on synthetic Italian dishes (scripts/make_dishes.py); "
                     "for demos and tests, not a general-purpose model"),
        vision_encoder="tiny-eva-vit-g14", weights_dtype="fp32", vocab=vocab.tokens,
        source=dict(kind="trained", checkpoints=[], script="scripts/train_tiny.py", **meta), log=log)


# ------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help=f"bundle folder (default models/{NAME}; --smoke: none)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-images", type=int, default=8000)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on shared, busy cores 2 OpenMP threads ran 10x slower)")
    ap.add_argument("--procs", type=int, default=2, help="processes generating the training images")
    ap.add_argument("--smoke", action="store_true", help="a few steps on a tiny set; assert the loss decreases")
    ap.add_argument("--no-check", action="store_true", help="skip the in-script held-out check")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    if a.smoke:
        a.steps, a.batch, a.train_images, a.procs, a.lr = 14, 16, 32, 1, 1e-3
    out = Path(a.out) if a.out else (None if a.smoke else REPO / "models" / NAME)
    t0 = time.time()

    def log(s: str) -> None:  # plain timestamped lines, written around the progress bar
        tqdm.write(f"[{time.time() - t0:7.1f}s] {s}", file=sys.stdout)
        sys.stdout.flush()

    vocab = Vocab.build(all_texts())
    dishes = md.all_dishes()
    dish_of = {md.caption_en(d): k for k, d in enumerate(dishes)}
    variants = {md.caption_en(d): md.caption_variants(d) for d in dishes}
    for texts in variants.values():  # every phrasing tokenises to known pieces
        for t in texts:
            assert vocab.unk not in vocab.encode(t), t
    log(f"vocab: {len(vocab.tokens)} tokens (+[DEC] {vocab.dec}), {len(dishes)} dishes")

    S = CONFIG["image_size"]
    per_seed = 1000
    items = [(TRAIN_SEED_BASE + i // per_seed, "train", i % per_seed) for i in range(a.train_images)]
    px_u8, caps = generate(items, S, a.procs)
    dish = torch.tensor([dish_of[c] for c in caps])
    log(f"data: {len(caps)} training images")

    model = build_model(vocab)
    model.train().requires_grad_(True)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: {nparams / 1e6:.2f} M parameters")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "query_tokens"]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n != "query_tokens")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98))
    warm = max(1, min(100, a.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm))))
    gen = torch.Generator().manual_seed(a.seed + 1)
    rng = random.Random(a.seed + 2)
    history = []
    order: List[int] = []
    bar = tqdm(range(a.steps), desc="train", unit="step", disable=None, leave=False, dynamic_ncols=True)
    for step in bar:  # a bar on a terminal only; logs get the lines below every 50 steps
        if a.smoke:
            idx = list(range(a.batch))  # one fixed batch: the loss must go down
        else:
            if len(order) < a.batch:
                perm = list(range(len(caps)))
                rng.shuffle(perm)
                order += perm
            idx, order = order[: a.batch], order[a.batch:]
        texts = []
        for i in idx:
            v = variants[caps[i]]
            r = rng.random()
            texts.append(v[0] if (r < 0.6 or a.smoke) else (v[-1] if r < 0.8 else rng.choice(v[1:-1] or v)))
        ids, mask = vocab.batch(texts, MAX_TOKENS)
        itm_ids, itm_mask = vocab.batch(texts, ITM_MAX_TOKENS)
        px = normalise(px_u8[idx])
        itc, itm, acc = losses(model, px, ids, mask, itm_ids, itm_mask, dish[idx], gen)
        loss = itc + itm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append((float(loss), float(itc), float(itm), float(acc)))
        bar.set_postfix_str(f"loss {history[-1][0]:.3f}", refresh=False)
        if a.smoke or step % 50 == 0 or step == a.steps - 1:
            k = history[-50:]
            log(f"step {step:5d}  loss {sum(h[0] for h in k) / len(k):.3f}  itc {sum(h[1] for h in k) / len(k):.3f}"
                f"  itm {sum(h[2] for h in k) / len(k):.3f}  itm-acc {sum(h[3] for h in k) / len(k):.2f}"
                f"  temp {float(model.temp):.3f}  lr {sched.get_last_lr()[0]:.2e}")

    first = sum(h[0] for h in history[:3]) / 3
    last = sum(h[0] for h in history[-3:]) / 3
    log(f"loss: first {first:.3f} -> last {last:.3f}")
    if a.smoke:
        assert last < first, f"smoke: loss did not decrease ({first:.3f} -> {last:.3f})"

    meta = dict(seed=a.seed, steps=a.steps, batch=a.batch, train_images=a.train_images,
                train_data=f"make_dishes.py --split train --seed {TRAIN_SEED_BASE}..", config=CONFIG,
                loss_first=round(first, 4), loss_last=round(last, 4))
    if not a.smoke and not a.no_check:
        n = 400
        epx, ecaps = generate([(CHECK_SEED, "eval", i) for i in range(n)], S, a.procs)
        cats = [next(d["category"] for d in dishes if md.caption_en(d) == c) for c in ecaps]
        res = quick_eval(model, vocab, epx, ecaps, cats)
        log("held-out check (python, eval split seed %d, %d images): %s" % (
            CHECK_SEED, n, ", ".join(f"{k} {v:.3f}" for k, v in res.items())))
        meta["python_check"] = {k: round(v, 4) for k, v in res.items()}
    if out is not None:
        meta["train_seconds"] = round(time.time() - t0)
        export(model, vocab, out, meta, log)
        size = sum(f.stat().st_size for f in out.iterdir())
        log(f"bundle: {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
