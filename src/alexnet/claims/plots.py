"""The reports' figures: per-seed learning curves with the learning-rate cuts, Fig. 1 as training error against
epochs, and one summary figure of every claim."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from alexnet.claims.runs import Run, by_epoch
from alexnet.claims.verdict import VERDICTS, Outcome
from alexnet.files import write_bytes


def learning_curves(arms: dict[str, list[Run]], path: Path, title: str) -> Path | None:
    """Validation error (solid) and eval-mode training error (dashed) per epoch: each arm's mean over its seeds with
    a band of ± one standard deviation, the seeds' own curves as thin lines, the learning-rate cuts as vertical
    lines. Epochs are 1-based: the value after that many epochs. The error axis is logarithmic, labelled in plain
    percentages."""
    fig, ax = learning_curves_figure(arms, title)
    if not ax.lines:
        plt.close(fig)
        return None
    return _save(fig, ax, path)


def learning_curves_figure(arms: dict[str, list[Run]], title: str) -> tuple[plt.Figure, plt.Axes]:
    """learning_curves' figure, not yet saved (no lines where no run validated)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (arm, runs) in enumerate(arms.items()):
        color = f"C{i}"
        for metric, style, label in (("val/top1_err", "-", "val"), ("train_eval/top1_err", "--", "train, eval mode")):
            curves = [sorted(by_epoch(run.curves, metric).items()) for run in sorted(runs, key=lambda r: r.seed)]
            curves = [c for c in curves if len(c) >= 2]  # a curve, not a point (Fig. 1's runs have no validation)
            for points in curves:
                ax.plot(
                    [e + 1 for e, _ in points], [v * 100 for _, v in points], style, color=color, lw=0.5, alpha=0.35
                )
            if not curves:
                continue
            epochs = sorted({e for c in curves for e, _ in c})
            at = [[v for c in curves for e2, v in c if e2 == e] for e in epochs]
            mean = np.array([np.mean(v) for v in at]) * 100
            sd = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in at]) * 100
            x = [e + 1 for e in epochs]
            ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
            ax.plot(x, mean, style, color=color, lw=1.8, label=f"{arm}, {label}: mean ± sd of {len(curves)} seeds")
        cuts = {e for r in runs for e in r.record.lr_reduction_epochs or []}
        for e in sorted(cuts):
            ax.axvline(e + 0.5, color=color, ls=":", lw=1)
    ax.set(xlabel="epoch (dotted: learning rate ÷10 after it)", ylabel="top-1 error (%)", title=title)
    if ax.lines:
        percent_log_axis(ax)
    return fig, ax


def percent_log_axis(ax: plt.Axes) -> None:
    """A logarithmic error axis labelled 5%, 10%, 20% ... instead of matplotlib's 2 × 10^1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


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
    panels = [(diff_rows, False), (ratio_rows, True)]
    panels = [p for p in panels if p[0]] or panels[:1]  # no empty panel
    # the outcomes' legend: one row across two panels; one panel (a claim alone, as W&B shows it) needs two
    columns = len(VERDICTS) if len(panels) == 2 else math.ceil(len(VERDICTS) / 2)
    legend_rows = math.ceil(len(VERDICTS) / columns)
    height = 1.2 + 0.42 * max(len(ratio_rows), len(diff_rows), 1) + 0.3 * (legend_rows - 1)
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
            color = Outcome(comp["verdict"]).colour
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
    handles = [plt.Line2D([], [], color=v.colour, marker="o", lw=3, label=v) for v in VERDICTS]
    fig.legend(handles=handles, loc="upper center", ncol=columns, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.2 + 0.3 * legend_rows) / height))
    _write(fig, path)
    plt.close(fig)
    return path


def _save(fig: plt.Figure, ax: plt.Axes, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _write(fig, path)
    plt.close(fig)
    return path


def _write(fig: plt.Figure, path: Path) -> None:
    """The figure into `path` whole or not at all: an interrupted compare.py leaves the last report's figure."""
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format=path.suffix.lstrip(".") or "png")
    write_bytes(path, image.getvalue())
