"""Training-loader throughput from the resize-once store against the raw tree (decode + resize every epoch).

Generates a tree of ILSVRC-like JPEGs (default 2,000 of 500x375 at quality 90, about ImageNet's typical size and
file size), prepares the store with src/prepare.py's code, then times one epoch of the real training loader
(random 224 crops, flips, PCA noise, mean subtraction) from each source with the same number of workers.
  python benchmarks/imagenet_store.py [--images 2000] [--loader-workers 1] [--dir /tmp/bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alexnet.data import ImageFolderDataModule  # noqa: E402


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Colour gradients, blurred texture and sensor-like noise: about 100 kB at 500x375, q90 (ILSVRC-2012's
    training JPEGs average about 110 kB: 140 GB / 1.28M)."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = rng.uniform(40, 200, 3) + rng.uniform(-80, 80, 3) * x[..., None] + rng.uniform(-80, 80, 3) * y[..., None]
    texture = np.asarray(
        Image.fromarray(rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    image = 0.6 * base + 0.4 * texture + rng.normal(0, 14, (height, width, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def generate(root: Path, images: int, classes: int, size: tuple[int, int], quality: int) -> int:
    rng = np.random.default_rng(0)
    total = 0
    for i in range(images):
        folder = root / "train" / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{i:06d}.JPEG"
        photo_like(rng, *size).save(path, "JPEG", quality=quality)
        total += path.stat().st_size
    for c in range(classes):  # a small val/ so the data module opens the tree
        (root / "val" / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        shutil.copy(next((root / "train" / f"n{c:08d}").iterdir()), root / "val" / f"n{c:08d}" / "v.JPEG")
    return total


def epoch_rate(dm: ImageFolderDataModule) -> float:
    """Images per second of one training epoch, after the first batch (workers started, files opened)."""
    loader = dm.train_dataloader()
    it = iter(loader)
    first = next(it)[0].shape[0]
    start, n = time.perf_counter(), 0
    for x, _ in it:
        n += x.shape[0]
    rate = n / (time.perf_counter() - start)
    del it, loader
    return rate if n else float(first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--size", default="500x375")
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--loader-workers", type=int, default=1, help="DataLoader workers for both sources")
    p.add_argument("--prepare-workers", type=int, default=os.cpu_count())
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dir", type=Path, default=None, help="where to build the tree (default: a temp folder)")
    args = p.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="imagenet_store_"))
    width, height = map(int, args.size.split("x"))

    t = time.perf_counter()
    size = generate(root, args.images, args.classes, (width, height), args.quality)
    print(f"generated {args.images} JPEGs {width}x{height} q{args.quality}: {size / args.images / 1e3:.0f} kB each "
          f"on average, {time.perf_counter() - t:.1f} s")  # fmt: skip

    common = {"root": str(root), "num_classes": args.classes, "batch_size": args.batch_size}
    common |= {"num_workers": args.loader_workers, "augment": {"pca": True}}
    t = time.perf_counter()
    ImageFolderDataModule(**common).prepare_store(workers=args.prepare_workers)
    prepare_s = time.perf_counter() - t
    print(f"prepare: {prepare_s:.1f} s with {args.prepare_workers} workers ({args.images / prepare_s:.0f} images/s)")

    rates = {}
    for source in ("store", "raw"):
        dm = ImageFolderDataModule(**common, source=source)
        dm.setup()
        rates[source] = epoch_rate(dm)
    per_worker = max(args.loader_workers, 1)
    print(f"training loader, {args.loader_workers} worker(s), batch {args.batch_size}, one epoch of {args.images}:")
    for source, rate in rates.items():
        print(f"  {source:5s}: {rate:8.0f} images/s ({rate / per_worker:.0f} per worker)")
    print(f"  store / raw: {rates['store'] / rates['raw']:.1f}x")
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
