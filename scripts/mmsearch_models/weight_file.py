"""The weight file of a format-2 bundle (`weights.bin`, see models/README.md).

The three TorchScript modules of a bundle share most of their weights: BLIP's BERT serves the
text and the multimodal path, and BLIP-2's Q-Former serves all three. So the modules are saved
without their weights, and every weight is stored once, here, under its model name
(`Qformer.bert.encoder.layer.0.attention.self.query.weight`). The header says which weights each
module uses, so a text query reads only the text path's.

Layout (little-endian):
  bytes 0-7    magic b"MMSTENS\\0"
  bytes 8-15   header length H (uint64)
  16..16+H     header, UTF-8 JSON: {"format": "mmsearch-tensors", "version": 1,
               "tensors": {name: {"dtype": "fp32"|"bf16"|"fp16", "shape": [...],
                                  "offset": N, "bytes": N}},
               "modules": {"image": [name, ...], "text": [...], "multimodal": [...]}}
  then         zero padding to a multiple of 64; the data section starts there, and each
               tensor's `offset` (a multiple of 64) counts from its start.
The file as a whole is checksummed by the manifest's `files` entry.
"""
from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Dict, List

import torch
from torch import Tensor

MAGIC = b"MMSTENS\x00"
FORMAT = "mmsearch-tensors"
VERSION = 1
ALIGN = 64
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
ITEM_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


class WeightFileError(Exception):
    """The weight file is missing, damaged or of another format."""


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def write(path: Path, tensors: Dict[str, Tensor], modules: Dict[str, List[str]]) -> None:
    """Writes `tensors` (name -> tensor) and the per-module name lists to `path`."""
    entries, offset = {}, 0
    for name, t in tensors.items():
        if t.dtype not in DTYPE_NAMES:
            raise WeightFileError(f"{name}: dtype {t.dtype} cannot be stored")
        size = t.numel() * t.element_size()
        entries[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "offset": offset,
                         "bytes": size}
        offset += _aligned(size)
    for role, names in modules.items():
        missing = [n for n in names if n not in entries]
        if missing:
            raise WeightFileError(f"module {role} uses weights that are not stored: {missing[:3]}")
    header = json.dumps({"format": FORMAT, "version": VERSION, "tensors": entries, "modules": modules},
                        separators=(",", ":")).encode("utf-8")
    start = _aligned(16 + len(header))
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header + b"\0" * (start - 16 - len(header)))
        for name, t in tensors.items():
            raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            f.write(raw + b"\0" * (_aligned(len(raw)) - len(raw)))


class WeightFile:
    """A weight file opened for reading: tensors are views of a private (copy-on-write) mapping,
    read from disk only when touched."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as e:
            raise WeightFileError(f"{self.path}: cannot map the weight file: {e}")
        size = len(self._map)
        if size < 16 or self._map[:8] != MAGIC:
            raise WeightFileError(f"{self.path}: not an mmsearch weight file (bad magic)")
        (length,) = struct.unpack("<Q", self._map[8:16])
        if length > size - 16:
            raise WeightFileError(f"{self.path}: header length {length} runs past the end of the file")
        try:
            header = json.loads(self._map[16:16 + length].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise WeightFileError(f"{self.path}: unreadable header: {e}")
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise WeightFileError(f"{self.path}: not a {FORMAT} v{VERSION} file "
                                  f"({header.get('format')!r} v{header.get('version')!r})")
        self._start = _aligned(16 + length)
        self.tensors: Dict[str, dict] = header["tensors"]
        self.modules: Dict[str, List[str]] = header["modules"]
        for name, e in self.tensors.items():
            count = 1
            for d in e["shape"]:
                count *= d
            if e["dtype"] not in DTYPES or count * ITEM_BYTES[e["dtype"]] != e["bytes"] \
                    or self._start + e["offset"] + e["bytes"] > size:
                raise WeightFileError(f"{self.path}: tensor {name} has a bad entry {e}")

    def tensor(self, name: str) -> Tensor:
        e = self.tensors[name]
        dtype = DTYPES[e["dtype"]]
        count = e["bytes"] // ITEM_BYTES[e["dtype"]]
        flat = torch.frombuffer(self._map, dtype=dtype, count=count, offset=self._start + e["offset"])
        return flat.reshape(e["shape"])
