"""Whether a claim's runs converged, both arms, run by run: the strict rule (the last validation errors lie within
a band), and as information the slope of the last validations with its 95% interval.

The rule replaces "the best validation error within 0.2 points of the best of the last 3 epochs", which any run
still improving passes (it ends at its best). A claim on the converged budget, or with `require_convergence: true`,
gets the verdict "not converged" when any run of either arm fails the rule (family.unconverged).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from alexnet.runs import Run, by_epoch

DEFAULT_RULE = {"within": 0.002, "last": 3}  # the last 3 validation top-1 errors within 0.2 points
SLOPE_POINTS = 4
METRIC = "val/top1_err"


def rule_of(claim: dict[str, Any]) -> dict[str, float]:
    """The claim's `convergence: {within, last}`, with DEFAULT_RULE for what it leaves out."""
    given = claim.get("convergence") or {}
    return {"within": float(given.get("within", DEFAULT_RULE["within"])), "last": int(given.get("last", 3))}


def required(claim: dict[str, Any], cfg: dict[str, Any]) -> bool:
    return cfg.get("budget", {}).get("name") == "converged" or bool(claim.get("require_convergence"))


def converged(values: list[float], within: float, last: int) -> bool:
    """The strict rule: the last `last` validation errors lie within `within` of each other (max − min)."""
    tail = values[-last:]
    return len(values) >= last and max(tail) - min(tail) <= within + 1e-12


def slope(epochs: list[float], values: list[float], points: int = SLOPE_POINTS) -> tuple[float, float, float]:
    """OLS slope of the last `points` validations against their epochs (error per epoch) and its 95% interval;
    NaN with fewer than 3 points (no interval)."""
    x, y = np.asarray(epochs[-points:], float), np.asarray(values[-points:], float)
    if len(x) < 3:
        return math.nan, math.nan, math.nan
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.975, len(x) - 2)) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def run_check(run: Run, rule: dict[str, float]) -> dict[str, Any]:
    curve = sorted(by_epoch(run.curves, METRIC).items())
    epochs, values = [e + 1 for e, _ in curve], [v for _, v in curve]
    tail = values[-int(rule["last"]) :]
    s, low, high = slope(epochs, values)
    return {
        "seed": run.seed,
        "converged": converged(values, rule["within"], int(rule["last"])),
        "last": tail,
        "spread": max(tail) - min(tail) if tail else math.nan,
        "slope": s,
        "slope_low": low,
        "slope_high": high,
    }


def assess(arms: dict[str, list[Run]], claim: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any] | None:
    """claim.json's `convergence`: the rule, whether the verdict needs it, per arm k of n runs converged, and every
    run's check. None where no run has validation errors (Fig. 1's runs validate nothing)."""
    if not any(METRIC in r.curves for runs in arms.values() for r in runs):
        return None
    rule = rule_of(claim)
    checks = {arm: [{"arm": arm, **run_check(r, rule)} for r in sorted(runs, key=lambda r: r.seed)]
              for arm, runs in arms.items()}  # fmt: skip
    return {
        "rule": rule,
        "required": required(claim, cfg),
        "arms": {arm: {"converged": sum(c["converged"] for c in cs), "runs": len(cs)} for arm, cs in checks.items()},
        "all_converged": all(c["converged"] for cs in checks.values() for c in cs),
        "runs": [c for cs in checks.values() for c in cs],
    }


def _points(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v * 100:+.2f}"


def render(conv: dict[str, Any] | None) -> str:
    """report.md's convergence section: the rule, k of n per arm, and a per-seed table."""
    if not conv:
        return ""
    rule = conv["rule"]
    counts = "; ".join(f"{arm}: **{a['converged']} of {a['runs']} runs converged**" for arm, a in conv["arms"].items())
    effect = (
        "this claim needs converged runs, so its verdicts are **not converged** (the statistics are still shown)"
        if conv["required"] and not conv["all_converged"]
        else ("this claim needs converged runs, and they are" if conv["required"] else "information only")
    )
    head = (
        f"Convergence (a run has converged when its last {rule['last']} validation top-1 errors lie within "
        f"{rule['within'] * 100:.1f} points): {counts}; {effect}. The slope is the OLS slope of the last "
        f"{SLOPE_POINTS} validations, in points per epoch, with its 95% interval (information, not the rule)."
    )
    rows = [
        f"| {c['arm']} | {c['seed']} | {', '.join(f'{v * 100:.2f}' for v in c['last'])} | "
        f"{_points(c['spread']).lstrip('+')} | {'yes' if c['converged'] else '**no**'} | {_points(c['slope'])} "
        f"[{_points(c['slope_low'])}, {_points(c['slope_high'])}] |"
        for c in conv["runs"]
    ]
    table = [
        "| arm | seed | last val top-1 % | spread (pts) | converged | slope (pts/epoch) [95%] |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join([head, "", *table, *rows])
