"""A paired bootstrap over the test images: how much of a test-error Δ is test-set sampling alone.

Each run directory holds `predictions/<name>.npz` (`probs`: N × C class probabilities of each test image as tested,
the average softmax of its crops; `labels`: N), `test` for the run's own crop count and `test_<n>crop` for others,
the images in the same order in every run. The images are resampled with replacement, the same indices for every
run; each resample gives each seed's paired Δ (ablated − reference error, or loss) and their mean over seeds.

Why by hand: scipy.stats.bootstrap resamples one statistic of one sample; here every run's per-image errors are
resampled with shared indices and reduced over seeds, which is a few lines of numpy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

METRICS = ("test/top1_err", "test/loss")
RESAMPLES, SEED, CHUNK = 2000, 0, 100


def predictions_path(run_dir: Path, name: str = "test") -> Path:
    return Path(run_dir) / "predictions" / f"{name}.npz"


def prediction_name(crops: str | int, own_crops: int | None) -> str:
    """The predictions file of a test with `crops` crops: `test` where that is the run's own crop count."""
    return "test" if own_crops is not None and str(crops) == str(own_crops) else f"test_{crops}crop"


def per_image(path: Path, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per test image: the top-1 error (0/1) or the loss (-log of the label's probability, as the test computes
    it), and the labels."""
    with np.load(path) as f:
        probs, labels = np.asarray(f["probs"], np.float64), np.asarray(f["labels"], np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"{path}: probs {probs.shape} and labels {labels.shape} do not match (N x C and N)")
    if metric == "test/top1_err":
        return (probs.argmax(1) != labels).astype(np.float64), labels
    if metric == "test/loss":
        return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)), labels
    raise ValueError(f"no per-image form of {metric!r} (one of {', '.join(METRICS)})")


def paired_delta(
    pairs: list[tuple[Path, Path]], metric: str, resamples: int = RESAMPLES, seed: int = SEED
) -> dict[str, float] | None:
    """Δ (ablated − reference, the mean over seeds of each seed's paired Δ) on the whole test set, the 95%
    percentile interval and the standard deviation of Δ over `resamples` resamples of the test images. `pairs`:
    (reference, ablated) predictions files, one per seed. None where any file is missing (runs from before the
    predictions were written)."""
    if not pairs or not all(Path(p).is_file() for pair in pairs for p in pair):
        return None
    mean_diff, labels = None, None
    for ref_path, abl_path in pairs:
        ref, ref_labels = per_image(ref_path, metric)
        abl, abl_labels = per_image(abl_path, metric)
        labels = ref_labels if labels is None else labels
        for path, lab in ((ref_path, ref_labels), (abl_path, abl_labels)):
            if len(lab) != len(labels) or not np.array_equal(lab, labels):
                raise ValueError(f"{path}: its test images are not those of {pairs[0][0]} in the same order")
        diff = abl - ref
        mean_diff = diff if mean_diff is None else mean_diff + diff
    mean_diff /= len(pairs)  # per image: the mean over seeds of the paired difference
    # the mean of resampled per-image means is the mean over seeds of each seed's resampled Δ: one pass does both
    rng, n, deltas = np.random.default_rng(seed), len(mean_diff), []
    for start in range(0, resamples, CHUNK):
        idx = rng.integers(0, n, size=(min(CHUNK, resamples - start), n))
        deltas.append(mean_diff[idx].mean(1))
    boot = np.concatenate(deltas)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "delta": float(mean_diff.mean()),
        "low": float(low),
        "high": float(high),
        "sd": float(boot.std(ddof=1)) if resamples > 1 else math.nan,
        "resamples": resamples,
        "seed": seed,
        "images": n,
        "pairs": len(pairs),
    }
