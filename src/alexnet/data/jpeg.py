"""The compressed store: the same 256x256 stored images as the resize-once store (§2), kept as JPEG bytes in large
shards (`data.store_format=jpeg`), decoded per batch on the GPU (`data.decode_on=device`) or per image on the CPU.

Why: a GPU training at 25,000 images/s would read 4.9 GB/s from the uint8 store (196,608 bytes per image, 252 GB
for ILSVRC-2012's training set), more than most disks give and more than most machines can cache; JPEG at
quality 90 keeps a 256x256 photo in a few tens of kB. The store is written in a seeded shuffled order, so that
reading it in shuffled blocks (`data.shuffle_block`, streams.EpochSampler) still gives every batch a mix of classes.

A shard `train/00000.jpegs` is the concatenated JPEG files; `train/00000.json` holds their offsets and labels.
Decoding: torchvision.io.decode_jpeg where torchvision is installed (`pip install -e ".[gpu]"`: nvJPEG on CUDA in
batches, libjpeg-turbo on the CPU), else Pillow (the project's decoder) on the CPU. Decoders may differ by a grey
level here and there (their inverse DCTs round differently): the same decoder gives the same run; nvJPEG against a
CPU decoder is the same images to JPEG's precision, not to the bit. Chosen over DALI's mixed decoder as the smaller
dependency (a pip extra matched to torch); which is faster on a GPU is for benchmarks/gpu_throughput.py to show.
"""

from __future__ import annotations

import io
import json
import os
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

try:  # optional: GPU decoding in batches (nvJPEG) and faster CPU decoding
    from torchvision.io import decode_jpeg as _tv_decode_jpeg
except ImportError:  # the CPU fallback below
    _tv_decode_jpeg = None

SUFFIX = ".jpegs"


def encode(image: np.ndarray, quality: int) -> bytes:
    """uint8 CxSxS (RGB) -> JPEG bytes at `quality`, 4:2:0 chroma as libjpeg's default."""
    buffer = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_cpu(data: torch.Tensor) -> torch.Tensor:
    """JPEG bytes (1-D uint8) -> uint8 3xSxS on the CPU."""
    if _tv_decode_jpeg is not None:
        return _tv_decode_jpeg(data)
    with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
        return torch.from_numpy(np.asarray(img.convert("RGB")).transpose(2, 0, 1).copy())


def decode_batch(data: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """A batch of JPEG bytes -> Bx3xSxS uint8 on `device`: nvJPEG in one call on CUDA (torchvision), else one
    image at a time on the CPU and a copy."""
    if device.type == "cuda" and _tv_decode_jpeg is not None:
        return torch.stack(_tv_decode_jpeg(data, device=device))
    return torch.stack([decode_cpu(d) for d in data]).to(device)


def gpu_decoding_available() -> bool:
    return _tv_decode_jpeg is not None and torch.cuda.is_available()


def write_jpeg_shard(out: Path, images: list[np.ndarray], quality: int) -> dict[str, Any]:
    """Encode `images` into out.jpegs; their offsets for out.json (the caller adds labels and the rest)."""
    blobs = [encode(image, quality) for image in images]
    offsets = np.cumsum([0, *map(len, blobs)]).tolist()
    tmp = out.with_name(out.name + SUFFIX + ".part")  # written whole, then renamed: no half-written shard survives
    with open(tmp, "wb") as f:
        for blob in blobs:
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out.with_suffix(SUFFIX))
    return {"offsets": offsets, "bytes": out.with_suffix(SUFFIX).stat().st_size}


class JpegImages(Dataset):
    """The images of one split of a JPEG store: (uint8 3xSxS, label) decoded on the CPU, or with `raw` the JPEG
    bytes as a 1-D uint8 tensor (decoded per batch on the device: ImageDataModule.on_before_batch_transfer)."""

    def __init__(self, store: Path, split: dict[str, Any], raw: bool = False) -> None:
        self.files = [store / s["file"] for s in split["shards"] if s["count"]]
        self.ends = np.cumsum([s["count"] for s in split["shards"] if s["count"]]).tolist()
        metas = [json.loads(f.with_suffix(".json").read_text()) for f in self.files]
        self.offsets = [m["offsets"] for m in metas]
        self.labels = [label for m in metas for label in m["labels"]]
        self.raw = raw
        self._maps: dict[int, np.ndarray] = {}  # opened lazily in each DataLoader worker

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = bisect_right(self.ends, i)
        if k not in self._maps:
            self._maps[k] = np.memmap(self.files[k], dtype=np.uint8, mode="r")
        j = i - (self.ends[k - 1] if k else 0)
        data = torch.from_numpy(np.array(self._maps[k][self.offsets[k][j] : self.offsets[k][j + 1]]))
        return (data if self.raw else decode_cpu(data)), self.labels[i]


class Decoded(Dataset):
    """A split of JPEG bytes decoded on the CPU, for what reads images outside the training loop (the eval-mode
    training error, statistics)."""

    def __init__(self, source: Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        data, label = self.source[i]
        return decode_cpu(data), label


def collate_raw(batch: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Default collation, except the JPEG bytes (of different lengths) stay a list."""
    from torch.utils.data import default_collate

    columns = list(zip(*batch, strict=True))
    return (list(columns[0]), *(default_collate(list(c)) for c in columns[1:]))
