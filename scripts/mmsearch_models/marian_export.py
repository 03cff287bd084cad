"""Export MarianMT (OPUS-MT) translation bundles for mmsearch (issue 6; models/README.md).

A bundle ``models/<name>/`` holds:

* ``encoder.pt``  TorchScript: ``forward(input_ids int64 [B,L], attention_mask int64 [B,L])
  -> encoder_hidden float32 [B,L,D]``
* ``decoder.pt``  TorchScript: ``cross_kv(encoder_hidden) -> (cross_k, cross_v)`` each
  ``[layers,B,H,L,hd]``, and ``forward(input_ids [B,T], encoder_mask [B,L], self_k, self_v,
  cross_k, cross_v) -> (logits float32 [B,T,V], self_k, self_v)`` with the self-attention
  caches ``[layers,B,H,past,hd]`` grown by T (``past`` = ``self_k.size(3)``; start with 0).
* ``source.spm``, ``target.spm``, ``vocab.json``: the tokenizer, and ``mmsearch.json``.

Used by ``scripts/export_models.py export opus-mt-it-en`` and runnable on its own:

  marian_export.py --out DIR --deterministic-weights [--golden-bias]   # golden-config bundle
  marian_export.py --out DIR --tiny                                    # tiny model + own spm
  marian_export.py --out DIR --checkpoint-dir DIR_WITH_HF_FILES        # the real model
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mmsearch_models import marian as M  # type: ignore
    from mmsearch_models.bundle import FORMAT, FORMAT_VERSION, staging_dir  # type: ignore
    from mmsearch_models.download import sha256_file  # type: ignore
else:
    from . import marian as M
    from .bundle import FORMAT, FORMAT_VERSION, staging_dir
    from .download import sha256_file

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_TOKENIZER = ROOT.parent / "shared" / "golden" / "marian" / "tokenizer"
HF_BASE = "https://huggingface.co/Helsinki-NLP/{repo}/resolve/main/"

MODELS = {
    "opus-mt-it-en": {
        "repo": "opus-mt-it-en", "source_lang": "it", "target_lang": "en",
        "description": "OPUS-MT Italian→English MarianMT translator (Helsinki-NLP/opus-mt-it-en)",
        # (role, file) as Helsinki-NLP/<repo> publishes them
        "files": [("model", "pytorch_model.bin"), ("spm", "source.spm"), ("spm", "target.spm"),
                  ("vocab", "vocab.json"), ("config", "config.json"), ("config", "generation_config.json")],
        "optional": ["generation_config.json"],
        "approx_bytes": {"pytorch_model.bin": 344_000_000},  # fp32, ~86 M parameters
    },
}
MODULE_FILES = OrderedDict([("encoder", "encoder.pt"), ("decoder", "decoder.pt")])
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json")

EXIT_DOWNLOAD, EXIT_INTEGRITY, EXIT_LAYOUT, EXIT_EXPORT = 3, 4, 5, 6


class MarianExportError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# TorchScript wrappers


class EncoderModule(nn.Module):
    def __init__(self, model: M.MarianMT):
        super().__init__()
        self.encoder = model.model.encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.encoder(input_ids, attention_mask).float()


class DecoderModule(nn.Module):
    def __init__(self, model: M.MarianMT):
        super().__init__()
        self.decoder = model.model.decoder
        self.lm_head = model.lm_head
        self.register_buffer("final_logits_bias", model.final_logits_bias.detach().clone())

    @torch.jit.export
    def cross_kv(self, encoder_hidden: Tensor) -> Tuple[Tensor, Tensor]:
        return self.decoder.cross_kv(encoder_hidden)

    def forward(self, input_ids: Tensor, encoder_mask: Tensor, self_k: Tensor, self_v: Tensor,
                cross_k: Tensor, cross_v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, k, v = self.decoder(input_ids, encoder_mask, self_k, self_v, cross_k, cross_v)
        logits = self.lm_head(h) + self.final_logits_bias
        return logits.float(), k, v


class ScriptedMarian:
    """The exported modules behind the interface the Python search uses (for the tests)."""

    def __init__(self, encoder, decoder, config: M.MarianConfig):
        self.enc, self.dec, self.config = encoder, decoder, config

    def encode(self, input_ids, attention_mask):
        return self.enc(input_ids, attention_mask)

    def cross_kv(self, encoder_hidden):
        return self.dec.cross_kv(encoder_hidden)

    def empty_cache(self, batch, dtype=torch.float32):
        c = self.config
        z = torch.zeros(c.decoder_layers, batch, c.heads, 0, c.d_model // c.heads, dtype=dtype)
        return z, z.clone()

    def decode_step(self, input_ids, encoder_mask, self_k, self_v, cross_k, cross_v):
        return self.dec(input_ids, encoder_mask, self_k, self_v, cross_k, cross_v)

    def __call__(self, input_ids, attention_mask, decoder_input_ids):
        enc = self.encode(input_ids, attention_mask)
        ck, cv = self.cross_kv(enc)
        sk, sv = self.empty_cache(input_ids.shape[0])
        logits, _, _ = self.decode_step(decoder_input_ids, attention_mask, sk, sv, ck, cv)
        return logits, enc


def load_scripted(bundle_dir: Path) -> Tuple[ScriptedMarian, dict]:
    manifest = json.loads((Path(bundle_dir) / "mmsearch.json").read_text(encoding="utf-8"))
    enc = torch.jit.load(str(Path(bundle_dir) / manifest["modules"]["encoder"]), map_location="cpu")
    dec = torch.jit.load(str(Path(bundle_dir) / manifest["modules"]["decoder"]), map_location="cpu")
    enc.eval()
    dec.eval()
    return ScriptedMarian(enc, dec, config_from_manifest(manifest)), manifest


def config_from_manifest(m: dict) -> M.MarianConfig:
    d, g = m["dims"], m["generation"]
    return M.MarianConfig(
        vocab_size=d["vocab_size"], d_model=d["d_model"], encoder_layers=d["encoder_layers"],
        decoder_layers=d["decoder_layers"], heads=d["heads"], ffn_dim=d["ffn_dim"],
        max_position_embeddings=d["max_positions"], pad_token_id=g["pad_token_id"],
        eos_token_id=g["eos_token_id"], decoder_start_token_id=g["decoder_start_token_id"],
        num_beams=g["num_beams"], max_length=g["max_length"], length_penalty=g["length_penalty"],
        bad_words_ids=g["bad_words_ids"], forced_eos_token_id=g["forced_eos_token_id"],
        renormalize_logits=g["renormalize_logits"])


def tokenizer_of(bundle_dir: Path) -> M.MarianTokenizer:
    m = json.loads((Path(bundle_dir) / "mmsearch.json").read_text(encoding="utf-8"))
    t = m["tokenizer"]
    return M.MarianTokenizer(Path(bundle_dir) / t["source_spm"], Path(bundle_dir) / t["target_spm"],
                             Path(bundle_dir) / t["vocab"], t["model_max_length"])


# --------------------------------------------------------------------------------------------
# Manifest and writing


def make_manifest(*, name: str, description: str, config: M.MarianConfig, langs: Tuple[str, str],
                  vocab: Dict[str, int], source: dict, files: Dict[str, str]) -> dict:
    c = config
    m = OrderedDict()
    m["format"] = FORMAT
    m["format_version"] = FORMAT_VERSION
    m["name"] = name
    m["family"] = "marian"
    m["description"] = description
    m["translation"] = {"source_lang": langs[0], "target_lang": langs[1]}
    m["tokenizer"] = {
        "kind": "marian-sentencepiece",
        "source_spm": "source.spm", "target_spm": "target.spm", "vocab": "vocab.json",
        "vocab_size": len(vocab),
        "eos_token_id": vocab["</s>"], "unk_token_id": vocab["<unk>"], "pad_token_id": vocab["<pad>"],
        "model_max_length": min(512, c.max_position_embeddings),
        "special_literals": list(M.SPECIAL_LITERALS),
        "language_code_regex": ">>.+<<",
        "clean_up_tokenization_spaces": True,
    }
    m["dims"] = {"vocab_size": c.vocab_size, "d_model": c.d_model, "encoder_layers": c.encoder_layers,
                 "decoder_layers": c.decoder_layers, "heads": c.heads, "head_dim": c.d_model // c.heads,
                 "ffn_dim": c.ffn_dim, "max_positions": c.max_position_embeddings}
    m["generation"] = {
        "decoder_start_token_id": c.decoder_start_token_id, "eos_token_id": c.eos_token_id,
        "pad_token_id": c.pad_token_id, "forced_eos_token_id": c.forced_eos_token_id,
        "bad_words_ids": c.bad_words_ids, "num_beams": int(c.num_beams),
        "max_length": int(min(c.max_length, c.max_position_embeddings)),
        "length_penalty": float(c.length_penalty), "renormalize_logits": bool(c.renormalize_logits),
        "early_stopping": False, "semantics": "transformers-4.33",
    }
    m["weights_dtype"] = "fp32"
    m["modules"] = dict(MODULE_FILES)
    m["export_modes"] = {k: "script" for k in MODULE_FILES}
    m["source"] = source
    m["torch_version"] = torch.__version__
    m["files"] = files
    return m


def _sample_texts() -> List[str]:
    return ["Un piatto di spaghetti alla carbonara.", "Ciao!",
            "Caffè e cornetto al bar alle 7:30, poi una passeggiata in centro con gli amici."]


def verify(model: M.MarianMT, bundle_dir: Path, tok: M.MarianTokenizer) -> Tuple[float, bool]:
    """Scripted vs eager: teacher-forced logits (max |diff|) and greedy ids (identical)."""
    sm, _ = load_scripted(bundle_dir)
    ids, mask = tok.batch(_sample_texts(), truncation=True)
    dec = torch.full((ids.shape[0], 6), model.config.decoder_start_token_id, dtype=torch.long)
    dec[:, 1:] = ids[:, :5].clamp(max=model.config.vocab_size - 2)
    with torch.no_grad():
        ref, ref_enc = model(ids, mask, dec)
        got, got_enc = sm(ids, mask, dec)
    diff = max((ref - got).abs().max().item(), (ref_enc - got_enc).abs().max().item())
    ml = min(12, model.config.max_length)
    same = torch.equal(M.greedy_search(model, ids, mask, ml), M.greedy_search(sm, ids, mask, ml))
    return diff, same


def write_marian_bundle(model: M.MarianMT, dest: Path, *, name: str, description: str,
                        langs: Tuple[str, str], tokenizer_dir: Dict[str, Path], source: dict,
                        verify_bundle: bool = True, log: Callable[[str], None] = lambda s: None) -> dict:
    model.eval()
    vocab = json.loads(Path(tokenizer_dir["vocab.json"]).read_text(encoding="utf-8"))
    if len(vocab) != model.config.vocab_size:
        raise MarianExportError(EXIT_LAYOUT, f"vocab.json has {len(vocab)} entries, the model "
                                f"{model.config.vocab_size}")
    for tokname in ("</s>", "<unk>", "<pad>"):
        if tokname not in vocab:
            raise MarianExportError(EXIT_INTEGRITY, f"vocab.json: no {tokname}")
    try:
        enc = torch.jit.script(EncoderModule(model))
        dec = torch.jit.script(DecoderModule(model))
    except Exception as e:  # noqa: BLE001 - reported with the exit code of a failed export
        raise MarianExportError(EXIT_EXPORT, f"TorchScript export failed: {e}")
    with staging_dir(dest) as tmp:
        enc.save(str(tmp / MODULE_FILES["encoder"]))
        dec.save(str(tmp / MODULE_FILES["decoder"]))
        for f in TOKENIZER_FILES:
            shutil.copyfile(tokenizer_dir[f], tmp / f)
        files = {f: sha256_file(tmp / f) for f in list(MODULE_FILES.values()) + list(TOKENIZER_FILES)}
        manifest = make_manifest(name=name, description=description, config=model.config,
                                 langs=langs, vocab=vocab, source=source, files=files)
        (tmp / "mmsearch.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        if verify_bundle:
            diff, same = verify(model, tmp, tokenizer_of(tmp))
            if diff > 1e-4 or not same:
                raise MarianExportError(EXIT_EXPORT, f"round trip failed: max |diff| {diff:.3g}, "
                                        f"greedy ids {'equal' if same else 'differ'}")
            log(f"export: round trip ok, max |diff| vs eager {diff:.2g}, greedy ids identical")
    return manifest


# --------------------------------------------------------------------------------------------
# Tiny tokenizer: small sentencepiece models trained on text written here


_IT_DISHES = ["spaghetti alla carbonara", "lasagne al ragù", "risotto ai funghi", "pizza margherita",
              "tiramisù", "cornetto", "caffè", "gelato al pistacchio", "pane e olio",
              "minestrone", "bucatini all'amatriciana", "insalata di pomodori", "polenta"]
_EN_DISHES = ["spaghetti carbonara", "lasagne with meat sauce", "mushroom risotto", "margherita pizza",
              "tiramisu", "croissant", "coffee", "pistachio ice cream", "bread and oil",
              "vegetable soup", "bucatini amatriciana", "tomato salad", "polenta"]
_IT_PLACES = ["a casa", "al ristorante", "in cucina", "al mare", "in montagna", "al bar", "in piazza"]
_EN_PLACES = ["at home", "at the restaurant", "in the kitchen", "at the sea", "in the mountains",
              "at the bar", "in the square"]
_IT_WHO = ["Marco", "la nonna", "i bambini", "mia sorella", "gli amici", "il cuoco"]
_EN_WHO = ["Marco", "grandma", "the children", "my sister", "the friends", "the cook"]
_IT_EXTRA = ["Che bello!", "Buongiorno, come stai?", "Oggi piove e fa freddo.",
             "Ho mangiato troppo, è l'una e mezza.", "Foto del 12/08/2023, ore 20:15.",
             "Un bicchiere d'acqua, per favore.", "Perché no? È già tardi.",
             "Città, però, più, così: àèéìòù ÀÈÌÒÙ.", "Numeri: 0 1 2 3 4 5 6 7 8 9 10 100 1.000 3,5 €"]
_EN_EXTRA = ["How nice!", "Good morning, how are you?", "Today it rains and it is cold.",
             "I ate too much, it's half past one.", "Photo of 12/08/2023, at 8:15 pm.",
             "A glass of water, please.", "Why not? It's already late.",
             "City, however, more, so: àèéìòù.", "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1,000 3.5 €"]


def tiny_corpus() -> Tuple[List[str], List[str]]:
    it, en = [], []
    for i, (di, de) in enumerate(zip(_IT_DISHES, _EN_DISHES)):
        for j, (pi, pe) in enumerate(zip(_IT_PLACES, _EN_PLACES)):
            wi, we = _IT_WHO[(i + j) % len(_IT_WHO)], _EN_WHO[(i + j) % len(_EN_WHO)]
            it.append(f"Un piatto di {di} {pi} con {wi}.")
            en.append(f"A plate of {de} {pe} with {we}.")
            it.append(f"{wi.capitalize()} prepara {di} {pi}, alle {7 + (i + j) % 14}:30.")
            en.append(f"{we.capitalize()} makes {de} {pe}, at {7 + (i + j) % 14}:30.")
    for _ in range(3):
        it.extend(_IT_EXTRA)
        en.extend(_EN_EXTRA)
    return it, en


def train_tiny_tokenizer(out: Path, vocab_size: int = 300) -> Dict[str, Path]:
    """Writes source.spm, target.spm (unigram, nmt_nfkc) and a Marian-style vocab.json
    (</s> 0, <unk> 1, pieces by descending count in the segmented corpus then by string,
    unseen pieces last, <pad> = last id)."""
    import sentencepiece as spm
    out.mkdir(parents=True, exist_ok=True)
    it, en = tiny_corpus()
    procs = {}
    for side, lines in (("source", it), ("target", en)):
        model = io.BytesIO()  # no input / prefix paths end up in the trainer spec
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
            model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
            normalization_rule_name="nmt_nfkc", num_threads=1, minloglevel=2,
            shuffle_input_sentence=False)
        (out / f"{side}.spm").write_bytes(model.getvalue())
        procs[side] = (spm.SentencePieceProcessor(model_proto=model.getvalue()), lines)
    counts: Counter = Counter()
    pieces = set()
    for sp, lines in procs.values():
        for i in range(sp.get_piece_size()):
            if not (sp.is_unknown(i) or sp.is_control(i)):
                pieces.add(sp.id_to_piece(i))
        for line in lines:
            counts.update(p for p in sp.encode(line, out_type=str) if p in pieces)
    seen = sorted((p for p in pieces if counts[p] > 0), key=lambda p: (-counts[p], p))
    unseen = sorted(p for p in pieces if counts[p] == 0)
    vocab = {"</s>": 0, "<unk>": 1}
    for p in seen + unseen:
        vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n",
                                    encoding="utf-8")
    return {f: out / f for f in TOKENIZER_FILES}


# --------------------------------------------------------------------------------------------
# Building the model for each kind of export


def _tokenizer_files(d: Path) -> Dict[str, Path]:
    files = {f: Path(d) / f for f in TOKENIZER_FILES}
    for f, p in files.items():
        if not p.is_file():
            raise MarianExportError(EXIT_DOWNLOAD, f"{f}: not found in {d}")
    return files


def build_deterministic(golden_bias: bool = False) -> Tuple[M.MarianMT, dict]:
    c = M.golden_config()
    model = M.deterministic_model(c)
    if golden_bias:
        with torch.no_grad():
            model.final_logits_bias.copy_(M.golden_bias(c.vocab_size))
    return model, {"kind": "deterministic", "protocol": "shared/golden/marian README (scaled)",
                   "final_logits_bias": "golden supplement" if golden_bias else "zeros",
                   "checkpoints": []}


def build_tiny(tok_files: Dict[str, Path]) -> Tuple[M.MarianMT, dict]:
    vocab = json.loads(tok_files["vocab.json"].read_text(encoding="utf-8"))
    c = M.tiny_config(len(vocab))
    model = M.deterministic_model(c)
    return model, {"kind": "tiny", "tiny_config": c.to_dict(), "checkpoints": []}


def build_from_checkpoint(files: Dict[str, Path]) -> Tuple[M.MarianMT, dict]:
    hf = json.loads(files["config.json"].read_text(encoding="utf-8")) if "config.json" in files else {}
    gen = {}
    if "generation_config.json" in files and files["generation_config.json"].is_file():
        gen = json.loads(files["generation_config.json"].read_text(encoding="utf-8"))
    c = M.MarianConfig.from_hf(hf, gen) if hf else M.opus_mt_it_en_config()
    ckpt = files["pytorch_model.bin"]
    try:
        sd = torch.load(str(ckpt), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise MarianExportError(EXIT_INTEGRITY, f"{ckpt.name}: cannot load checkpoint: {e}")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    model = M.MarianMT(c)
    try:
        M.load_marian_state_dict(model, sd)
    except M.MarianCheckpointError as e:
        raise MarianExportError(EXIT_LAYOUT, f"{ckpt.name}: {e}")
    recs = [{"file": f, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for f, p in sorted(files.items()) if p.is_file()]
    return model.eval(), {"kind": "checkpoint", "checkpoints": recs}


def obtain_checkpoint_files(name: str, checkpoint_dir: Optional[str], cache_dir: Optional[str],
                            base_url: Optional[str] = None, retries: int = 3,
                            timeout: float = 60.0) -> Dict[str, Path]:
    spec = MODELS[name]
    out: Dict[str, Path] = {}
    for _, f in spec["files"]:
        if checkpoint_dir:
            p = Path(checkpoint_dir) / f
            if not p.is_file():
                if f in spec["optional"]:
                    continue
                raise MarianExportError(EXIT_DOWNLOAD, f"{f}: not found in --checkpoint-dir {checkpoint_dir}")
            out[f] = p
            continue
        from mmsearch_models.download import DownloadError, IntegrityError, fetch
        url = (base_url.rstrip("/") + "/" + f) if base_url else HF_BASE.format(repo=spec["repo"]) + f
        dest = Path(cache_dir or ".") / "checkpoints" / "marian" / spec["repo"] / f
        try:
            out[f] = fetch(url, dest, sha256=None, retries=retries, timeout=timeout)
        except IntegrityError as e:
            raise MarianExportError(EXIT_INTEGRITY, str(e))
        except DownloadError as e:
            if f in spec["optional"]:
                continue
            raise MarianExportError(EXIT_DOWNLOAD, str(e))
    return out


def export(name: str, out_dir: Path, *, tiny: bool = False, deterministic: bool = False,
           checkpoint_dir: Optional[str] = None, cache_dir: Optional[str] = None,
           base_url: Optional[str] = None, tokenizer_dir: Optional[str] = None,
           golden_bias: bool = False, verify_bundle: bool = True, dtype: str = "fp32",
           log: Callable[[str], None] = lambda s: None) -> Path:
    if dtype != "fp32":
        raise MarianExportError(2, f"{name}: only --dtype fp32 is supported for Marian bundles")
    spec = MODELS[name]
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"mmsearch-export-{name}-"))
    try:
        if tiny and not checkpoint_dir and not base_url:
            tok = _tokenizer_files(Path(tokenizer_dir)) if tokenizer_dir else train_tiny_tokenizer(work / "spm")
            model, source = build_tiny(tok)
            desc = spec["description"] + " [tiny test model, deterministic weights, own sentencepiece models]"
        elif deterministic:
            tok = _tokenizer_files(Path(tokenizer_dir) if tokenizer_dir else GOLDEN_TOKENIZER)
            model, source = build_deterministic(golden_bias)
            desc = spec["description"] + " [golden-protocol deterministic weights, golden tokenizer]"
        else:
            files = obtain_checkpoint_files(name, checkpoint_dir, cache_dir, base_url)
            tok = {f: files[f] for f in TOKENIZER_FILES}
            model, source = build_from_checkpoint(files)
            desc = spec["description"]
        log(f"export: {name}: model ready ({source['kind']}) in {time.monotonic() - t0:.1f} s")
        dest = Path(out_dir) / name
        write_marian_bundle(model, dest, name=name, description=desc,
                            langs=(spec["source_lang"], spec["target_lang"]), tokenizer_dir=tok,
                            source=source, verify_bundle=verify_bundle, log=log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"export: {name}: wrote {dest} in {time.monotonic() - t0:.1f} s")
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Export a MarianMT (OPUS-MT) mmsearch bundle.")
    p.add_argument("--name", default="opus-mt-it-en", choices=sorted(MODELS))
    p.add_argument("--out", required=True, help="bundle root; the bundle is OUT/NAME")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true")
    g.add_argument("--deterministic-weights", action="store_true")
    g.add_argument("--checkpoint-dir")
    p.add_argument("--golden-bias", action="store_true",
                   help="deterministic: the non-zero final_logits_bias of the golden supplement")
    p.add_argument("--tokenizer-dir", help="source.spm, target.spm, vocab.json to bundle")
    p.add_argument("--cache-dir")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        dest = export(a.name, Path(a.out), tiny=a.tiny, deterministic=a.deterministic_weights,
                      checkpoint_dir=a.checkpoint_dir, cache_dir=a.cache_dir,
                      tokenizer_dir=a.tokenizer_dir, golden_bias=a.golden_bias,
                      verify_bundle=not a.no_verify,
                      log=lambda s: (sys.stderr.write(s + "\n"), sys.stderr.flush()))
    except MarianExportError as e:
        sys.stderr.write(f"marian_export: error: {e}\n")
        return e.code
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
