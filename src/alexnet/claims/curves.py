"""Figures of merit read off a run's curves in metrics.csv: the overfitting gap at a matched training error and
the epochs to converge (the overfit budget's per-epoch errors), and Fig. 1's steps to a training error and area
under the training-error curve (its per-step running error).

Why by hand: each is a line or two of interpolation or averaging over a curve; what matters is which points are
used, and that is this project's rule (written out in each docstring).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

CURVE = "train/top1_err_running"  # callbacks.TrainErrorTarget: the mean batch error over its last `window` steps
BATCH_CURVE = "train/top1_err_batch"  # each step's batch error, where a run logs it: read in preference (exact)
SMOOTH_STEPS = 100  # claim.smooth_steps: the window of Fig. 1's smoothed training error, in steps
CONVERGE_WITHIN = 0.01  # claim.converge_within: "converged" = within 1 point of the run's final training error
SMOOTHED, AREA = "smoothed_steps_to_", "error_area_to_"


def matched_crossing(train: dict[int, float], val: dict[int, float], target: float) -> tuple[float, float] | None:
    """The (fractional) epoch at which the eval-mode training error first reaches `target`, interpolated linearly
    between the two checks around that first crossing, and the validation error there. Epochs are counts (the
    check after epoch index e is epoch e + 1). None when the run never reaches it, or was already below it at its
    first check (no check above it to interpolate from)."""
    epochs = sorted(set(train) & set(val))
    first = next((i for i, e in enumerate(epochs) if train[e] <= target), None)
    if not first:  # None (never) or 0 (at the first check)
        return None
    before, after = epochs[first - 1], epochs[first]
    f = (train[before] - target) / (train[before] - train[after])
    return before + 1 + f * (after - before), val[before] + f * (val[after] - val[before])


def epochs_to_converge(train: dict[int, float], within: float = CONVERGE_WITHIN) -> float:
    """The first epoch from which the eval-mode training error stays within `within` of the run's final one
    (epoch counts, as above). `inf` when only the last check is: the run was still moving at its end (a bound)."""
    epochs = sorted(train)
    if not epochs:
        return math.nan
    final, i = train[epochs[-1]], len(epochs) - 1
    while i > 0 and abs(train[epochs[i - 1]] - final) <= within:
        i -= 1
    return math.inf if i == len(epochs) - 1 else float(epochs[i] + 1)


def _steps_values(points: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    # metrics.csv's step of a per-step log is the number of steps before that batch: +1 counts the batch itself
    steps = np.array([s + 1 for _, s, _ in points], float)
    return steps, np.array([v for *_, v in points], float)


def smoothed_crossing(points: list[tuple[int, int, float]], logged_window: int, window: int, target: float) -> float:
    """The first step at which the training error averaged over the last `window` steps is <= `target` (`inf`:
    never). The curve as logged holds, every few steps, the mean batch error over the last `logged_window` steps;
    the mean over the last `window` steps is the mean of the logged values whose own windows lie inside it, which
    is exact for per-step batch errors logged every step (logged_window = 1) and a trapezoid-weighted average over
    the window otherwise. Defined from step `window` on (a full window), as the callback's running error is."""
    steps, values = _steps_values(points)
    reach = max(window - logged_window, 0)  # logged points whose windows end inside the smoothing window
    for step in steps[steps >= window]:
        inside = (steps >= step - reach) & (steps <= step)
        if values[inside].mean() <= target:
            return float(step)
    return math.inf


def error_area(points: list[tuple[int, int, float]], until: float) -> float:
    """The sum of the training error over steps 1..`until`: those steps times the mean of the logged curve over
    them (exact for per-step batch errors logged every step)."""
    steps, values = _steps_values(points)
    inside = values[steps <= until]
    return float(until * inside.mean()) if len(inside) and until > 0 else math.nan


def fig1_curve(curves: dict[str, list[tuple[int, int, float]]], extra: dict[str, Any]) -> tuple[list, int] | None:
    """Fig. 1's per-step training-error curve and the window each of its values averages: the batch errors where
    logged (window 1), else the callback's running error (its `train_error_window`); None without either."""
    if curves.get(BATCH_CURVE):
        return curves[BATCH_CURVE], 1
    if curves.get(CURVE) and "train_error_window" in extra:
        return curves[CURVE], int(extra["train_error_window"])
    return None


def fig1_targets(claim: dict[str, Any], recorded: list[float]) -> list[float]:
    """The training errors Fig. 1's metrics are computed at: those of claim.paper's keys (steps_to_0.1,
    smoothed_steps_to_0.15, error_area_to_0.25, ...) and those the run's callback recorded."""
    found = {float(m.group(1)) for key in claim.get("paper") or {} if (m := re.search(r"_to_([0-9.]+)$", key))}
    return sorted(found | {float(t) for t in recorded}, reverse=True)


def fig1_metrics(curve: list[tuple[int, int, float]], logged_window: int, claim: dict[str, Any],
                 recorded: list[float]) -> dict[str, float]:  # fmt: skip
    """Per target t: smoothed_steps_to_<t> (the smoothed crossing) and error_area_to_<t> (the area under the
    training-error curve up to that run's smoothed crossing); `inf` where the run never reached t (a bound: its
    whole run, runs.capped)."""
    window = int(claim.get("smooth_steps", SMOOTH_STEPS))
    out: dict[str, float] = {}
    for t in fig1_targets(claim, recorded):
        crossing = smoothed_crossing(curve, logged_window, window, t)
        out[f"{SMOOTHED}{t:g}"] = crossing
        out[f"{AREA}{t:g}"] = crossing if math.isinf(crossing) else error_area(curve, crossing)
    return out


def overfit_metrics(train: dict[int, float], val: dict[int, float], claim: dict[str, Any]) -> dict[str, float | None]:
    """From the eval-mode training error and validation error of the same weights, epoch by epoch: the gap at the
    last check (overfit_gap), at the matched training error claim.match_train_err (overfit_gap_matched, interpolated;
    matched_epoch where it falls), epochs_to_train_err (the first check at or below it, the old figure) and
    epochs_to_converge (claim.converge_within)."""
    both = sorted(set(val) & set(train))
    out: dict[str, float | None] = {
        "train_eval/top1_err": train[both[-1]],
        "overfit_gap": val[both[-1]] - train[both[-1]],
    }
    target = claim.get("match_train_err")
    if target is not None:
        crossing = matched_crossing(train, val, float(target))
        out["matched_epoch"] = None if crossing is None else crossing[0]
        out["overfit_gap_matched"] = None if crossing is None else crossing[1] - float(target)
        first = next((e for e in both if train[e] <= target), None)
        out["epochs_to_train_err"] = math.inf if first is None else first + 1
    out["epochs_to_converge"] = epochs_to_converge(train, float(claim.get("converge_within", CONVERGE_WITHIN)))
    return out
