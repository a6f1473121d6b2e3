"""The report's figures: learning curves with a band of ±1 std over seeds, and the Fig. 1 analogue."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from alexnet.report import Run  # noqa: E402


def _by_x(runs: list[Run], metric: str, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over runs of `metric` at each epoch (x="epoch") or step (x="step") every run has."""
    series = []
    for run in runs:
        points = run.curves.get(metric, [])
        series.append({(e if x == "epoch" else s): v for e, s, v in points})
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    values = np.array([[s[k] for k in common] for s in series]) if common else np.zeros((0, 0))
    if not common:
        return np.array([]), np.array([]), np.array([])
    return np.array(common), values.mean(0), values.std(0, ddof=1 if len(values) > 1 else 0)  # as the tables


def learning_curves(arms: dict[str, list[Run]], path: Path, title: str) -> Path | None:
    """Validation error (solid) and running training error (dashed) per epoch, mean ± std over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for i, (arm, runs) in enumerate(arms.items()):
        color = f"C{i}"
        for metric, style, label in (("val/top1_err", "-", "val"), ("train/top1_err", "--", "train")):
            x, mean, std = _by_x(runs, metric, "epoch")
            if len(x) >= 2:  # a curve, not a point (Fig. 1's runs end within the first epoch)
                ax.plot(x + 1, mean * 100, style, color=color, label=f"{arm}, {label} (n={len(runs)})")
                ax.fill_between(x + 1, (mean - std) * 100, (mean + std) * 100, color=color, alpha=0.2)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch", ylabel="top-1 error (%)", title=title)
    return _save(fig, ax, path)


def steps_to_target(arms: dict[str, list[Run]], target: float, window: int, path: Path, title: str) -> Path:
    """Fig. 1's analogue: running training error against steps, each arm's mean crossing of the target."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (arm, runs) in enumerate(arms.items()):
        color = f"C{i}"
        for run in runs:  # every seed, thin; the runs stop at the target, so lengths differ
            points = run.curves.get("train/top1_err_running", [])
            ax.plot([s for _, s, _ in points], [v * 100 for *_, v in points], color=color, alpha=0.35, lw=0.8)
        x, mean, std = _by_x(runs, "train/top1_err_running", "step")
        if len(x):
            ax.plot(x, mean * 100, color=color, lw=2, label=f"{arm} (mean of {len(runs)} seeds)")
        crossings = [r.metrics["steps_to_target"] for r in runs if r.metrics["steps_to_target"] not in (None, np.inf)]
        if crossings:
            ax.axvline(np.mean(crossings), color=color, ls=":", lw=1.5)
            ax.annotate(f"{np.mean(crossings):.0f} steps", (np.mean(crossings), target * 100), color=color,
                        xytext=(4, 6 + 14 * i), textcoords="offset points", fontsize=9)  # fmt: skip
    ax.axhline(target * 100, color="k", ls="--", lw=1, label=f"{target:.0%} training error")
    ax.set(xlabel="step", ylabel=f"training error, last {window} batches (%)", title=title)
    ax.set_ylim(0, 100)
    return _save(fig, ax, path)


def _save(fig: plt.Figure, ax: plt.Axes, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
