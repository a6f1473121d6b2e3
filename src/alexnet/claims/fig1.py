"""Fig. 1's learning rate per net: each arm's rate chosen on the tuning seeds as the one that reaches the
training-error targets fastest (the paper tuned each net's rate "to make training as fast as possible"), then
compared on the other seeds."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from alexnet.claims.runs import Run, capped, censored


def select_setting(runs: list[Run], arm: str, select_by: str, metrics: str | list[str]) -> list[Run]:
    """Per arm, the runs of the setting (e.g. learning rate) that reach the `metrics` events fastest: fewest
    misses first, then the lowest mean of log values summed over the metrics. The paper tuned each net's learning
    rate to train as fast as possible (Fig. 1)."""
    metrics = [metrics] if isinstance(metrics, str) else metrics
    settings = defaultdict(list)
    for run in runs:
        if run.arm == arm:
            settings[run.setting(select_by)].append(run)
    if not settings:
        return []

    def rank(setting: Any) -> tuple[int, float]:
        runs_ = settings[setting]
        misses = sum(censored(r, m) or r.record.diverged_at_step is not None for r in runs_ for m in metrics)
        return misses, float(sum(np.mean(np.log([capped(r, m) for r in runs_])) for m in metrics))

    return settings[min(settings, key=rank)]


def at_grid_edge(runs: list[Run], chosen: list[Run], select_by: str) -> bool:
    """The chosen setting is the smallest or largest of the grid: the optimum may lie outside it."""
    grid = sorted({r.setting(select_by) for r in runs if r.arm == chosen[0].arm})
    return len(grid) > 1 and chosen[0].setting(select_by) in (grid[0], grid[-1])


def tuning_runs(runs: list[Run], claim: dict[str, Any]) -> list[Run]:
    """Fig. 1: the runs on the claim's tuning seeds (all the runs, for a sweep without separate tuning seeds)."""
    tuning = set(claim.get("tuning_seeds") or [])
    return [r for r in runs if r.seed in tuning] or runs


def select_runs(runs: list[Run], claim: dict[str, Any], arm: str) -> list[Run]:
    """Fig. 1: the arm's setting chosen on the tuning seeds; the runs of that setting on the other seeds (or, for
    a sweep without separate tuning seeds, the tuning runs themselves)."""
    select_by, tuning = claim["select_by"], set(claim.get("tuning_seeds") or [])
    chosen = select_setting(tuning_runs(runs, claim), arm, select_by, list(claim["paper"]))
    if not chosen:
        return []
    setting = chosen[0].setting(select_by)
    compared = [r for r in runs if r.arm == arm and r.seed not in tuning and r.setting(select_by) == setting]
    return compared or chosen


def chosen_settings(runs: list[Run], claim: dict[str, Any]) -> dict[str, Any]:
    """Each arm's setting chosen on the tuning seeds (what experiments/programme.sh runs the comparison at)."""
    select_by, tuned = claim["select_by"], tuning_runs(runs, claim)
    out = {}
    for arm in sorted({r.arm for r in tuned}):
        chosen = select_setting(tuned, arm, select_by, list(claim["paper"]))
        out[arm] = chosen[0].setting(select_by)
        if all(censored(r, m) for r in tuned if r.arm == arm for m in claim["paper"]):
            out[f"{arm}_reached_nothing"] = True  # no setting reached any target: the choice is arbitrary
        elif at_grid_edge(tuned, chosen, select_by):
            out[f"{arm}_at_grid_edge"] = True
    return out
