"""The compressed store: the same 256x256 stored images as the resize-once store (§2), kept as JPEG bytes in large
shards (`data.store_format=jpeg`), decoded per batch on the GPU (`data.decode_on=device`) or per image on the CPU.

Why: a GPU training at 25,000 images/s would read 4.9 GB/s from the uint8 store (196,608 bytes per image, 252 GB
for ILSVRC-2012's training set), more than most disks give and more than most machines can cache; JPEG at
quality 90 keeps a 256x256 photo in a few tens of kB. The store is written in a seeded shuffled order, so that
reading it in shuffled blocks (`data.shuffle_block`, streams.EpochSampler) still gives every batch a mix of classes.

A shard `train/00000.jpegs` is the concatenated JPEG files; `train/00000.json` holds their offsets and labels.
Decoding: torchvision.io.decode_jpeg where a torchvision built for the installed torch imports (nvJPEG on CUDA in
batches, libjpeg-turbo on the CPU; docs/gpu.md says how to get one without replacing torch), else Pillow (the
project's decoder) on the CPU. Decoders may differ by a grey level here and there (their inverse DCTs round
differently): the same decoder gives the same run; nvJPEG against a CPU decoder is the same images to JPEG's
precision, not to the bit. Chosen over DALI's mixed decoder as the smaller dependency (the torchvision built for the
installed torch); which is faster on a GPU is for benchmarks/gpu_throughput.py to show.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from bisect import bisect_right
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate


def _torchvision_decoder() -> tuple[Any, str]:
    """torchvision's decode_jpeg, or None and why not. A torchvision built for another torch fails at import with
    errors other than ImportError (`RuntimeError: operator torchvision::nms does not exist`): that is a broken
    install, not a missing one, and it must not stop a run that can decode with Pillow."""
    try:
        from torchvision.io import decode_jpeg
    except ImportError as e:
        return None, f"torchvision is not installed ({e})"
    except Exception as e:  # noqa: BLE001 - whatever a mismatched binary raises
        return None, (
            f"torchvision is installed but does not load with torch {torch.__version__} ({type(e).__name__}: {e}); "
            "install the torchvision built for this torch, or uninstall it (docs/gpu.md)"
        )
    return decode_jpeg, ""


# optional: GPU decoding in batches (nvJPEG) and faster CPU decoding; else Pillow on the CPU
_tv_decode_jpeg, TORCHVISION_MISSING = _torchvision_decoder()

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


def split_batch(data: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """A batch's JPEG files, concatenated (collate_raw), as one 1-D view per image: no copy."""
    return list(torch.split(data, lengths.tolist()))


def decode_batch(files: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """A batch of JPEG files (1-D uint8 each) -> Bx3xSxS uint8 on `device`: nvJPEG in one call on CUDA
    (torchvision), else one image at a time on the CPU and a copy."""
    if device.type == "cuda" and _tv_decode_jpeg is not None:
        return torch.stack(_tv_decode_jpeg(files, device=device))
    if device.type == "cuda":
        warnings.warn(f"decoding JPEG batches on the CPU, not with nvJPEG: {TORCHVISION_MISSING}", stacklevel=2)
    return torch.stack([decode_cpu(d) for d in files]).to(device)


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
    """Default collation, except the JPEG files (of different lengths) become one concatenated byte tensor and
    their lengths: ((bytes, lengths), ...). A loader worker hands each tensor of a batch to the main process in a
    shared-memory segment of its own, so one tensor instead of one per image (issue #21: 72 ms wall a batch of 128
    with one worker, against 7.8 ms for one tensor)."""
    columns = list(zip(*batch, strict=True))
    files = list(columns[0])
    lengths = torch.tensor([len(f) for f in files], dtype=torch.int64)
    return ((torch.cat(files), lengths), *(default_collate(list(c)) for c in columns[1:]))


class DecodingAhead:
    """A batch whose JPEG files are being decoded in the background (DecodeAheadLoader); `images()` waits for them."""

    def __init__(self, future: Future) -> None:
        self.future = future

    def images(self) -> torch.Tensor:
        images = self.future.result()
        if images.is_cuda:  # made on the decoding thread's stream, used on this one: keep its memory until then
            images.record_stream(torch.cuda.current_stream(images.device))
        return images


def _decode(data: torch.Tensor, lengths: torch.Tensor, device: torch.device, stream: Any) -> torch.Tensor:
    """decode_batch on the decoding thread's own CUDA stream, finished before it returns: the training step's
    stream never waits for a decode it has not asked for yet."""
    if stream is None:
        return decode_batch(split_batch(data, lengths), device)
    with torch.cuda.stream(stream):
        images = decode_batch(split_batch(data, lengths), device)
    stream.synchronize()
    return images


class DecodeAheadLoader(DataLoader):
    """A DataLoader of collate_raw batches that starts decoding each batch on `decode_device` in a background
    thread as soon as the batch is fetched. Lightning fetches one batch ahead of the step it runs, so batch i+1
    decodes while step i computes; on_before_batch_transfer then only collects the images (DecodingAhead)."""

    def __init__(self, *args: Any, decode_device: torch.device | str = "cpu", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decode_device = torch.device(decode_device)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        batches = super().__iter__()
        device = self.decode_device
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg-decode") as pool:
            for (data, lengths), *rest in batches:
                yield (DecodingAhead(pool.submit(_decode, data, lengths, device, stream)), *rest)


def batch_images(first: Any, device: torch.device) -> torch.Tensor:
    """The images of a JPEG batch on `device`: those decoded ahead, or (bytes, lengths) decoded now."""
    if isinstance(first, DecodingAhead):
        return first.images()
    return decode_batch(split_batch(*first), device)
