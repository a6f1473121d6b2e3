"""The embedded data set: Fashion-MNIST (Zalando, MIT licence), 60k train + 10k test, 28x28 grey.

The four original `*-idx?-ubyte.gz` files are looked for in `data_dir`, then in `search_dirs`
(Debian's `dataset-fashion-mnist` installs them in /usr/share/datasets/fashion-mnist), then
downloaded from the authors' published location into `data_dir` and checked against checksums.
A machine that reaches neither gets them copied into `data_dir` (default `data/fashion-mnist` in the repository,
an ignored folder: docs/gpu.md).

Files found on disk are checked against the same published checksums as they are read (`checksums`): a file of
other content (another data set under the same name, an altered copy) would otherwise train without a word, and
every claim's numbers would be about other data. `warn` (the default) names each such file and goes on, `error`
refuses it, `off` skips the check: for files made on purpose (the test suite's generated ones).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from alexnet.config.schema import require
from alexnet.data.base import ImageDataModule
from alexnet.data.decode import decode, resize_center_crop
from alexnet.errors import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# SHA-256 of the *decompressed* files: mirrors re-gzip them (Debian's copy has other gzip bytes).
SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
log = logging.getLogger(__name__)
HOW_TO_GET = (
    "Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four "
    f"files from {URL} into data.data_dir"
)


def read_idx(path: Path, raw: bytes | None = None) -> torch.Tensor:
    """An idx file (the MNIST format: big-endian header, then uint8 data) as a uint8 tensor; `raw`: its content,
    if already decompressed."""
    raw = decompressed(path) if raw is None else raw
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes (bad magic number). {HOW_TO_GET}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header. {HOW_TO_GET}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(torch.tensor(dims).prod())
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw)} bytes after decompression, but its header {dims} says {expected}; "
            f"the file is truncated or corrupt. {HOW_TO_GET}"
        )
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def decompressed(path: Path) -> bytes:
    """The content of a gzipped file; DataError naming it if it is no gzip file or is cut short."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot be read as a gzip file ({e}); delete it and get it again. {HOW_TO_GET}") from e


def check_published(contents: dict[Path, bytes], checksums: str) -> None:
    """Each file's content against its published SHA-256 (`checksums`: warn, error or off; the module's
    docstring says why)."""
    if checksums == "off":
        return
    other = [path for path, raw in contents.items() if hashlib.sha256(raw).hexdigest() != SHA256[path.name]]
    if not other:
        return
    what = "not the published Fashion-MNIST file (the SHA-256 of its content differs): other data than Zalando's"
    if checksums == "error":
        raise DataError(
            f"{', '.join(map(str, other))}: {what}. {HOW_TO_GET}; or data.checksums=warn (named, and used) or off "
            "(not checked) for files made on purpose"
        )
    for path in other:
        log.warning(
            f"{path}: {what}; training on it anyway (data.checksums=warn). {HOW_TO_GET}, or set data.checksums=off for "
            "files made on purpose (error refuses them)"
        )


def _content_sha256(path: Path) -> str:
    with gzip.open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download(url: str, data_dir: Path) -> Path:
    """Fetch the four files into `data_dir`, each verified before it takes its final name. Each process writes its
    own temporary file and renames it into place (atomic): the jobs of a sweep started together may all download,
    and none reads or truncates another's half-written file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        target = data_dir / name
        if target.exists():  # only ever a verified file: it got its name by an atomic rename
            continue
        fd, part = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.", suffix=".part")
        partial = Path(part)
        try:
            with urllib.request.urlopen(url + name, timeout=30) as response, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(response, out)
            ok = _content_sha256(partial) == SHA256[name]
        except (OSError, EOFError, ValueError, zlib.error) as e:
            partial.unlink(missing_ok=True)
            raise DataError(f"downloading {url + name} failed: {e}") from e
        if not ok:
            partial.unlink()
            raise DataError(f"{url + name}: checksum mismatch, the download is not the published file")
        os.replace(partial, target)  # another process's verified copy, if it came first, is the same file
    return data_dir


def locate(data_dir: Path, search_dirs: Sequence[str], download_url: str | None) -> Path:
    """The first folder holding all four files; downloads into `data_dir` if none does."""
    candidates = [data_dir, *map(Path, search_dirs)]
    for folder in candidates:
        if all((folder / name).is_file() for name in FILES.values()):
            return folder
    tried = ", ".join(str(c) for c in candidates)
    if not download_url:
        raise DataError(f"Fashion-MNIST not found (looked in {tried}; download is off). {HOW_TO_GET}")
    try:
        return download(download_url, data_dir)
    except DataError as e:
        raise DataError(f"Fashion-MNIST not found (looked in {tried}) and {e}. {HOW_TO_GET}") from e


class FashionMNISTDataModule(ImageDataModule):
    def __init__(
        self,
        data_dir: str,
        search_dirs: Sequence[str] = ("/usr/share/datasets/fashion-mnist",),
        download_url: str | None = URL,
        val_size: int = 5000,
        split_seed: int = 0,
        stored_size: int = 32,
        crop_size: int = 28,
        num_classes: int = 10,
        channels: int = 1,
        checksums: str = "warn",
        **kwargs,
    ) -> None:
        require("data", checksums=checksums)
        if (num_classes, channels) != (10, 1):
            raise ValueError(f"num_classes={num_classes}, channels={channels}: Fashion-MNIST has 10 and 1")
        if stored_size < 28:
            raise ValueError(f"stored_size={stored_size}: Fashion-MNIST images are 28x28; pad, don't shrink")
        super().__init__(num_classes, channels, stored_size, crop_size, **kwargs)
        self.data_dir, self.search_dirs, self.download_url = Path(data_dir), search_dirs, download_url
        self.val_size, self.split_seed, self.checksums = val_size, split_seed, checksums
        self.class_names = CLASSES

    def load_image(self, path: str | Path) -> torch.Tensor:
        """A new image as the stored Fashion-MNIST images are: grey, 28x28 (shorter side, centre crop), padded."""
        image = torch.from_numpy(np.array(resize_center_crop(decode(path, "L", draft_size=28), 28)))
        return self._pad(image[None, None])[0]

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        """Nx1x28x28 zero-padded to the stored size (the background is 0)."""
        p = self.stored_size - images.shape[-1]
        return F.pad(images, (p // 2, p - p // 2, p // 2, p - p // 2))

    def prepare_data(self) -> None:  # once per node, before setup: a download is never raced
        locate(self.data_dir, self.search_dirs, self.download_url)

    def load(self) -> None:
        folder = locate(self.data_dir, self.search_dirs, self.download_url)
        contents = {folder / name: decompressed(folder / name) for name in FILES.values()}
        check_published(contents, self.checksums)
        arrays = {key: read_idx(folder / name, contents[folder / name]) for key, name in FILES.items()}
        del contents  # the tensors hold copies
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(
                    f"{folder}: {split} images {tuple(images.shape)} do not match labels {tuple(labels.shape)}"
                )
            if int(labels.max()) >= 10:
                raise DataError(f"{folder}: {split} labels go up to {int(labels.max())}; Fashion-MNIST has 10 classes")
        if not 0 < self.val_size < len(arrays["train_images"]):
            raise DataError(f"data.val_size={self.val_size}: must be between 1 and {len(arrays['train_images']) - 1}")

        # Zero-pad the 28x28 images to the stored size once: the random 28x28 crops then shift the
        # object by up to +-2 pixels, the role 224-of-256 crops play in §4.1. The background is 0.
        train_x, test_x = self._pad(arrays["train_images"].unsqueeze(1)), self._pad(arrays["test_images"].unsqueeze(1))
        train_y, test_y = arrays["train_labels"].long(), arrays["test_labels"].long()
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        self.mean = [float(train_x[train_idx].float().mean() / 255.0)]
        self.sources = {
            "train": TensorDataset(train_x[train_idx], train_y[train_idx]),
            "val": TensorDataset(train_x[val_idx], train_y[val_idx]),
            "test": TensorDataset(test_x, test_y),
        }
