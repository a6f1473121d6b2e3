"""The reports' figures: per-seed learning curves with the learning-rate cuts, Fig. 1 as training error against
epochs, and one summary figure of every claim."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib import ticker

from alexnet.claims.runs import Run, by_epoch

COLORS = {  # one per verdict.VERDICTS
    "reproduced": "tab:green",
    "smaller": "tab:olive",
    "opposite": "tab:red",
    "excluded": "tab:purple",
    "inconclusive": "tab:gray",
    "not converged": "tab:orange",
    "not reached": "tab:brown",
}


def learning_curves(arms: dict[str, list[Run]], path: Path, title: str) -> Path | None:
    """Validation error (solid) and eval-mode training error (dashed) per epoch, one line per seed, the learning-
    rate cuts as vertical lines. Epochs are 1-based: the value after that many epochs."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    drawn = False
    for i, (arm, runs) in enumerate(arms.items()):
        color = f"C{i}"
        for metric, style, label in (("val/top1_err", "-", "val"), ("train_eval/top1_err", "--", "train, eval mode")):
            for j, run in enumerate(sorted(runs, key=lambda r: r.seed)):
                points = sorted(by_epoch(run.curves, metric).items())
                if len(points) >= 2:  # a curve, not a point (Fig. 1's runs have no validation)
                    ax.plot([e + 1 for e, _ in points], [v * 100 for _, v in points], style, color=color, lw=0.9,
                            alpha=0.7, label=f"{arm}, {label} ({len(runs)} seeds)" if j == 0 else None)  # fmt: skip
                    drawn = True
        cuts = {e for r in runs for e in r.record.lr_reduction_epochs or []}
        for e in sorted(cuts):
            ax.axvline(e + 0.5, color=color, ls=":", lw=1)
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch (dotted: learning rate ÷10 after it)", ylabel="top-1 error (%)", title=title)
    ax.set_yscale("log")
    return _save(fig, ax, path)


def training_error_by_epoch(arms: dict[str, list[Run]], targets: list[float], path: Path, title: str) -> Path:
    """Fig. 1 as in the paper: training error against epochs, one line per seed, the targets as horizontal lines
    (the running error over the last batches stands in for the epoch training error)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (arm, runs) in enumerate(arms.items()):
        for j, run in enumerate(sorted(runs, key=lambda r: r.seed)):
            points = run.curves.get("train/top1_err_running", [])
            images, steps = run.record.train_images, run.record.steps or 1
            per_epoch = images / run.cfg["data"]["batch_size"] if images else steps
            ax.plot([s / per_epoch for _, s, _ in points], [v * 100 for *_, v in points], color=f"C{i}", lw=0.9,
                    alpha=0.8, label=f"{arm} ({len(runs)} seeds)" if j == 0 else None)  # fmt: skip
    for t in targets:
        ax.axhline(t * 100, color="k", ls="--", lw=0.7)
    ax.set(xlabel="epoch", ylabel="training error (%)", title=title)
    ax.set_ylim(0, 100)
    return _save(fig, ax, path)


def summary(claims: list[dict[str, Any]], path: Path) -> Path:
    """Every claim-metric: the measured Δ and its 95% interval beside the paper's size translated here, coloured
    by the verdict (one Holm family; †: it rests on the t-test's normality). Left: differences as a fraction of the
    paper's size (0 none, 1 the paper's); rows without a size in points. Right: ratios on a log axis. Figures
    reported without a verdict (claim.json's `reported`) are not drawn."""
    rows = [(c, comp) for c in claims for comp in c["comparisons"] if not math.isnan(comp["delta"])]
    ratio_rows = [r for r in rows if r[1]["ratio"]]
    diff_rows = [r for r in rows if not r[1]["ratio"]]
    height = 1.2 + 0.42 * max(len(ratio_rows), len(diff_rows), 1)
    panels = [(diff_rows, False), (ratio_rows, True)]
    panels = [p for p in panels if p[0]] or panels[:1]  # no empty panel
    fig, axes = plt.subplots(1, len(panels), figsize=(13 if len(panels) == 2 else 8, height), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2][: len(panels)]})  # fmt: skip
    for ax, (group, ratio) in zip(axes[0], panels, strict=True):
        labels = []
        for y, (claim, comp) in enumerate(group):
            delta, low, high = comp["delta"], comp["low"], comp["high"]
            scale = abs(comp["size"]) if comp.get("size") else None
            if ratio:
                delta, low, high = (math.exp(v) if not math.isnan(v) else math.nan for v in (delta, low, high))
                paper = math.exp(comp["size"]) if comp.get("size") is not None else None
            elif scale:  # in units of the paper's size, signed so that the paper's direction is +1
                sign = math.copysign(1.0, comp["size"])
                delta, low, high = (sign * v / scale for v in (delta, low, high))
                low, high = min(low, high), max(low, high)
                paper = 1.0
            else:
                paper = None
                delta, low, high = (v * 100 for v in (delta, low, high))
            color = COLORS.get(comp["verdict"], "k")
            if not math.isnan(low):
                ax.plot([low, high], [y, y], color=color, lw=3, alpha=0.6)
            ax.plot([delta], [y], "o", color=color)
            if paper is not None:
                ax.plot([paper], [y], "k|", ms=14, mew=2)
            unit = "" if ratio or scale else " (pts)"
            mark = " †" if comp.get("normality_only") else ""
            name = claim["experiment"].removeprefix("ablate_")
            labels.append(f"§{claim['section']} {name}: {comp['metric']}{unit}{mark}")
        ax.set_yticks(range(len(group)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0 if ratio else 0.0, color="k", lw=0.8)
        if ratio:
            ax.set_xscale("log")
            ax.margins(x=0.15)  # the paper's mark and the interval's ends off the frame
            # ×0.25, ×0.5, ×1, ×2 ... in plain words; matplotlib's default writes 6×10^-1 beside 10^0
            ax.xaxis.set_major_locator(ticker.FixedLocator([2.0**k for k in range(-6, 7)]))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"×{v:g}"))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.set_xlabel("ratio ablated / reference (| : the paper's)")
        else:
            ax.set_xlabel("Δ in units of the paper's size here (| : the paper's = 1; rows in pts: no size)")
        ax.grid(alpha=0.3, axis="x")
    handles = [plt.Line2D([], [], color=c, marker="o", lw=3, label=v) for v, c in COLORS.items()]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _save(fig: plt.Figure, ax: plt.Axes, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
