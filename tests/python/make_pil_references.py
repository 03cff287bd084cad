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
  generated/<file>                 GIF and EXIF variants the shared data lacks (made here, see
                                  generated_inputs); decode/generated/ holds their references
  orient/orient_<n>.jpg           a small asymmetric JPEG with EXIF Orientation = n (1..8)
  orient/orient_<n>.npy / .raw.npy   exif_transpose'd / stored pixels of it
  resize/<case>_src.npy, <case>_out.npy   Pillow resize((w, h), BICUBIC) of a seeded image
  resize/cases.txt                "<case> <out_w> <out_h>" per line
  photo_resize/<stem>_<S>.npy     decoded photo resized to SxS with BICUBIC
  DONE                            written last, so a half-written tree is never taken as complete
"""
import io
import os
import shutil
import struct
import sys
import warnings
import zlib

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
    for subset, folder in (("photos", os.path.join(shared, "data", "photos")),
                           ("edge", os.path.join(shared, "data", "edge")),
                           ("generated", os.path.join(out, "generated"))):
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


# ------------------------------------------------------------------ generated inputs


def gif_parts(data):
    """Splits a GIF written by Pillow into (header without the screen size, first-frame
    extensions, image descriptor fields, local palette, LZW data up to and including the
    block terminator)."""
    flags = data[10]
    pos = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    head = data[:pos]
    ext_start = pos
    while data[pos] == 0x21:
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    extensions = data[ext_start:pos]
    assert data[pos] == 0x2C
    left, top, w, h = struct.unpack("<HHHH", data[pos + 1:pos + 9])
    frame_flags = data[pos + 9]
    pos += 10
    local = b""
    if frame_flags & 0x80:
        n = 3 << ((frame_flags & 7) + 1)
        local = data[pos:pos + n]
        pos += n
    lzw_start = pos
    pos += 1  # LZW minimum code size
    while data[pos]:
        pos += data[pos] + 1
    pos += 1
    return head, extensions, (w, h, frame_flags), local, data[lzw_start:pos]


def gif_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "GIF", **kw)
    return buf.getvalue()


def build_gif(head, screen, extensions, left, top, w, h, frame_flags, local, lzw, junk=b""):
    return (head[:6] + struct.pack("<HH", *screen) + head[10:] + extensions + junk + b"\x2c" +
            struct.pack("<HHHH", left, top, w, h) + bytes([frame_flags]) + local + lzw + b"\x3b")


def tiff_exif(entries, ifd1_entries=None, little=True):
    """A TIFF-structured EXIF block: IFD0 with `entries` [(tag, type, count, value bytes)],
    optionally followed by IFD1. Values of up to 4 bytes only (stored inline)."""
    e = "<" if little else ">"

    def ifd(items, next_offset):
        out = struct.pack(e + "H", len(items))
        for tag, typ, count, value in items:
            out += struct.pack(e + "HHI", tag, typ, count) + value.ljust(4, b"\0")
        return out + struct.pack(e + "I", next_offset)

    ifd0_size = 2 + 12 * len(entries) + 4
    next_offset = 8 + ifd0_size if ifd1_entries is not None else 0
    data = (b"II*\0" if little else b"MM\0*") + struct.pack(e + "I", 8) + ifd(entries, next_offset)
    if ifd1_entries is not None:
        data += ifd(ifd1_entries, 0)
    return data


def png_with_exif_after_idat(img, exif):
    """A PNG whose eXIf chunk comes after the image data (allowed by the PNG spec)."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    iend = data.rindex(b"IEND") - 4
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    return data[:iend] + chunk + data[iend:]


def jpeg_with_segment_first(jpeg, marker, payload):
    """Inserts an APPn segment right after SOI."""
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def generated_inputs(out):
    """Writes the inputs the shared data lacks: GIF frame layouts Pillow composes in its own
    way, and EXIF orientation in each container and in a few malformed shapes."""
    folder = os.path.join(out, "generated")
    shutil.rmtree(folder, ignore_errors=True)  # no stale inputs from an older version
    shutil.rmtree(os.path.join(out, "decode", "generated"), ignore_errors=True)
    os.makedirs(folder)
    rng = np.random.default_rng(99)
    palette = rng.integers(0, 256, size=768, dtype=np.uint8).tobytes()
    frame = Image.fromarray(rng.integers(0, 256, size=(37, 23), dtype=np.uint8), "P")
    frame.putpalette(palette)
    files = {}
    # Pillow writes interlaced GIFs by default (for frames of at least 16x16); be explicit.
    files["gif_interlaced_23x37.gif"] = gif_bytes(frame, interlace=True)
    files["gif_not_interlaced_23x37.gif"] = gif_bytes(frame, interlace=False)
    head, ext, (w, h, flags), local, lzw = gif_parts(gif_bytes(frame, interlace=True,
                                                               transparency=5))
    # Frame at an offset on a larger screen: the rest is the transparent index.
    files["gif_offset_transparent.gif"] = build_gif(head, (40, 50), ext, 6, 9, w, h, flags, local,
                                                    lzw)
    # Frame reaching past the logical screen: Pillow 9.4 grows the image to hold it.
    files["gif_frame_beyond_screen.gif"] = build_gif(head, (20, 20), ext, 4, 3, w, h, flags, local,
                                                     lzw)
    files["gif_zero_screen.gif"] = build_gif(head, (0, 0), ext, 0, 0, w, h, flags, local, lzw)
    # A local palette of 16 colours (indices above it: Pillow's grey ramp) and no global one.
    no_global = head[:10] + bytes([head[10] & 0x70]) + head[11:13]
    files["gif_short_local_palette.gif"] = build_gif(no_global, (23, 37), b"", 0, 0, w, h,
                                                     0xC3, palette[:48], lzw)
    # No palette at all: mode L.
    files["gif_no_palette.gif"] = build_gif(no_global, (23, 37), b"", 0, 0, w, h, 0x40, b"", lzw)
    # A stray byte between blocks: Pillow skips it.
    files["gif_stray_byte.gif"] = build_gif(head, (23, 37), ext, 0, 0, w, h, flags, local, lzw,
                                            junk=b"\x99")
    # Image data ending early: a block terminator after the first sub-block, and a cut file.
    first = lzw[:2 + lzw[1]] + b"\0"
    files["gif_data_ends_early.gif"] = build_gif(head, (23, 37), ext, 0, 0, w, h, flags, local,
                                                 first)
    whole = build_gif(head, (23, 37), ext, 0, 0, w, h, flags, local, lzw)
    files["gif_cut_in_image_data.gif"] = whole[:len(whole) - len(lzw) // 2]

    # EXIF orientation in each container Pillow's getexif() reads.
    photo = Image.fromarray(rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8), "RGB")
    short = struct.pack("<H", 6)
    exif6 = tiff_exif([(0x0112, 3, 1, short)])
    buf = io.BytesIO()
    photo.save(buf, "PNG", exif=b"Exif\0\0" + exif6)  # Pillow strips the prefix for eXIf
    files["png_exif_orientation_6.png"] = buf.getvalue()
    files["png_exif_after_idat_orientation_3.png"] = png_with_exif_after_idat(
        photo, tiff_exif([(0x0112, 3, 1, struct.pack("<H", 3))]))
    buf = io.BytesIO()
    photo.save(buf, "WEBP", lossless=True, exif=b"Exif\0\0" + tiff_exif(
        [(0x0112, 3, 1, struct.pack(">H", 8))], little=False))
    files["webp_exif_orientation_8.webp"] = buf.getvalue()
    # No TIFF here: OpenCV 4.6's TIFF reader applies the file's Orientation tag itself, even
    # with IMREAD_IGNORE_ORIENTATION (measured; an issue of its own), so a TIFF with an
    # orientation other than 1 does not decode like Pillow yet.
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    # An XMP APP1 before the EXIF APP1 (libexif alone would stop at the first APP1).
    with_exif = jpeg_with_segment_first(jpeg, 0xE1, b"Exif\0\0" + tiff_exif(
        [(0x0112, 4, 1, struct.pack("<I", 7))]))  # as a LONG
    files["jpeg_xmp_then_exif_long_orientation_7.jpg"] = jpeg_with_segment_first(
        with_exif, 0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    # Orientation only in IFD1 (the thumbnail's IFD): Pillow reads IFD0 only.
    files["jpeg_orientation_in_ifd1_only.jpg"] = jpeg_with_segment_first(
        jpeg, 0xE1, b"Exif\0\0" + tiff_exif([], [(0x0112, 3, 1, short)]))
    # Two components (Pillow takes the first, the tag being defined with one).
    files["jpeg_orientation_two_values_2.jpg"] = jpeg_with_segment_first(
        jpeg, 0xE1, b"Exif\0\0" + tiff_exif([(0x0112, 3, 2, struct.pack("<HH", 2, 6))]))
    # A value out of range.
    files["jpeg_orientation_9.jpg"] = jpeg_with_segment_first(
        jpeg, 0xE1, b"Exif\0\0" + tiff_exif([(0x0112, 3, 1, struct.pack("<H", 9))]))
    # An IFD cut short: the entry count promises more than the segment holds.
    cut = tiff_exif([(0x0112, 3, 1, short), (0x011A, 3, 1, short)])[:-16]
    files["jpeg_exif_ifd_cut.jpg"] = jpeg_with_segment_first(jpeg, 0xE1, b"Exif\0\0" + cut)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


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
    # The malformed EXIF blocks of generated_inputs make Pillow warn; the references record
    # what it does, the warnings would only clutter the build log.
    warnings.simplefilter("ignore")
    shared, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    done = os.path.join(out, "DONE")
    if os.path.exists(done):
        os.remove(done)
    generated_inputs(out)
    decode_refs(shared, out)
    orientation_refs(out)
    resize_refs(out)
    photo_resize_refs(shared, out)
    with open(done, "w") as f:
        f.write(Image.__version__ + "\n")


if __name__ == "__main__":
    main()
