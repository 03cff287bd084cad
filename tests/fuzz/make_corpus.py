#!/usr/bin/python3
"""Writes the seed corpora of the libFuzzer targets into tests/fuzz/corpus/<target>/.

Everything is generated here (nothing comes from ../shared): small images drawn with Pillow,
caption tables, texts, import headers, weight files and manifests written out, and for
fuzz_store and fuzz_segment real stores that the mmsearch binary writes when it indexes three
generated images with the tiny test bundles (scripts/make_test_bundles.sh). The stores are
shrunk to 512-byte pages (VACUUM) so that each seed stays a few tens of KB.

Usage (system Python, which has Pillow and numpy):
  /usr/bin/python3 tests/fuzz/make_corpus.py [--bin build/mmsearch] [--models build/test-models]
                                              [--only TARGET ...]
Existing seeds of a regenerated target are replaced. The store seeds need the binary and the
bundles; without them those targets are left as they are.
"""
import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fuzz" / "corpus"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def target_dir(name):
    d = CORPUS / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write(d, name, data):
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


# --- fuzz_captions -----------------------------------------------------------------------------
def captions():
    d = target_dir("fuzz_captions")
    write(d, "plain.csv", "file,caption\na.jpg,a red pizza\nsub/b.jpg,green pasta\n")
    write(d, "spreadsheet.csv", "\ufeffFile,Caption\r\na.jpg,\"pizza, with basil\"\r\n"
          "a.jpg,\"two\nlines\"\r\nx.jpg,\"quoted \"\"word\"\"\"\r\n")
    write(d, "categories.csv", "file,caption,category\na.jpg,margherita,pizza\n"
          "sub/b.jpg,,first course\ncafe\u0301.jpg,caf\u00e9 au lait,drink\n")
    write(d, "unterminated.csv", "file,caption\na.jpg,\"never closed\nsub/b.jpg,next\n")
    write(d, "duplicates.csv", "file,caption\na.jpg,same\na.jpg,same\nmissing.jpg,gone\n")
    write(d, "plain.tsv", "file\tcaption\na.jpg\tred pizza\nsub/b.jpg\tgreen\tpasta\n")
    write(d, "lines.jsonl", '{"file": "a.jpg", "caption": "pizza"}\n'
          '{"file": "sub/b.jpg", "captions": ["pasta", "penne"], "category": "first"}\n'
          '{"file": "caf\\u00e9.jpg", "caption": "nfc"}\n')
    write(d, "broken.jsonl", '{"file": "a.jpg", "caption": "ok"}\n{"file": 3}\n[1,2]\n')
    write(d, "sidecar.txt", "a caption in a sidecar\nsecond line\n\n   \n")
    write(d, "latin1.txt", b"caf\xe9 cr\xe8me\n")


# --- fuzz_image_decode ---------------------------------------------------------------------------
def images():
    from PIL import Image
    d = target_dir("fuzz_image_decode")

    def save(name, image, fmt, **kw):
        out = io.BytesIO()
        image.save(out, fmt, **kw)
        write(d, name, out.getvalue())

    rgb = Image.new("RGB", (9, 6), (200, 40, 30))
    for x in range(9):
        rgb.putpixel((x, x % 6), (x * 28, 255 - x * 20, 90))
    save("rgb.png", rgb, "PNG")
    save("rgba.png", rgb.convert("RGBA"), "PNG")
    save("palette.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=4), "PNG",
         transparency=0)
    save("gray16.png", Image.new("I;16", (5, 4), 4000), "PNG")
    save("baseline.jpg", rgb, "JPEG", quality=70)
    save("progressive.jpg", rgb, "JPEG", quality=60, progressive=True)
    save("gray.jpg", rgb.convert("L"), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    save("exif-rotate.jpg", rgb, "JPEG", exif=exif.tobytes())
    frames = [rgb.convert("P"), Image.new("RGB", (9, 6), (0, 0, 255)).convert("P")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    write(d, "anim.gif", out.getvalue())
    save("rgb.bmp", rgb, "BMP")
    save("rgb.tiff", rgb, "TIFF")
    try:
        save("rgb.webp", rgb, "WEBP", quality=50)
    except (OSError, KeyError):
        pass


# --- fuzz_import ---------------------------------------------------------------------------------
def imports():
    import numpy as np
    d = target_dir("fuzz_import")
    for name, array in [("f32", np.zeros((3, 16), np.float32)),
                        ("f16", np.zeros((2, 32, 16), np.float16)),
                        ("i64", np.arange(4, dtype=np.int64))]:
        out = io.BytesIO()
        np.save(out, array)
        write(d, f"npy-{name}.bin", b"\x00" + out.getvalue()[:160])
    write(d, "meta-plain.bin", b"\x01" + json.dumps({"file": "a.jpg"}).encode())
    write(d, "meta-full.bin", b"\x01" + json.dumps(
        {"file": "sub/b.jpg", "category": "pasta", "captions": ["penne", "ragù"],
         "captions_en": ["penne", "ragout"]}, ensure_ascii=False).encode())
    write(d, "format.bin", b"\x02" + json.dumps(
        {"format": "mmsearch-vectors", "format_version": 1, "model": "blip-base@0123456789abcdef",
         "items": 3, "captions": 2, "checksums": {"image_proj.npy": "ab" * 32},
         "created_by": "mmsearch 0.1.0"}).encode())


# --- fuzz_manifest -------------------------------------------------------------------------------
def manifests(models):
    d = target_dir("fuzz_manifest")
    vl_files = {n: EMPTY_SHA256 for n in
                ["image.pt", "text.pt", "multimodal.pt", "vocab.txt", "weights.bin"]}
    if models and (models / "blip-base" / "mmsearch.json").exists():
        for name in ["blip-base", "blip2-coco"]:
            j = json.loads((models / name / "mmsearch.json").read_text())
            j.pop("source", None)  # checkpoint provenance: long and not read
            j["files"] = dict(vl_files)  # the harness's empty files
            write(d, f"{name}.json", json.dumps(j, indent=1))
    else:
        print("make_corpus: no test bundles; fuzz_manifest gets the hand-written seeds only")
    blip = {
        "format": "mmsearch-bundle", "format_version": 1, "name": "blip-v1", "family": "blip",
        "image": {"size": 384, "mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]},
        "text": {"vocab": "vocab.txt", "cls_token_id": 101, "sep_token_id": 102,
                 "pad_token_id": 0, "enc_token_id": 30523, "special_tokens": {"[ENC]": 30523}},
        "dims": {"vision_tokens": 577, "vision_width": 32, "image_tokens": 577, "hidden": 32,
                 "embed": 16},
        "similarity": {"text_image": "cls", "image_image": "cls"},
        "torch_version": "1.13.1",
        "files": {k: v for k, v in vl_files.items() if k != "weights.bin"},
    }
    write(d, "blip-v1.json", json.dumps(blip))
    marian = {
        "format": "mmsearch-bundle", "format_version": 1, "family": "marian",
        "name": "opus-mt-it-en", "translation": {"source_lang": "it", "target_lang": "en"},
        "tokenizer": {"source_spm": "source.spm", "target_spm": "target.spm",
                      "vocab": "vocab.json", "vocab_size": 8, "eos_token_id": 0,
                      "unk_token_id": 1, "pad_token_id": 7, "model_max_length": 16},
        "dims": {"d_model": 8, "encoder_layers": 1, "decoder_layers": 1, "heads": 2,
                 "head_dim": 4, "max_positions": 16},
        "generation": {"decoder_start_token_id": 7, "num_beams": 1, "max_length": 16,
                       "length_penalty": 1.0},
        "files": {"decoder.pt": EMPTY_SHA256, "encoder.pt": EMPTY_SHA256},
    }
    write(d, "marian.json", json.dumps(marian, indent=1))
    marian["generation"].update({"forced_eos_token_id": 0, "bad_words_ids": [[7]],
                                 "num_beams": 4, "renormalize_logits": False})
    marian["modules"] = {"encoder": "encoder.pt", "decoder": "decoder.pt"}
    marian["description"] = "with every optional field"
    write(d, "marian-full.json", json.dumps(marian))
    write(d, "not-object.json", "[1, 2, 3]")
    write(d, "bad-files.json", json.dumps({"format": "mmsearch-bundle", "format_version": 2,
                                           "family": "blip2", "name": "x",
                                           "files": {"../escape": "00" * 32}}))


# --- fuzz_segment --------------------------------------------------------------------------------
def segments(store_home):
    d = target_dir("fuzz_segment")
    for p in sorted((store_home / "index.sqlite3.segments").glob("*.seg")):
        write(d, p.name, p.read_bytes())


# --- fuzz_store ----------------------------------------------------------------------------------
def make_store(binary, models, work):
    """Indexes three generated images with a BLIP and a BLIP-2 tiny bundle; returns the home."""
    from PIL import Image
    photos, home = work / "photos", work / "home"
    (photos / "sub").mkdir(parents=True)
    home.mkdir()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(photos / "a.png")
    Image.new("RGB", (16, 24), (30, 200, 30)).save(photos / "sub" / "b.jpg")
    Image.new("RGB", (20, 20), (30, 30, 200)).save(photos / "c.png")
    (photos / "captions.csv").write_text("file,caption\na.png,red pizza\nsub/b.jpg,green pasta\n"
                                         "sub/b.jpg,penne\n")
    env = dict(os.environ, MMSEARCH_HOME=str(home), OMP_NUM_THREADS="1", MMSEARCH_DTYPE="fp32")
    env.pop("MMSEARCH_MODELS", None)
    run = lambda *args: subprocess.run([str(binary), "--models", str(models), "-q", *args],
                                       env=env, check=True, capture_output=True)
    for model in ["blip-base", "blip2-coco"]:
        run("index", str(photos), "--model", model)
    run("ann", "build", "--model", "blip-base", "--lists", "1")
    # A translation cache entry, so that table has a row.
    db = sqlite3.connect(home / "index.sqlite3")
    db.execute("INSERT INTO translations VALUES ('opus-mt-it-en@0', 'pizza', 'pizza')")
    db.commit()
    db.close()
    return home


def shrink(src, dst, wal):
    shutil.copy(src, dst)
    db = sqlite3.connect(dst, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA page_size = 512")
    db.execute("VACUUM")
    if wal:
        db.execute("PRAGMA journal_mode = WAL")
    db.close()
    for suffix in ["-wal", "-shm"]:
        Path(str(dst) + suffix).unlink(missing_ok=True)
    return Path(dst).read_bytes()


def downgrade(db_path, version):
    """Turns a shrunk version-4 store into version 2 (vectors inline, as BLOBs) or 1."""
    rng = random.Random(version)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")
    for trigger in ["files_segment_insert", "files_segment_delete", "files_segment_move"]:
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP INDEX files_by_segment")
    db.execute("ALTER TABLE files DROP COLUMN segment_id")
    db.execute("ALTER TABLE files DROP COLUMN segment_row")
    db.execute("DROP TABLE ann_indexes")
    db.execute("DROP TABLE segments")
    if version < 2:
        db.execute("DROP TABLE translations")

    def blob(rows, cols):
        return struct.pack(f"<{rows * cols}f", *(rng.uniform(-0.3, 0.3) for _ in range(rows * cols)))

    files = db.execute("SELECT f.id, m.model_id FROM files f JOIN models m ON m.id = f.model "
                       "ORDER BY f.id").fetchall()
    for file_id, model_id in files:
        queries = 4 if model_id.startswith("blip2") else 1  # fewer than the model's, to stay small
        db.execute("INSERT INTO vectors VALUES (?, -1, 'image_proj', ?, 8, ?)",
                   (file_id, queries, blob(queries, 8)))
        db.execute("INSERT INTO vectors VALUES (?, -1, 'image_embed', 1, 8, ?)",
                   (file_id, blob(1, 8)))
        for (index,) in db.execute("SELECT caption_index FROM captions WHERE file_id = ?",
                                   (file_id,)).fetchall():
            db.execute("INSERT INTO vectors VALUES (?, ?, 'text_proj', 1, 8, ?)",
                       (file_id, index, blob(1, 8)))
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.execute("VACUUM")
    db.close()
    return Path(db_path).read_bytes()


def bundle(db, flags, files):
    out = b"mmsfuzz1" + bytes([flags]) + struct.pack("<I", len(db)) + db
    for name, data in files:
        out += bytes([len(name)]) + name.encode() + struct.pack("<I", len(data)) + data
    return out


def stores(binary, models):
    if not binary or not Path(binary).exists() or not models or not (models / "blip-base").exists():
        print("make_corpus: no mmsearch binary or test bundles; fuzz_store and fuzz_segment "
              "left as they are", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = make_store(binary, models, work)
        segments(home)
        d = target_dir("fuzz_store")
        beside = [(p.name, p.read_bytes())
                  for p in sorted((home / "index.sqlite3.segments").iterdir())]
        src = home / "index.sqlite3"
        wal = shrink(src, work / "wal.sqlite3", wal=True)
        plain = shrink(src, work / "plain.sqlite3", wal=False)
        write(d, "v4-wal.bin", bundle(wal, 0, beside))
        write(d, "v4-read-write.bin", bundle(plain, 1, beside))
        write(d, "v4-no-segments.sqlite3", plain)
        shutil.copy(work / "plain.sqlite3", work / "v2.sqlite3")
        v2 = downgrade(work / "v2.sqlite3", 2)
        write(d, "v2-inline.sqlite3", v2)
        write(d, "v2-inline-read-write.bin", bundle(v2, 1, []))
        shutil.copy(work / "plain.sqlite3", work / "v1.sqlite3")
        write(d, "v1-inline.sqlite3", downgrade(work / "v1.sqlite3", 1))


# --- fuzz_tokenizer ------------------------------------------------------------------------------
def texts():
    d = target_dir("fuzz_tokenizer")
    for i, text in enumerate([
            "A photo of a pizza margherita, with fresh basil!",
            "lasagne with ragù  and   béchamel",
            "   Spaghetti\talla\nCARBONARA???   ",
            "東京のラーメン 🍜 and 한국 음식",
            "naïve café — “quoted” 'words' (and) [brackets] #tag @user $5.99",
            "unaffable unbelievable supercalifragilistic [MASK] [CLS] [DEC]",
            " ".join(["word"] * 60),
            "\u0627\u0644\u0628\u064a\u062a\u0632\u0627 \u0928\u092e\u0938\u094d\u0924\u0947",
    ]):
        write(d, f"text-{i}.txt", text)
    write(d, "invalid-utf8.bin", b"pizza \xff\xfe caf\xc3")


# --- fuzz_weight_layout --------------------------------------------------------------------------
def weights():
    d = target_dir("fuzz_weight_layout")

    def weight_file(tensors, modules, dtype_bytes):
        offsets, blob = {}, b""
        for name, (dtype, shape) in tensors.items():
            count = 1
            for s in shape:
                count *= s
            nbytes = count * dtype_bytes[dtype]
            offsets[name] = {"dtype": dtype, "shape": shape, "offset": len(blob), "bytes": nbytes}
            blob += bytes(nbytes)
            blob += bytes((-len(blob)) % 64)
        header = json.dumps({"format": "mmsearch-tensors", "version": 1, "tensors": offsets,
                             "modules": modules}).encode()
        head = b"MMSTENS\x00" + struct.pack("<Q", len(header)) + header
        head += bytes((-len(head)) % 64)
        return head + blob

    sizes = {"fp32": 4, "bf16": 2, "fp16": 2}
    write(d, "small.bin", weight_file({"vision.proj.weight": ("fp32", [4, 3]),
                                       "vision.proj.bias": ("fp32", [4]),
                                       "text.embed": ("bf16", [8, 2]),
                                       "scalar": ("fp16", [])},
                                      {"image": ["vision.proj.weight", "vision.proj.bias"],
                                       "text": ["text.embed", "scalar"]}, sizes))
    write(d, "empty.bin", weight_file({}, {}, sizes))
    write(d, "zero-dim.bin", weight_file({"z": ("fp32", [0, 5])}, {"image": ["z"]}, sizes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=REPO / "build" / "mmsearch")
    parser.add_argument("--models", type=Path, default=REPO / "build" / "test-models")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    steps = {
        "fuzz_captions": captions,
        "fuzz_image_decode": images,
        "fuzz_import": imports,
        "fuzz_manifest": lambda: manifests(args.models),
        "fuzz_store": lambda: stores(args.bin, args.models),  # also fuzz_segment
        "fuzz_tokenizer": texts,
        "fuzz_weight_layout": weights,
    }
    for name, step in steps.items():
        if args.only is None or name in args.only or (name == "fuzz_store" and
                                                        "fuzz_segment" in args.only):
            step()
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
