#!/usr/bin/env python3
"""Export BLIP / BLIP-2 feature extractors to mmsearch model bundles (see models/README.md).

  export_models.py list
  export_models.py export blip-base [blip2-pretrain ...] [--out models] [--dtype fp32]
  export_models.py export blip-base --checkpoint-dir ~/ckpts          # offline
  export_models.py export blip2-coco --deterministic-weights           # golden-protocol weights
  export_models.py export blip-base blip2-pretrain --tiny --out build/test-models
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DOWNLOAD = 3
EXIT_INTEGRITY = 4
EXIT_LAYOUT = 5
EXIT_EXPORT = 6

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_INTERNAL}  unexpected internal error
  {EXIT_USAGE}  usage error (bad option, unknown model name)
  {EXIT_DOWNLOAD}  a checkpoint or the vocab could not be obtained (network failure, HTTP error,
     file missing from --checkpoint-dir)
  {EXIT_INTEGRITY}  a file is corrupt: sha256 mismatch, truncated or unreadable checkpoint, bad vocab
  {EXIT_LAYOUT}  a checkpoint does not fit the model: missing / unexpected keys or wrong shapes
  {EXIT_EXPORT}  the TorchScript export or its round-trip check failed, or the bundle could not be written
On any failure the output folder is left as it was: bundles are built in a hidden temporary
folder beside it (.NAME.tmp-*) and renamed into place only when complete and verified.
"""

VOCAB_URL = "https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
DEFAULT_VOCAB = ROOT.parent / "shared" / "data" / "bert-base-uncased-vocab.txt"


class Failure(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmsearch"


def fmt_size(n) -> str:
    from tqdm import tqdm
    return tqdm.format_sizeof(n, "B") if n else "?"


# --------------------------------------------------------------------------------------------


def exportable() -> dict:
    """Every bundle `export` writes, {name: (family, vision encoder, image, description,
    [(role, file, approx bytes, url, sha256)])}: the zoo's BLIP / BLIP-2 feature extractors and
    the Marian translators of marian_export.py."""
    from mmsearch_models import marian_export, zoo
    out = {}
    for name, spec in zoo.MODELS.items():
        out[name] = (spec.family, spec.vision_encoder, f"{spec.image_size} px", spec.description,
                     [(c.role, c.filename, c.approx_bytes, c.url, c.sha256) for c in spec.checkpoints])
    for name, m in marian_export.MODELS.items():
        base = marian_export.HF_BASE.format(repo=m["repo"])
        out[name] = ("marian", "-", "-", m["description"],
                     [(role, f, m["approx_bytes"].get(f), base + f, None) for role, f in m["files"]])
    return out


def cmd_list(args) -> int:
    models = exportable()
    rows = [("name", "family", "vision encoder", "image", "checkpoint files", "approx size")]
    for name, (family, vision, image, _, files) in models.items():
        weights = [f for f in files if f[0] in ("model", "vit")]  # tokenizer / config files: -v
        rows.append((name, family, vision, image, ", ".join(f[1] for f in weights),
                     fmt_size(sum(f[2] or 0 for f in weights))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if args.verbose:
        print()
        for name, (_, _, _, description, files) in models.items():
            print(f"{name}: {description}")
            for role, f, size, url, sha in files:
                print(f"  {role:6} {f}  " + (f"{fmt_size(size)}  " if size else "") + url
                      + (f"  sha256 {sha}" if sha else ""))
    return EXIT_OK


def _cache_subdir(url: str) -> str:
    host = urllib.parse.urlsplit(url).netloc or "local"
    return re.sub(r"[^A-Za-z0-9._-]", "_", host)


def check_checkpoint_file(path: Path) -> None:
    """Cheap integrity check before torch.load: a zip-format checkpoint must have its central
    directory (a truncated file does not)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise Failure(EXIT_INTEGRITY, f"{path.name}: cannot read: {e.strerror or e}")
    if size == 0:
        raise Failure(EXIT_INTEGRITY, f"{path.name}: empty file")
    if magic == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                z.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise Failure(EXIT_INTEGRITY, f"{path.name}: truncated or corrupt checkpoint ({size} bytes): {e}")
    elif magic[:1] != b"\x80":  # legacy pickle format starts with a PROTO opcode
        raise Failure(EXIT_INTEGRITY, f"{path.name}: not a PyTorch checkpoint (starts with {magic!r})")


def obtain_checkpoints(spec, args, work: Path) -> tuple:
    """Returns ({filename: Path}, source_kind, [checkpoint records without sha256])."""
    from mmsearch_models import download, zoo
    records = []
    paths = {}
    generated = args.deterministic_weights or (args.tiny and not args.checkpoint_dir
                                                and not args.base_url)
    if generated:
        t = time.monotonic()
        gen = zoo.write_deterministic_checkpoints(spec.name, work, image_size=args.image_size,
                                                  tiny=args.tiny)
        log(f"export: {spec.name}: wrote {'tiny ' if args.tiny else ''}deterministic checkpoints "
            f"({', '.join(sorted(gen))}) in {time.monotonic() - t:.1f} s")
        for c in spec.checkpoints:
            if c.filename not in gen:
                raise Failure(EXIT_INTERNAL, f"{c.filename}: not written by write_deterministic_checkpoints")
            paths[c.filename] = Path(gen[c.filename])
            records.append({"file": c.filename, "role": c.role, "url": None})
        return paths, ("tiny" if args.tiny else "deterministic"), records

    for c in spec.checkpoints:
        if args.checkpoint_dir:
            p = Path(args.checkpoint_dir) / c.filename
            if not p.is_file():
                raise Failure(EXIT_DOWNLOAD, f"{c.filename}: not found in --checkpoint-dir {args.checkpoint_dir}")
            url = c.url
        else:
            url = args.base_url.rstrip("/") + "/" + c.filename if args.base_url else c.url
            cache = Path(args.cache_dir) / "checkpoints" / _cache_subdir(url)
            if args.tiny:
                cache = cache / "tiny"
            sha = None if (args.tiny or args.base_url) else c.sha256
            try:
                p = download.fetch(url, cache / c.filename, sha256=sha, retries=args.retries,
                                   timeout=args.timeout)
            except download.IntegrityError as e:
                raise Failure(EXIT_INTEGRITY, str(e))
            except download.DownloadError as e:
                raise Failure(EXIT_DOWNLOAD, str(e))
        paths[c.filename] = p
        records.append({"file": c.filename, "role": c.role, "url": url})
    return paths, "checkpoint", records


def obtain_vocab(args, generated: bool) -> Path:
    from mmsearch_models import download
    if args.vocab:
        return Path(args.vocab)
    if generated or args.tiny:
        return DEFAULT_VOCAB
    if args.checkpoint_dir:  # offline: a vocab beside the checkpoints, else the cache / network
        for n in ("vocab.txt", "bert-base-uncased-vocab.txt"):
            if (Path(args.checkpoint_dir) / n).is_file():
                return Path(args.checkpoint_dir) / n
    url = args.base_url.rstrip("/") + "/vocab.txt" if args.base_url else VOCAB_URL
    dest = Path(args.cache_dir) / "vocab" / _cache_subdir(url) / "bert-base-uncased-vocab.txt"
    try:
        return download.fetch(url, dest, sha256=None if args.base_url else VOCAB_SHA256,
                              retries=args.retries, timeout=args.timeout)
    except download.IntegrityError as e:
        raise Failure(EXIT_INTEGRITY, str(e))
    except download.DownloadError as e:
        raise Failure(EXIT_DOWNLOAD, str(e))


def export_one(name: str, args) -> None:
    import torch
    from mmsearch_models import bundle, zoo
    from mmsearch_models.download import sha256_file

    spec = zoo.MODELS[name]
    t0 = time.monotonic()
    out_dir = Path(args.out)
    generated = args.deterministic_weights or (args.tiny and not args.checkpoint_dir
                                                and not args.base_url)
    vocab_path = obtain_vocab(args, generated)
    try:
        vocab = bundle.bert_vocab(vocab_path)
    except bundle.ExportError as e:
        raise Failure(EXIT_INTEGRITY, str(e))

    work_parent = Path(args.cache_dir) if generated and not args.tiny else None
    if work_parent is not None:
        work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"mmsearch-export-{name}-", dir=work_parent))
    try:
        paths, kind, records = obtain_checkpoints(spec, args, work)
        for rec in records:
            p = paths[rec["file"]]
            check_checkpoint_file(p)
            rec["sha256"] = sha256_file(p)
            rec["bytes"] = p.stat().st_size
            known = next(c.sha256 for c in spec.checkpoints if c.filename == rec["file"])
            if kind == "checkpoint" and known and not args.tiny and rec["sha256"] != known.lower():
                raise Failure(EXIT_INTEGRITY, f"{rec['file']}: sha256 mismatch "
                              f"(expected {known.lower()}, got {rec['sha256']})")

        t = time.monotonic()
        model = zoo.build_model(name, image_size=args.image_size, tiny=args.tiny)
        try:
            zoo.load_checkpoint_files(model, name, paths, image_size=args.image_size, tiny=args.tiny)
        except zoo.CheckpointError as e:
            raise Failure(EXIT_LAYOUT, _one_line(e))
        except (RuntimeError, EOFError, OSError, ValueError) as e:  # torch.load / unpickling
            files = ", ".join(sorted(paths))
            raise Failure(EXIT_INTEGRITY, f"{files}: cannot load checkpoint: {_one_line(e)}")
        log(f"export: {name}: model built and loaded in {time.monotonic() - t:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    model.eval()
    source = {"kind": kind, "checkpoints": records}
    if args.tiny:
        source["tiny_config"] = zoo.tiny_config(name)
    vision = spec.vision_encoder if not args.tiny else f"tiny-{spec.vision_encoder}"
    description = spec.description + (" [tiny test model, deterministic weights]" if args.tiny
                                      else " [golden-protocol deterministic weights]"
                                      if kind == "deterministic" else "")
    t = time.monotonic()
    try:
        manifest = bundle.write_bundle(
            model, out_dir / name, name=name, family=spec.family, description=description,
            vision_encoder=vision, weights_dtype=args.dtype, vocab=vocab, source=source,
            lavis={"name": spec.lavis_name, "model_type": spec.lavis_model_type},
            verify=not args.no_verify, log=log)
    except bundle.ExportError as e:
        raise Failure(EXIT_EXPORT, f"{name}: {_one_line(e)}")
    except (RuntimeError, OSError, torch.jit.Error) as e:
        raise Failure(EXIT_EXPORT, f"{name}: export failed: {_one_line(e)}")
    size = sum(f.stat().st_size for f in (out_dir / name).iterdir())
    log(f"export: {name}: wrote {out_dir / name} ({fmt_size(size)}, {args.dtype}, "
        f"{'/'.join(sorted(set(manifest.get('export_modes', {}).values())))}) "
        f"in {time.monotonic() - t:.1f} s, total {time.monotonic() - t0:.1f} s")
    print(out_dir / name)


def _one_line(e: BaseException) -> str:
    s = str(e).strip()
    if s.startswith(("'", '"')) and isinstance(e, KeyError):
        s = s[1:-1]
    return " ".join(s.split()) if s else type(e).__name__


def export_marian(name: str, args) -> None:
    """opus-mt-* translation bundles (issue 6): see mmsearch_models/marian_export.py."""
    from mmsearch_models import marian_export
    try:
        marian_export.export(name, Path(args.out), tiny=args.tiny,
                             deterministic=args.deterministic_weights,
                             checkpoint_dir=args.checkpoint_dir, cache_dir=args.cache_dir,
                             base_url=args.base_url, verify_bundle=not args.no_verify,
                             dtype=args.dtype, log=log)
    except marian_export.MarianExportError as e:
        raise Failure(e.code, f"{name}: {_one_line(e)}")
    print(Path(args.out) / name)


def cmd_export(args) -> int:
    from mmsearch_models.marian_export import MODELS as MARIAN_MODELS
    known = exportable()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        log(f"export_models: unknown model {', '.join(unknown)} (known: {', '.join(known)})")
        return EXIT_USAGE
    if args.deterministic_weights and (args.checkpoint_dir or args.base_url):
        log("export_models: --deterministic-weights cannot be combined with --checkpoint-dir or --base-url")
        return EXIT_USAGE
    if args.checkpoint_dir and args.base_url:
        log("export_models: --checkpoint-dir and --base-url are exclusive")
        return EXIT_USAGE
    if args.image_size is not None and args.image_size <= 0:
        log("export_models: --image-size must be positive")
        return EXIT_USAGE
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    for name in dict.fromkeys(args.names):
        try:
            if name in MARIAN_MODELS:
                export_marian(name, args)
                continue
            export_one(name, args)
        except Failure as e:
            log(f"export_models: error: {e}")
            return e.code
        except KeyboardInterrupt:
            log("export_models: interrupted")
            return 130
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_models.py",
        description="Export BLIP / BLIP-2 feature extractors as mmsearch model bundles.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="print the model zoo",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("-v", "--verbose", action="store_true", help="also print URLs and sha256")
    pe = sub.add_parser(
        "export", help="download / load checkpoints and write bundles",
        description="Write models/<NAME>/ bundles. Without --checkpoint-dir, --deterministic-weights "
                    "or --tiny the official checkpoints are downloaded into the cache (resumable).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    pe.add_argument("names", nargs="+", metavar="NAME", help="model names (see `list`)")
    pe.add_argument("--out", default=str(ROOT / "models"), help="bundle root (default: %(default)s)")
    pe.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                    help="how weights are stored (default fp32)")
    pe.add_argument("--image-size", type=int, default=None,
                    help="input resolution (default: the model's); position embeddings are interpolated")
    src = pe.add_argument_group("weights")
    src.add_argument("--checkpoint-dir", help="use checkpoint files already on disk (offline)")
    src.add_argument("--deterministic-weights", action="store_true",
                     help="full-size model with golden-protocol weights instead of a checkpoint")
    src.add_argument("--tiny", action="store_true",
                     help="small same-architecture model (deterministic weights unless "
                          "--checkpoint-dir / --base-url), for tests")
    src.add_argument("--cache-dir", default=str(default_cache_dir()),
                     help="download cache (default: %(default)s)")
    src.add_argument("--base-url", help="fetch checkpoints and vocab.txt from BASE/<file> (tests, mirrors)")
    src.add_argument("--vocab", help="bert-base-uncased vocab.txt to bundle (default: vocab.txt or "
                                     "bert-base-uncased-vocab.txt in --checkpoint-dir, else downloaded "
                                     f"into the cache; for deterministic / tiny bundles {DEFAULT_VOCAB})")
    pe.add_argument("--retries", type=int, default=3, help="download retries (default %(default)s)")
    pe.add_argument("--timeout", type=float, default=60.0, help="network timeout in s (default %(default)s)")
    pe.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    pe.add_argument("--no-verify", action="store_true", help="skip the TorchScript round-trip check")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args)
        return cmd_export(args)
    except Failure as e:
        log(f"export_models: error: {e}")
        return e.code


if __name__ == "__main__":
    sys.exit(main())
