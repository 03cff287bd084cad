"""Model bundles: TorchScript export of a FeatureExtractor, the manifest, and a loader.

A bundle is a folder holding `mmsearch.json`, `vocab.txt`, `image.pt`, `text.pt`,
`multimodal.pt` and `weights.bin` (see models/README.md, the contract with the C++ side). The
modules are saved without their weights; every weight is stored once in `weights.bin`
(weight_file.py) and put back into each module that uses it when the module is loaded.

Each TorchScript module is a small scripted wrapper around one path of the model. The wrapper
casts its float inputs to the dtype of a `dtype_probe` buffer (which follows `module.to(...)`,
so a bundle can be converted after loading) and returns float32. The model path itself is
scripted when the model code allows it and traced otherwise; a traced path is checked on a
second batch size / token count so that no shape is baked in by accident.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from . import weight_file
from .download import sha256_file

FORMAT = "mmsearch-bundle"
FORMAT_VERSION = 1               # translation bundles, and image-text bundles before weights.bin
SHARED_WEIGHTS_FORMAT_VERSION = 2  # image-text bundles with weights.bin
WEIGHTS_FILE = "weights.bin"
MODULE_WEIGHT_PREFIX = "path.model."  # a model weight's name inside an exported module
MANIFEST = "mmsearch.json"
MODULE_FILES = {"image": "image.pt", "text": "text.pt", "multimodal": "multimodal.pt"}
VOCAB_FILE = "vocab.txt"

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BERT_SPECIAL = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
BERT_VOCAB_LINES = 30522


class ExportError(Exception):
    """The bundle could not be built or failed its round-trip check."""


def bert_vocab(path: Path) -> List[str]:
    """The tokens of a bert-base-uncased vocab.txt: 30522 lines, the BERT special tokens in place."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: cannot read vocab: {e}")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != BERT_VOCAB_LINES:
        raise ExportError(f"{path}: vocab has {len(lines)} lines, expected {BERT_VOCAB_LINES}")
    for tok, i in BERT_SPECIAL.items():
        if lines[i] != tok:
            raise ExportError(f"{path}: vocab line {i} is {lines[i]!r}, expected {tok!r}")
    return lines


class Vocab:
    """The text side of a bundle: the WordPiece tokens of vocab.txt (line i is id i) and the
    tokens the model adds right after them, [DEC] and, for BLIP, [ENC]. Gives the manifest's
    text section and the sample token ids of the trace examples and round-trip checks."""

    def __init__(self, tokens: Sequence[str], family: str):
        self.tokens = list(tokens)
        self.family = family
        ids = {t: i for i, t in enumerate(self.tokens)}
        missing = [t for t in SPECIAL_TOKENS if t not in ids]
        if missing:
            raise ExportError(f"vocab has no {', '.join(missing)}")
        added = ["[DEC]"] + (["[ENC]"] if family == "blip" else [])
        self.special = {t: ids[t] for t in SPECIAL_TOKENS}
        self.special.update((t, len(self.tokens) + k) for k, t in enumerate(added))
        self.size = len(self.tokens) + len(added)  # rows of the model's word embeddings
        # Sample text is drawn from the real tokens, not from [unusedN] / special ones.
        self.words = torch.tensor([i for i, t in enumerate(self.tokens)
                                   if not (t.startswith("[") and t.endswith("]"))])

    def sample(self, batch: int, length: int, seed: int = 0) -> Tuple[Tensor, Tensor]:
        """[CLS] words [SEP] [PAD]..., row b has length - b%3 real tokens (at least 2)."""
        g = torch.Generator().manual_seed(1000 + seed)
        ids = self.words[torch.randint(len(self.words), (batch, length), generator=g)]
        mask = torch.ones(batch, length, dtype=torch.long)
        for b in range(batch):
            n = max(2, length - (b % 3))
            ids[b, 0] = self.special["[CLS]"]
            ids[b, n - 1] = self.special["[SEP]"]
            ids[b, n:] = self.special["[PAD]"]
            mask[b, n:] = 0
        return ids, mask

    def text_rules(self) -> dict:
        blip = self.family == "blip"
        return {
            "vocab": VOCAB_FILE,
            "vocab_size": len(self.tokens),
            "normalise": "lavis-pre-caption",
            "max_words": 50,
            "lowercase": True,
            "max_tokens": 35,
            "itm_max_tokens": 35 if blip else 32,
            "cls_token_id": self.special["[CLS]"],
            "sep_token_id": self.special["[SEP]"],
            "pad_token_id": self.special["[PAD]"],
            "unk_token_id": self.special["[UNK]"],
            "enc_token_id": self.special["[ENC]"] if blip else None,
            "special_tokens": dict(self.special),
        }

    def check_model(self, model: nn.Module) -> None:
        rows = next(m.num_embeddings for n, m in model.named_modules() if n.endswith("word_embeddings"))
        if rows != self.size:
            raise ExportError(f"the model has {rows} word embeddings, the vocab {len(self.tokens)} "
                              f"tokens + {self.size - len(self.tokens)} added")
        enc = int(model.enc_token_id)
        if enc != self.special.get("[ENC]", -1):
            raise ExportError(f"the model's [ENC] id {enc} is not the vocab's {self.special.get('[ENC]')}")

    def write(self, path: Path) -> None:
        Path(path).write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Model paths (the part that is scripted or traced) and the outer wrappers (always scripted).


class _ImagePath(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.model.encode_image(pixels)


class _TextPath(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        return self.model.encode_text(input_ids, attention_mask)


class _MultimodalPath(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, vision_tokens: Tensor, input_ids: Tensor,
                attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        return self.model.encode_multimodal(vision_tokens, input_ids, attention_mask)


class ImageModule(nn.Module):
    """pixels float32 [B,3,S,S] -> (vision_tokens, image_embeds, image_embeds_proj), float32."""

    def __init__(self, path: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.path = path
        self.register_buffer("dtype_probe", torch.zeros(1, dtype=dtype))

    def forward(self, pixels: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        v, e, p = self.path(pixels.to(self.dtype_probe.dtype))
        return v.float(), e.float(), p.float()


class TextModule(nn.Module):
    """input_ids int64 [B,L], attention_mask int64 [B,L] -> (text_embeds, text_embeds_proj)."""

    def __init__(self, path: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.path = path
        self.register_buffer("dtype_probe", torch.zeros(1, dtype=dtype))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        t, p = self.path(input_ids.long(), attention_mask.long())
        return t.float(), p.float()


class MultimodalModule(nn.Module):
    """(vision_tokens, input_ids, attention_mask) -> (multimodal_embeds, itm_logits).

    BLIP: the first id is replaced by [ENC] here, so callers pass the text ids unchanged."""

    def __init__(self, path: nn.Module, dtype: torch.dtype, enc_token_id: int, has_itm: bool):
        super().__init__()
        self.path = path
        self.enc_token_id = enc_token_id
        self.has_itm = has_itm
        self.register_buffer("dtype_probe", torch.zeros(1, dtype=dtype))

    def forward(self, vision_tokens: Tensor, input_ids: Tensor,
                attention_mask: Tensor) -> Tuple[Tensor, Tensor]:
        ids = input_ids.long()
        if self.enc_token_id >= 0:
            ids = ids.clone()
            ids[:, 0] = self.enc_token_id
        m, itm = self.path(vision_tokens.to(self.dtype_probe.dtype), ids, attention_mask.long())
        if not self.has_itm:
            itm = torch.zeros([ids.size(0), 0], dtype=torch.float32, device=ids.device)
        return m.float(), itm.float()


# --------------------------------------------------------------------------------------------
# Sample inputs


def sample_pixels(model, batch: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    s = int(model.image_size)
    return torch.randn(batch, 3, s, s, generator=g)


def sample_vision_tokens(model, batch: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(2000 + seed)
    return torch.randn(batch, int(model.vision_tokens), int(model.vision_width), generator=g)


# --------------------------------------------------------------------------------------------
# Pruning: each module keeps only the top-level children its path uses.


_ROLE_METHOD = {"image": "encode_image", "text": "encode_text", "multimodal": "encode_multimodal"}


def _unused_path(self, *args):
    raise RuntimeError("this path is not part of this bundle module")


def _prune_for(model: nn.Module, role: str, run: Callable[[nn.Module], object]) -> List[nn.Module]:
    """Candidate models for one path, best first: a shallow copy of `model` whose submodules
    that the path never calls are stubs of the same type holding empty tensors, then the
    whole model. In all of them the other `encode_*` methods and `forward` are plain Python,
    so TorchScript compiles only this path and saves only what it needs.

    Used modules are found with forward pre-hooks and by watching parameter / buffer reads;
    a pruned copy is kept only if it gives
    exactly the same outputs as the full model."""
    called = set()
    hooks = [m.register_forward_pre_hook(lambda mod, inp: called.add(id(mod)))
             for m in model.modules()]
    getattr_orig = nn.Module.__getattr__

    def spy(self, name):  # parameters / buffers read directly (F.linear(x, self.qkv.weight))
        d = self.__dict__
        if name in d.get("_parameters", ()) or name in d.get("_buffers", ()):
            called.add(id(self))
        return getattr_orig(self, name)

    nn.Module.__getattr__ = spy
    try:
        with torch.no_grad():
            ref = run(model)
    finally:
        nn.Module.__getattr__ = getattr_orig
        for h in hooks:
            h.remove()
    used = set()

    def mark(m: nn.Module) -> bool:
        hit = id(m) in called
        for c in m.children():
            hit = mark(c) or hit
        if hit:
            used.add(id(m))
        return hit

    mark(model)
    sub = _path_class(type(model), role)

    def stub(m: nn.Module) -> nn.Module:
        # Same module types (so the TorchScript code still compiles), no data.
        c = copy.copy(m)
        c._parameters = OrderedDict(
            (n, None if p is None else nn.Parameter(p.new_empty(0), requires_grad=False))
            for n, p in m._parameters.items())
        c._buffers = OrderedDict((n, None if b is None else b.new_empty(0))
                                 for n, b in m._buffers.items())
        c._modules = OrderedDict((n, None if k is None else stub(k)) for n, k in m._modules.items())
        return c

    def clone(m: nn.Module) -> nn.Module:
        c = copy.copy(m)
        c._parameters = OrderedDict(m._parameters)
        # Integer buffers (position_ids) become plain tensor attributes: libtorch's
        # Module::to(dtype) converts every parameter and buffer, integer ones included.
        c._buffers = OrderedDict()
        for n, b in m._buffers.items():
            if b is not None and not b.is_floating_point():
                c.__dict__[n] = b
            else:
                c._buffers[n] = b
        c._modules = OrderedDict(
            (n, k if k is None or not _has_state(k) else clone(k) if id(k) in used else stub(k))
            for n, k in m._modules.items())
        return c

    full = copy.copy(model)
    full.__class__ = sub
    out = []
    pruned = clone(model)
    pruned.__class__ = sub
    try:
        with torch.no_grad():
            got = run(pruned)
        if all(torch.equal(a, b) for a, b in zip(ref, got)):
            out.append(pruned)
    except Exception:  # a submodule used without being called (e.g. only its .weight)
        pass
    out.append(full)
    return out


def _has_state(m: Optional[nn.Module]) -> bool:
    return m is not None and (any(True for _ in m.parameters()) or any(True for _ in m.buffers()))


def _path_class(cls: type, role: str) -> type:
    """A subclass of the model class for one path: the other `encode_*` methods and `forward`
    become plain Python (not compiled by TorchScript), and the class-level attribute
    annotations are hidden (under `from __future__ import annotations` they are strings,
    which torch 1.13's scripting cannot read; attribute types are inferred from values)."""
    overrides = {m: _unused_path for r, m in _ROLE_METHOD.items() if r != role and hasattr(cls, m)}
    overrides["forward"] = nn.Module.forward  # torch's "unimplemented" forward: not compiled
    overrides["__module__"] = cls.__module__
    overrides["__annotations__"] = {}
    return type(cls.__name__, (cls,), overrides)


def _query_count(model) -> int:
    for attr in ("num_query_tokens", "query_tokens_count", "query_tokens"):
        v = getattr(model, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return 0


# --------------------------------------------------------------------------------------------
# Conversion


def _to_script(paths: List[nn.Module], example: Tuple[Tensor, ...], allow_trace: bool,
               log: Callable[[str], None]) -> Tuple[torch.jit.ScriptModule, str]:
    """Script the first candidate that TorchScript accepts; trace the last one otherwise."""
    err = None
    for path in paths:
        try:
            return torch.jit.script(path), "script"
        except Exception as e:  # e.g. code touching a pruned (None) submodule
            err = e
    path = paths[-1]
    first = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
    if not allow_trace:
        raise ExportError(f"cannot script {type(path).__name__}: {first}")
    log(f"export: {type(path).__name__[1:]} not scriptable ({first}); tracing")
    with torch.no_grad():
        traced = torch.jit.trace(path, example, check_trace=False)
    return traced, "trace"


def _max_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    return float((a.float() - b.float()).abs().max())


def _compare(what: str, ref, got, atol: float) -> float:
    worst = 0.0
    for i, (a, b) in enumerate(zip(ref, got)):
        d = _max_diff(a, b)
        if d > atol or d != d:
            raise ExportError(f"round trip failed: {what} output {i} differs from the eager model "
                              f"(max |diff| {d:.3g} > {atol:g}, shapes {tuple(a.shape)} vs {tuple(b.shape)})")
        worst = max(worst, d)
    return worst


def _eager(model, role: str, args):
    with torch.no_grad():
        if role == "image":
            out = model.encode_image(args[0].to(_weight_dtype(model)))
        elif role == "text":
            out = model.encode_text(args[0], args[1])
        else:
            ids = args[1]
            if model.family == "blip":
                ids = ids.clone()
                ids[:, 0] = int(model.enc_token_id)
            out = model.encode_multimodal(args[0].to(_weight_dtype(model)), ids, args[2])
    out = tuple(o.float() for o in out)
    if role == "multimodal" and not bool(getattr(model, "has_itm", True)):
        out = (out[0], torch.zeros(out[0].shape[0], 0))
    return out


def _weight_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def build_modules(model: nn.Module, vocab: Vocab, allow_trace: bool = True,
                  log: Callable[[str], None] = lambda s: None
                  ) -> Dict[str, Tuple[torch.jit.ScriptModule, str]]:
    """The three scripted modules for `model` (already in its final dtype, eval mode); trace
    examples use token ids of `vocab`."""
    dtype = _weight_dtype(model)
    family = model.family
    enc = int(model.enc_token_id) if family == "blip" else -1
    has_itm = bool(getattr(model, "has_itm", True))
    # Trace examples: batch 2, 9 tokens (row 1 padded). Checks use other shapes.
    px = sample_pixels(model, 1 if int(model.image_size) > 300 else 2).to(dtype)
    ids, mask = vocab.sample(2, 9)
    vt = sample_vision_tokens(model, 2).to(dtype)
    mm_ids = ids.clone()
    if enc >= 0:
        mm_ids[:, 0] = enc

    out = {}
    cands = _prune_for(model, "image", lambda m: m.encode_image(px))
    path, mode = _to_script([_ImagePath(m) for m in cands], (px,), allow_trace, log)
    out["image"] = (torch.jit.script(ImageModule(path, dtype)), mode)
    cands = _prune_for(model, "text", lambda m: m.encode_text(ids, mask))
    path, mode = _to_script([_TextPath(m) for m in cands], (ids, mask), allow_trace, log)
    out["text"] = (torch.jit.script(TextModule(path, dtype)), mode)
    cands = _prune_for(model, "multimodal", lambda m: m.encode_multimodal(vt, mm_ids, mask))
    path, mode = _to_script([_MultimodalPath(m) for m in cands], (vt, mm_ids, mask), allow_trace, log)
    out["multimodal"] = (torch.jit.script(MultimodalModule(path, dtype, enc, has_itm)), mode)
    return out


def verify_modules(model: nn.Module, modules: Dict[str, torch.jit.ScriptModule], vocab: Vocab,
                   atol: Optional[float] = None) -> Dict[str, float]:
    """Compare each (loaded) module with the eager model on inputs of other shapes than the
    trace examples. Returns the max |diff| per module; raises ExportError on a mismatch."""
    dtype = _weight_dtype(model)
    if atol is None:
        atol = 1e-4 if dtype == torch.float32 else 2e-2
    big = int(model.image_size) > 300
    checks = {
        "image": [(sample_pixels(model, 2 if big else 1, seed=1),)],
        "text": [vocab.sample(3, 13, seed=1), vocab.sample(1, 5, seed=2)],
        "multimodal": [(sample_vision_tokens(model, 3, seed=1),) + vocab.sample(3, 12, seed=3),
                       (sample_vision_tokens(model, 1, seed=2),) + vocab.sample(1, 4, seed=4)],
    }
    worst = {}
    for role, cases in checks.items():
        mod = modules[role]
        worst[role] = 0.0
        for args in cases:
            ref = _eager(model, role, args)
            with torch.no_grad():
                got = mod(*args)
            for t in got:
                if t.dtype != torch.float32:
                    raise ExportError(f"round trip failed: {role} returned {t.dtype}, not float32")
            worst[role] = max(worst[role], _compare(f"{MODULE_FILES[role]} {tuple(args[0].shape)}",
                                                    ref, got, atol))
    return worst


# --------------------------------------------------------------------------------------------
# Manifest


def make_manifest(*, name: str, family: str, description: str, vision_encoder: str,
                  model: nn.Module, vocab: Vocab, weights_dtype: str, source: dict,
                  files: Dict[str, str], lavis: Optional[dict] = None,
                  export_modes: Optional[Dict[str, str]] = None) -> dict:
    blip2 = family == "blip2"
    m = OrderedDict()
    m["format"] = FORMAT
    m["format_version"] = SHARED_WEIGHTS_FORMAT_VERSION
    m["name"] = name
    m["family"] = family
    m["description"] = description
    m["vision_encoder"] = vision_encoder
    m["image"] = {"size": int(model.image_size), "mean": MEAN, "std": STD,
                  "resize": "pil-bicubic-squash"}
    m["text"] = vocab.text_rules()
    m["dims"] = {
        "vision_tokens": int(model.vision_tokens),
        "vision_width": int(model.vision_width),
        "image_tokens": int(model.image_tokens),
        "hidden": int(model.hidden),
        "embed": int(model.embed_dim),
        "query_tokens": _query_count(model) if blip2 else 0,
    }
    m["itm"] = bool(getattr(model, "has_itm", True))
    m["similarity"] = {"text_image": "max-over-queries" if blip2 else "cls",
                       "image_image": "mean-of-queries" if blip2 else "cls"}
    m["weights_dtype"] = weights_dtype
    m["modules"] = dict(MODULE_FILES)
    m["weights"] = WEIGHTS_FILE
    if export_modes:
        m["export_modes"] = dict(export_modes)
    if lavis:
        m["lavis"] = lavis
    m["source"] = source
    m["torch_version"] = torch.__version__
    m["files"] = files
    return m


# --------------------------------------------------------------------------------------------
# Writing (atomically) and loading


@contextmanager
def staging_dir(dest: Path):
    """Yields a fresh temporary folder beside `dest`; on success it replaces `dest`, on any
    failure it is removed. `dest` is never seen half-written."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not dest.exists():
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bundle(model: nn.Module, dest: Path, *, name: str, family: str, description: str,
                 vision_encoder: str, weights_dtype: str, vocab: Sequence[str], source: dict,
                 lavis: Optional[dict] = None, allow_trace: bool = True, verify: bool = True,
                 log: Callable[[str], None] = lambda s: None) -> dict:
    """Export `model` (float32, eval) to the bundle folder `dest`, weights stored as
    `weights_dtype`; `vocab` are the tokens of its vocab.txt (the tokenizer's, line i = id i).
    Returns the manifest. Raises ExportError; `dest` is untouched on failure.
    The model itself is converted to `weights_dtype` by the round-trip check."""
    vocab = Vocab(vocab, family)
    vocab.check_model(model)
    dtype = DTYPES[weights_dtype]
    model.eval()
    modules = build_modules(model, vocab, allow_trace=allow_trace, log=log)
    for sm, _ in modules.values():
        sm.to(dtype)
    tensors, uses = take_out_weights({r: sm for r, (sm, _) in modules.items()})
    with staging_dir(dest) as tmp:
        files = {}
        for role, fname in MODULE_FILES.items():
            modules[role][0].save(str(tmp / fname))
        weight_file.write(tmp / WEIGHTS_FILE, tensors, uses)
        modes = {r: m for r, (_, m) in modules.items()}
        del modules, tensors
        vocab.write(tmp / VOCAB_FILE)
        for fname in list(MODULE_FILES.values()) + [WEIGHTS_FILE, VOCAB_FILE]:
            files[fname] = sha256_file(tmp / fname)
        manifest = make_manifest(name=name, family=family, description=description,
                                 vision_encoder=vision_encoder, model=model, vocab=vocab,
                                 weights_dtype=weights_dtype, source=source, files=files,
                                 lavis=lavis, export_modes=modes)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if verify:
            loaded = load_bundle(tmp)
            mods = {r: loaded[r] for r in MODULE_FILES}
            model.to(dtype)
            if dtype == torch.float16 and not _cpu_supports(torch.float16):
                # CPU kernels lack fp16: check the stored fp16 weights computed in fp32.
                model.float()
                for mod in mods.values():
                    mod.float()
            worst = verify_modules(model, mods, vocab)
            log("export: round trip ok, max |diff| vs eager: "
                + ", ".join(f"{r} {d:.2g}" for r, d in worst.items()))
    return manifest


def _owner(module: nn.Module, dotted: str) -> Tuple[nn.Module, str]:
    *path, leaf = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, leaf


def take_out_weights(modules: Dict[str, torch.jit.ScriptModule]
                     ) -> Tuple[Dict[str, Tensor], Dict[str, List[str]]]:
    """Moves the model weights out of the scripted modules, leaving empty tensors of the same
    dtype in their place. Returns every weight once, by its model name, and per module the
    names it uses (a pruned module's stubs are empty already and are not listed)."""
    tensors: Dict[str, Tensor] = {}
    uses: Dict[str, List[str]] = {}
    for role, sm in modules.items():
        names = []
        for name, t in list(sm.named_parameters()) + list(sm.named_buffers()):
            if not name.startswith(MODULE_WEIGHT_PREFIX) or t.numel() == 0 or not t.is_floating_point():
                continue
            key = name[len(MODULE_WEIGHT_PREFIX):]
            t = t.detach()
            if key in tensors and not torch.equal(tensors[key], t):
                raise ExportError(f"weight {key} differs between the modules that share it")
            tensors.setdefault(key, t)
            names.append(key)
        for key in names:
            owner, leaf = _owner(sm, MODULE_WEIGHT_PREFIX + key)
            setattr(owner, leaf, torch.empty(0, dtype=tensors[key].dtype))
        uses[role] = names
    return tensors, uses


def _cpu_supports(dtype: torch.dtype) -> bool:
    try:
        lin = nn.Linear(4, 4).to(dtype)
        nn.functional.layer_norm(lin(torch.zeros(2, 4, dtype=dtype)), (4,))
        return True
    except RuntimeError:
        return False


class Bundle(dict):
    """`load_bundle` result: keys "manifest", "path" and the loaded modules by role
    ("image", "text", "multimodal"; loaded lazily, with their weights put back from
    weights.bin in a format-2 bundle)."""

    def __missing__(self, role):
        if role not in MODULE_FILES:
            raise KeyError(role)
        mod = torch.jit.load(str(Path(self["path"]) / MODULE_FILES[role]), map_location="cpu")
        if self["manifest"].get("weights"):
            if "_weights" not in self:
                try:
                    self["_weights"] = weight_file.WeightFile(Path(self["path"]) / self["manifest"]["weights"])
                except weight_file.WeightFileError as e:
                    raise ExportError(str(e))
            weights = self["_weights"]
            for key in weights.modules.get(role, []):
                owner, leaf = _owner(mod, MODULE_WEIGHT_PREFIX + key)
                setattr(owner, leaf, weights.tensor(key))
        mod.eval()
        self[role] = mod
        return mod


def load_bundle(path: Path, check_hashes: bool = True) -> Bundle:
    path = Path(path)
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{mpath}: cannot read manifest: {e}")
    if manifest.get("format") != FORMAT or \
            manifest.get("format_version") not in (FORMAT_VERSION, SHARED_WEIGHTS_FORMAT_VERSION):
        raise ExportError(f"{path}: not a {FORMAT} v{FORMAT_VERSION}-{SHARED_WEIGHTS_FORMAT_VERSION} bundle "
                          f"(format {manifest.get('format')!r} v{manifest.get('format_version')!r})")
    if check_hashes:
        for fname, digest in manifest["files"].items():
            f = path / fname
            if not f.is_file():
                raise ExportError(f"{path}: {fname} is missing")
            if sha256_file(f) != digest:
                raise ExportError(f"{path}: {fname} does not match its sha256 in the manifest")
    return Bundle(manifest=manifest, path=str(path))
