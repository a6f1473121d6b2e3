"""Whether a claim's arms converged: the strict rule (the last validation errors lie within a band) applied to each
arm's mean validation curve over its seeds, with every run's own check and the slope of its last validations shown
as information.

The rule replaces "the best validation error within 0.2 points of the best of the last 3 epochs", which any run
still improving passes (it ends at its best). It is applied to the arm, the mean over seeds, because a single run's
validation error on 5,000 images moves by ~0.1 points from epoch to epoch even at a rate that no longer improves it
(the first converged sweep: 8.92, 8.98, 9.14 at lr/100): the range of 3 such values exceeds 0.2 points in about a
third of flat runs, while the mean of 5 seeds moves by a fifth as much and a still-improving arm fails either way.
Every claim whose runs validate gets the verdict "not converged" when either arm fails the rule (family.unconverged),
whatever its budget (the claims issue: every claim's arms pass the rule, or its verdict says they did not); a claim
may set `require_convergence: false` with its reason. Fig. 1's runs validate nothing: their measure is the steps to
a training error within the run, so where a run stops does not change it.
Runs of different lengths (each stopped by §5's plateau schedule) are averaged aligned at their ends (mean_curve).
That alignment was set after the first iterations sweep, whose verdict the common-epoch mean had withheld: the rule
as first written was undefined for runs that stop at different epochs, not wrong about them (each of its runs
passes the band alone), and for runs of one length the two alignments are the same.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from alexnet.claims.runs import Run, by_epoch

DEFAULT_RULE = {"within": 0.002, "last": 3}  # the last 3 validation top-1 errors within 0.2 points
SLOPE_POINTS = 4
METRIC = "val/top1_err"


def rule_of(claim: dict[str, Any]) -> dict[str, Any]:
    """The claim's `convergence: {within, last, improving}`, with DEFAULT_RULE for what it leaves out. `improving:
    mean_run_slope` (experiments/plan.yaml's rule for the extension, fixed with the plan): an arm also fails while
    still improving, when the mean over its seeds of each run's slope over its last `last` validations has a 95%
    interval wholly below zero."""
    given = claim.get("convergence") or {}
    rule: dict[str, Any] = {"within": float(given.get("within", DEFAULT_RULE["within"])),
                            "last": int(given.get("last", 3))}  # fmt: skip
    if given.get("improving"):
        rule["improving"] = str(given["improving"])
    return rule


def required(claim: dict[str, Any]) -> bool:
    """Every claim, unless it sets `require_convergence: false` (the budget no longer matters: the first overfitting
    sweep was judged with an arm that had not converged, since only the converged budget required it)."""
    return bool(claim.get("require_convergence", True))


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


def mean_curve(runs: list[Run]) -> tuple[list[int], list[float], bool]:
    """An arm's validation top-1 error averaged over its runs, and whether the runs' curves were aligned at their
    ends. Runs that validated at the same epochs (a fixed schedule) are averaged epoch by epoch (epoch counts).
    Runs of different lengths (a schedule that stops each run at its own plateau, budget=until_stopped) are
    averaged position by position back from each run's last validation (epochs -k+1 … 0): averaging them at the
    same epoch would set one run's flat end beside another still at a higher rate, which no run's curve shows
    (the first iterations sweep: every run flat within 0.06 points, the mean over common epochs moving 0.51)."""
    curves = [sorted(by_epoch(r.curves, METRIC).items()) for r in runs]
    n = min((len(c) for c in curves), default=0)
    values = [float(np.mean([c[len(c) - n + i][1] for c in curves])) for i in range(n)]
    if all([e for e, _ in c] == [e for e, _ in curves[0]] for c in curves):  # one length: the same epochs
        return [e + 1 for e, _ in curves[0][-n:]] if n else [], values, False
    return list(range(1 - n, 1)), values, True


def run_slopes(runs: list[Run], last: int) -> tuple[float, float, float]:
    """The mean over runs of each run's OLS slope over its own last `last` validations (error per epoch) and its 95%
    t-interval over the runs (n - 1 degrees of freedom); NaN where fewer than 2 runs have `last` validations."""
    slopes = []
    for run in runs:
        curve = sorted(by_epoch(run.curves, METRIC).items())[-last:]
        if len(curve) == last >= 2:
            slopes.append(stats.linregress([e for e, _ in curve], [v for _, v in curve]).slope)
    if len(slopes) < 2:
        return math.nan, math.nan, math.nan
    mean, se = float(np.mean(slopes)), float(np.std(slopes, ddof=1) / math.sqrt(len(slopes)))
    half = float(stats.t.ppf(0.975, len(slopes) - 1)) * se
    return mean, mean - half, mean + half


def arm_check(runs: list[Run], rule: dict[str, Any]) -> dict[str, Any]:
    epochs, values, aligned_at_end = mean_curve(runs)
    tail = values[-int(rule["last"]) :]
    s, low, high = slope(epochs, values)
    band = converged(values, rule["within"], int(rule["last"]))
    improving: dict[str, Any] = {}
    if rule.get("improving") == "mean_run_slope":
        m, lo, hi = run_slopes(runs, int(rule["last"]))
        improving = {"run_slope": m, "run_slope_low": lo, "run_slope_high": hi, "improving": bool(hi < 0)}
    return {
        **({"aligned_at_end": True} if aligned_at_end else {}),
        "converged": band and not improving.get("improving", False),
        **({"within_band": band, **improving} if improving else {}),
        "runs": len(runs),
        "runs_converged": sum(run_check(r, rule)["converged"] for r in runs),
        "last": tail,
        "spread": max(tail) - min(tail) if tail else math.nan,
        "slope": s,
        "slope_low": low,
        "slope_high": high,
    }


def assess(arms: dict[str, list[Run]], claim: dict[str, Any]) -> dict[str, Any] | None:
    """claim.json's `convergence`: the rule, whether the verdict needs it, per arm the check of its mean curve (and
    how many of its runs pass alone), and every run's check. None where no run has validation errors (Fig. 1's runs
    validate nothing)."""
    if not any(METRIC in r.curves for runs in arms.values() for r in runs):
        return None
    rule = rule_of(claim)
    checks = {arm: [{"arm": arm, **run_check(r, rule)} for r in sorted(runs, key=lambda r: r.seed)]
              for arm, runs in arms.items()}  # fmt: skip
    per_arm = {arm: arm_check(runs, rule) for arm, runs in arms.items()}
    return {
        "rule": rule,
        "applies_to": "each arm's mean validation curve over its seeds"
        + (
            ", runs of different lengths aligned at their ends"
            if any("aligned_at_end" in a for a in per_arm.values())
            else ""
        ),
        "required": required(claim),
        "arms": per_arm,
        "all_converged": all(a["converged"] for a in per_arm.values()),
        "runs": [c for cs in checks.values() for c in cs],
    }


def _improving_text(a: dict[str, Any]) -> str:
    """The plan's second test: the mean of the runs' own slopes over their last validations, with its interval."""
    if "run_slope" not in a:
        return ""
    verdict = "still improving" if a["improving"] else "not still improving"
    return (f"; {verdict}: the runs' own slopes over their last validations average {_points(a['run_slope'])} "
            f"[{_points(a['run_slope_low'])}, {_points(a['run_slope_high'])}] points/epoch")  # fmt: skip


def _points(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v * 100:+.2f}"


def render(conv: dict[str, Any] | None) -> str:
    """report.md's convergence section: the rule, each arm's mean curve against it, and a per-seed table."""
    if not conv:
        return ""
    rule = conv["rule"]
    arms = conv["arms"]

    def arm_text(arm: str, a: dict[str, Any]) -> str:
        if "last" not in a:  # a claim.json written before the rule applied to arms
            return f"{arm}: {a['converged']} of {a['runs']} runs"
        verdict = "**converged**" if a["converged"] else "**not converged**"
        aligned = "runs of different lengths, aligned at their last validation: " if a.get("aligned_at_end") else ""
        return (f"{arm}: {verdict} ({aligned}last {', '.join(f'{v * 100:.2f}' for v in a['last'])}%, spread "
                f"{_points(a['spread']).lstrip('+')} points, slope {_points(a['slope'])} "
                f"[{_points(a['slope_low'])}, {_points(a['slope_high'])}] points/epoch; "
                f"{a['runs_converged']} of {a['runs']} runs pass alone" + _improving_text(a) + ")")  # fmt: skip

    effect = (
        "this claim needs converged arms, so its verdicts are **not converged** (the statistics are still shown)"
        if conv["required"] and not conv["all_converged"]
        else ("this claim needs converged arms, and they are" if conv["required"] else "information only")
    )
    head = (
        f"Convergence (an arm has converged when the last {rule['last']} validation top-1 errors of its mean curve "
        f"over seeds lie within {rule['within'] * 100:.1f} points"
        + (
            f" and the mean over seeds of each run's slope over its last {rule['last']} validations is not wholly "
            "below zero at 95% (experiments/plan.yaml's rule)"
            if rule.get("improving")
            else ""
        )
        + "; a single run's error moves ~0.1 points from "
        f"epoch to epoch even when flat, convergence.py says why): {'; '.join(arm_text(k, a) for k, a in arms.items())}"
        f". {effect[0].upper() + effect[1:]}. Per run (information): its last errors, their spread, and the OLS "
        f"slope of its last {SLOPE_POINTS} validations in points per epoch with its 95% interval."
    )
    rows = [
        f"| {c['arm']} | {c['seed']} | {', '.join(f'{v * 100:.2f}' for v in c['last'])} | "
        f"{_points(c['spread']).lstrip('+')} | {'yes' if c['converged'] else 'no'} | {_points(c['slope'])} "
        f"[{_points(c['slope_low'])}, {_points(c['slope_high'])}] |"
        for c in conv["runs"]
    ]
    table = [
        "| arm | seed | last val top-1 % | spread (pts) | within the band alone | slope (pts/epoch) [95%] |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join([head, "", *table, *rows])
