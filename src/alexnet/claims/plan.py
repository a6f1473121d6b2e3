"""The seed plan of the claims issue (#29): how many seeds each claim's sweep runs to, fixed before the first new run,
and written to experiments/plan.yaml, which experiments/programme.sh sweeps and src/compare.py judges by.

Each tested row's seeds come from its first five seeds' spread (the pilot): the fewest n at which a paired t-test,
two-sided at the family's Bonferroni level α/m, detects the paper's size translated here with 80% power, computed
with the exact non-central t distribution (verdict.seeds_for uses the normal-quantile shortcut, one seed short for
two rows). A sweep runs to the largest n of the rows judged on its runs, clamped to [MIN_SEEDS, MAX_SEEDS]:
11 is the fewest seeds with which an exact sign-flip test can reach the family's level (2/2^11 < 0.05/28, so no
verdict rests on normality alone), 16 what the budget of ~25 CPU-hours allows (the issue's estimate).

Run `python -m alexnet.claims.plan` to regenerate experiments/plan.yaml from the pilot reports; the choices below
(order,
seed numbers, which pilots stay in the analysis and why) are the plan's own and are written there as they are.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

from scipy import stats

ALPHA, POWER = 0.05, 0.8
FAMILY_TESTS = 28  # two tests for each of the 14 tested rows of the table when the plan was fixed
MIN_SEEDS, MAX_SEEDS = 11, 16
ROOT = Path(__file__).resolve().parents[3]

# The convergence rule for every claim from the extension on (convergence.py implements it; fixed with this plan).
CONVERGENCE = {
    "within": 0.002,
    "last": 3,
    "improving": "mean_run_slope",
    "text": (
        "An arm has converged when (1) the last 3 validation top-1 errors of its mean curve over its analysed seeds "
        "lie within 0.2 points (the band, as before), and (2) it is not still improving: each run's OLS slope over "
        "its own last 3 validations (every budget runs them at its final rate) is averaged over the arm's seeds, "
        "and the arm fails when that mean slope's 95% t-interval over seeds lies wholly below zero. Runs of "
        "different lengths are aligned at their ends for (1), as before; (2) needs no alignment. A claim whose "
        "runs validate needs both arms converged, else its verdict is 'not converged'. Why the slope over seeds: "
        "the mean curve's own slope over its last 4 validations mixes in the epoch before the last cut (the "
        "converged budget cuts after epoch 12 of 15) and has 2 degrees of freedom; the per-run slopes over the "
        "final-rate epochs have n-1, and an arm whose runs keep improving at lr/100 fails however small its band."
    ),
}

# sweep: (budget, claims judged on its runs, pilot seeds, pilot kept in the analysis, why, first new seed, cap)
SWEEPS: dict[str, dict[str, Any]] = {
    "ablate_lrn": {
        "budget": "converged",
        "claims": ["ablate_lrn", "ablate_lrn_removed", "ablate_test_crops"],
        "pilot": [1, 2, 3, 4, 5],
        "kept": True,
        "first_new": 101,
    },
    "ablate_dropout": {
        "budget": "overfit",
        "claims": ["ablate_dropout"],
        "pilot": [1, 2, 3, 4, 5],
        "kept": False,
        "why_not_kept": (
            "the overfit budget's second cut was decided after seeing these seeds under one cut, and their runs are "
            "the one-cut sweep's up to epoch 70 (bit-identical before the second cut): the analysis uses new seeds "
            "only; the five size the plan"
        ),
        "first_new": 101,
    },
    "ablate_towers": {
        "budget": "converged",
        "claims": ["ablate_towers"],
        "pilot": [11, 12, 13, 14, 15],
        "kept": True,
        "first_new": 121,
    },  # fmt: skip
    "ablate_augmentation": {
        "budget": "overfit",
        "claims": ["ablate_augmentation"],
        "pilot": [11, 12, 13, 14, 15],
        "kept": True,
        "first_new": 121,
    },  # fmt: skip
    "ablate_pooling_overfit": {
        "budget": "overfit",
        "claims": ["ablate_pooling_overfit"],
        "pilot": [21, 22, 23, 24, 25],
        "kept": True,
        "first_new": 141,
    },  # fmt: skip
    "ablate_dropout_iterations": {
        "budget": "until_stopped",
        "claims": ["ablate_dropout_iterations"],
        "pilot": [36, 37, 38, 39, 40],
        "kept": True,
        "first_new": 101,
    },  # fmt: skip
    "ablate_activation": {
        "budget": "embedded",
        "claims": ["ablate_activation"],
        "pilot": [1, 2, 3, 4, 5],
        "kept": True,
        "first_new": 111,
    },  # fmt: skip  (tuning seeds 101-102 are this budget's too)
    "ablate_pooling": {
        "budget": "converged",
        "claims": ["ablate_pooling"],
        "pilot": [21, 22, 23, 24, 25],
        "kept": True,
        "first_new": 131,
        "cap": MIN_SEEDS,
        "why_cap": "the paper's size here (+0.09 points) needs ~72 seeds; the issue: only to the minimum of 11, last",
    },
}
KEPT_WHY = (
    "an internal pilot: the first five ran the same training code (experiments/same_path.sh checks it), their "
    "budget, claim and metric were fixed before they ran, and only their spread sizes the plan (re-estimating "
    "the variance from an internal pilot leaves a t-test's level essentially intact)"
)


def power(n: int, size: float, sd: float, alpha: float) -> float:
    """Exact power of a paired t-test on n seeds, two-sided at `alpha`, against a true mean difference `size`."""
    if sd <= 0:
        return 1.0
    df, nc = n - 1, abs(size) / (sd / math.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_for(size: float, sd: float, alpha: float = ALPHA / FAMILY_TESTS, target: float = POWER) -> int | None:
    """The fewest seeds (>= 2) at which `power` reaches `target`; None beyond 10,000."""
    for n in range(2, 10_001):
        if power(n, size, sd, alpha) >= target:
            return n
    return None


def pilot_rows(claim: str, root: Path = ROOT) -> list[dict[str, Any]]:
    """The tested rows of a claim's committed report: their pilot spread, the paper's size here, the seeds needed."""
    report = json.loads((root / "experiments" / claim / "claim.json").read_text())
    rows = []
    for c in report["comparisons"]:
        if not c["reference"] or c.get("size") is None:  # not reached: nothing to size it from
            rows.append({"claim": claim, "metric": c["metric"], "tested": False})
            continue
        need = seeds_for(c["size"], c["sd"])
        rows.append({"claim": claim, "metric": c["metric"], "tested": True, "pilot_seeds": c["seeds"],
                     "sd": round(float(c["sd"]), 6), "size": round(float(c["size"]), 6),
                     "seeds_for_80pct": need})  # fmt: skip
    return rows


def cpu_hours_per_run(sweep: str, root: Path = ROOT) -> float:
    """The pilot runs' mean wall time (one thread a run, two side by side), from their summary.json."""
    walls = [json.loads(p.read_text()).get("wall_seconds") or 0
             for p in (root / "experiments" / "runs" / sweep / "programme").glob("*/summary.json")]  # fmt: skip
    return sum(walls) / len(walls) / 3600


def build(root: Path = ROOT) -> dict[str, Any]:
    sweeps = {}
    for name, choice in SWEEPS.items():
        rows = [r for claim in choice["claims"] for r in pilot_rows(claim, root)]
        needs = [r["seeds_for_80pct"] or 10_001 for r in rows if r["tested"]]
        cap = choice.get("cap", MAX_SEEDS)
        planned = max(MIN_SEEDS, min(cap, max(needs, default=MIN_SEEDS)))
        new = planned - len(choice["pilot"]) if choice["kept"] else planned
        new_seeds = list(range(choice["first_new"], choice["first_new"] + new))
        arms = 3 if name == "ablate_lrn" else 2
        per_run = cpu_hours_per_run(name, root)
        sweeps[name] = {
            "budget": choice["budget"],
            "claims": choice["claims"],
            "planned_seeds": planned,
            "pilot": {
                "seeds": choice["pilot"],
                "kept": choice["kept"],
                "why": KEPT_WHY if choice["kept"] else choice["why_not_kept"],
            },  # fmt: skip
            "new_seeds": new_seeds,
            "analysed_seeds": (choice["pilot"] if choice["kept"] else []) + new_seeds,
            **({"cap": cap, "why_cap": choice["why_cap"]} if "cap" in choice else {}),
            "rows": rows,
            "new_runs": new * arms,
            "cpu_hours_per_run": round(per_run, 3),
            "cpu_hours_planned": round(new * arms * per_run, 2),
        }
    return {
        "fixed": date.today().isoformat(),
        "alpha": ALPHA,
        "family_tests": FAMILY_TESTS,
        "level": ALPHA / FAMILY_TESTS,
        "power": POWER,
        "min_seeds": MIN_SEEDS,
        "max_seeds": MAX_SEEDS,
        "convergence": CONVERGENCE,
        "order": list(SWEEPS),
        "cpu_hours_planned": round(sum(s["cpu_hours_planned"] for s in sweeps.values()), 1),
        "sweeps": sweeps,
    }


def load(root: Path = ROOT) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((root / "experiments" / "plan.yaml").read_text())


def for_claim(claim: str, root: Path = ROOT) -> dict[str, Any] | None:
    """The plan of the sweep whose runs judge `claim` (its name, seeds, planned count) with the plan's convergence
    rule, or None for a claim outside the plan (or no plan file)."""
    if not (root / "experiments" / "plan.yaml").is_file():
        return None
    plan = load(root)
    for name, sweep in plan["sweeps"].items():
        if claim in sweep["claims"]:
            return {"sweep": name, **sweep, "convergence": plan["convergence"], "fixed": plan["fixed"]}
    return None


def main() -> None:
    import yaml

    plan = build()
    head = (
        "# The seed plan of the claims issue (#29), fixed before any new run: written by\n"
        "# `python -m alexnet.claims.plan` (src/alexnet/claims/plan.py says how each number is chosen), read by\n"
        "# experiments/programme.sh (which seeds to run) and src/compare.py (which seeds to judge). A change after\n"
        "# the first new run is dated here and in experiments/README.md beside what it changed.\n"
    )
    out = ROOT / "experiments" / "plan.yaml"
    out.write_text(head + yaml.safe_dump(plan, sort_keys=False, width=118, allow_unicode=True))
    print(f"{out}: {plan['cpu_hours_planned']} CPU-hours planned")


if __name__ == "__main__":
    main()
