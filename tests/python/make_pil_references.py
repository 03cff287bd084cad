#!/usr/bin/python3
"""Writes the Pillow references that tests/cpp/test_image.cpp compares the C++ image pipeline to.

Usage: make_pil_references.py SHARED_DIR OUT_DIR

Run with the system Python (Debian python3-pil 9.4.0, the version the goldens were made with):
the point is to compare against what LAVIS's own loader, Image.open(p).convert("RGB"), and
torchvision's Resize (Pillow BICUBIC) produce. Everything is written as .npy (uint8, HWC RGB).

OUT_DIR/
  decode/<set>/<file>.npy         Image.open(p).convert("RGB")  (strict LAVIS, no EXIF rotation)
  decode/<set>/<file>.exif.npy    ImageOps.exif_transpose(Image.open(p)).convert("RGB")
                                  (only when the file has an EXIF orientation other than 1)
  decode/<set>/<file>.shift8.npy  16-bit greyscale only: the high byte of each sample, replicated
                                  (what the C++ decoder gives by default; see image_decode.cpp)
  decode/<set>/<file>.error       Pillow could not open/load it; the text is Pillow's message
  orient/orient_<n>.jpg           a small asymmetric JPEG with EXIF Orientation = n (1..8)
  orient/orient_<n>.npy / .raw.npy   exif_transpose'd / stored pixels of it
  resize/<case>_src.npy, <case>_out.npy   Pillow resize((w, h), BICUBIC) of a seeded image
  resize/cases.txt                "<case> <out_w> <out_h>" per line
  photo_resize/<stem>_<S>.npy     decoded photo resized to SxS with BICUBIC
  DONE                            written last, so a half-written tree is never taken as complete
"""
import os
import sys

import numpy as np
from PIL import Image, ImageFile, ImageOps

assert not ImageFile.LOAD_TRUNCATED_IMAGES  # Pillow's default: truncated files raise


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, np.ascontiguousarray(array))


def orientation(im):
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: Pillow's exif_transpose would ignore it too
        return 1


def decode_refs(shared, out):
    for subset in ("photos", "edge"):
        folder = os.path.join(shared, "data", subset)
        for name in sorted(os.listdir(folder)):
            if name.endswith((".md", ".py", ".csv")):
                continue
            src = os.path.join(folder, name)
            dst = os.path.join(out, "decode", subset, name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                im = Image.open(src)
                im.load()
                save(dst + ".npy", np.asarray(im.convert("RGB")))
                if orientation(im) != 1:
                    save(dst + ".exif.npy", np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
                if im.mode in ("I", "I;16", "I;16B"):
                    grey = (np.asarray(im).astype(np.int64) >> 8).astype(np.uint8)
                    save(dst + ".shift8.npy", np.stack([grey] * 3, axis=-1))
            except Exception as e:  # noqa: BLE001 - any failure is a reference "error"
                with open(dst + ".error", "w") as f:
                    f.write(f"{type(e).__name__}: {e}\n")


def orientation_refs(out):
    rng = np.random.default_rng(7)
    # Asymmetric content (a bright corner block, a gradient) so every transform is distinct.
    base = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    base[:6, :10] = 255
    img = Image.fromarray(base, "RGB")
    folder = os.path.join(out, "orient")
    os.makedirs(folder, exist_ok=True)
    for n in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = n
        path = os.path.join(folder, f"orient_{n}.jpg")
        img.save(path, "JPEG", quality=95, exif=exif.tobytes())
        im = Image.open(path)
        save(os.path.join(folder, f"orient_{n}.raw.npy"), np.asarray(im.convert("RGB")))
        save(os.path.join(folder, f"orient_{n}.npy"),
             np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


# (case, source w, source h, out w, out h): up- and downscaling, odd sizes, one axis only.
RESIZE_CASES = [
    ("1x1_to_224", 1, 1, 224, 224),
    ("37x120_to_224", 37, 120, 224, 224),
    ("8000x50_to_224", 8000, 50, 224, 224),
    ("50x8000_to_224", 50, 8000, 224, 224),
    ("224_to_223", 224, 224, 223, 223),
    ("640x480_to_1000x1", 640, 480, 1000, 1),
    ("640x480_to_1x1", 640, 480, 1, 1),
    ("3x2_to_5x7", 3, 2, 5, 7),
    ("16x9_to_400x300", 16, 9, 400, 300),
    ("300x200_to_300x77", 300, 200, 300, 77),
    ("300x200_to_97x200", 300, 200, 97, 200),
    ("1000x750_to_384", 1000, 750, 384, 384),
    ("1023x682_to_364", 1023, 682, 364, 364),
    ("2x2_to_3x1000", 2, 2, 3, 1000),
]


def resize_refs(out):
    folder = os.path.join(out, "resize")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1234)
    with open(os.path.join(folder, "cases.txt"), "w") as listing:
        for case, w, h, ow, oh in RESIZE_CASES:
            # Noise plus a smooth ramp: noise exercises the clipping of negative lobes, the
            # ramp the smooth part of the kernel.
            noise = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            ramp = (np.arange(w)[None, :, None] * 255 // max(w - 1, 1)).astype(np.uint8)
            src = np.where((np.arange(h) % 3 == 0)[:, None, None], ramp, noise).astype(np.uint8)
            save(os.path.join(folder, f"{case}_src.npy"), src)
            res = Image.fromarray(src, "RGB").resize((ow, oh), Image.BICUBIC)
            save(os.path.join(folder, f"{case}_out.npy"), np.asarray(res))
            listing.write(f"{case} {ow} {oh}\n")


PHOTO_RESIZES = ["pizza_sliced.jpg", "orange_slice.jpg", "cameraman_gray.png",
                 "apricot_cutout.png", "burger_and_fries.jpg"]


def photo_resize_refs(shared, out):
    folder = os.path.join(out, "photo_resize")
    os.makedirs(folder, exist_ok=True)
    for name in PHOTO_RESIZES:
        im = Image.open(os.path.join(shared, "data", "photos", name)).convert("RGB")
        stem = os.path.splitext(name)[0]
        for size in (224, 384):
            save(os.path.join(folder, f"{stem}_{size}.npy"),
                 np.asarray(im.resize((size, size), Image.BICUBIC)))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    shared, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    done = os.path.join(out, "DONE")
    if os.path.exists(done):
        os.remove(done)
    decode_refs(shared, out)
    orientation_refs(out)
    resize_refs(out)
    photo_resize_refs(shared, out)
    with open(done, "w") as f:
        f.write(Image.__version__ + "\n")


if __name__ == "__main__":
    main()
