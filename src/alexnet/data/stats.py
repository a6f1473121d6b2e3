"""Training-set statistics: the mean pixel (subtracted, §2) and the eigen decomposition of the 3x3 RGB covariance
(PCA colour noise, §4.1), saved as stats.json beside the store. Always on the [0, 1] scale (STATS_SCALE), whatever
pixel scale the net is fed (data.pixel_max): the transforms scale them, so a store serves either setting."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data.transforms import PUBLISHED_EIGVAL, PUBLISHED_EIGVEC, STATS_SCALE

log = logging.getLogger(__name__)
STATS = "stats.json"


class Moments:
    """Running sums of pixels and of their outer products, in float64: combine shards, then finish."""

    def __init__(self, total: Any = None, outer: Any = None, pixels: int = 0) -> None:
        self.total = np.zeros(3) if total is None else np.asarray(total, dtype=np.float64)
        self.outer = np.zeros((3, 3)) if outer is None else np.asarray(outer, dtype=np.float64)
        self.pixels = int(pixels)

    def add(self, image: np.ndarray) -> None:
        """One uint8 3xHxW (CHW) image."""
        x = image.reshape(3, -1).astype(np.float64) / 255.0  # STATS_SCALE
        self.total += x.sum(1)
        self.outer += x @ x.T
        self.pixels += x.shape[1]

    def __iadd__(self, other: Moments) -> Moments:
        self.total, self.outer = self.total + other.total, self.outer + other.outer
        self.pixels += other.pixels
        return self

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total.tolist(), "outer": self.outer.tolist(), "pixels": self.pixels}

    def finish(self, images: int, source: str) -> dict[str, Any]:
        """Mean pixel, covariance and its eigen decomposition (eigenvalues descending; column i of
        eigvec is p_i), all for pixels in [0, 1]."""
        mean = self.total / self.pixels
        cov = self.outer / self.pixels - np.outer(mean, mean)
        eigval, eigvec = np.linalg.eigh(cov)
        order = eigval.argsort()[::-1]
        return {
            "pixel_scale": STATS_SCALE,
            "mean": mean.tolist(),
            "cov": cov.tolist(),
            "eigval": eigval[order].clip(min=0).tolist(),
            "eigvec": eigvec[:, order].tolist(),
            "images": images,
            "pixels": self.pixels,
            "source": source,
        }


def save_stats(path: Path, stats: dict[str, Any]) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(stats, indent=2) + "\n")
    tmp.replace(path)


def load_stats(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    stats = json.loads(path.read_text())
    if stats.get("pixel_scale") != STATS_SCALE:
        raise ValueError(f"{path}: pixel_scale {stats.get('pixel_scale')!r}, expected {STATS_SCALE!r}")
    return stats


def published_pca() -> dict[str, Any]:
    return {"eigval": list(PUBLISHED_EIGVAL), "eigvec": [list(r) for r in PUBLISHED_EIGVEC], "source": "published"}


def sample(items: list, n: int, seed: int = 0) -> list:
    """A fixed random `n` of `items` (all of them if fewer), in their original order."""
    if n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def describe(stats: dict[str, Any]) -> str:
    return f"mean {np.round(stats['mean'], 4).tolist()}, eigval {np.round(stats['eigval'], 4).tolist()}"
