"""One multiple-testing family for a claim table: Holm's step-down correction over every test that can give a
verdict (both p-values of every row), the verdicts decided on the adjusted p-values, the MDE and seeds needed at the
family's Bonferroni level, the rows whose verdict no sign-flip test on their seeds could reach, and the override of
a claim whose runs did not converge.

Why by hand: scipy.stats.false_discovery_control does Benjamini-Hochberg, not Holm; Holm's adjustment is a few
lines, and the rest (which tests form the family, what a verdict rests on) is this project's rule.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from alexnet.claims.stats.signflip import smallest_p
from alexnet.claims.verdict import (
    ALPHA,
    Outcome,
    comparable,
    compared_values,
    decide,
    judge_values,
    mde,
    parse_spec,
    seeds_for,
    test_delta,
)

# test/loss has no paper's size: translating a relative change in top-5 error into cross-entropy has no basis
REPORT_ONLY = ("test/loss",)
TESTS = ("p", "p_paper")  # the two tests of a row; their adjusted values are <name>_holm


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (NaN entries are left out of the family and stay NaN)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, out, running = len(order), [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def holm_levels(pvalues: list[float], alpha: float = ALPHA) -> list[float]:
    """The level each test is held to at its step of Holm's procedure: α / (m - rank), rank 0 the smallest p."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    out = [math.nan] * len(pvalues)
    for rank, (_, i) in enumerate(order):
        out[i] = alpha / (len(order) - rank)
    return out


def split_reported(claim: dict[str, Any]) -> None:
    """Move rows that are reported without a verdict out of `comparisons` into `reported`, in place (a claim.json
    of an older compare.py judged test loss)."""
    rows = claim.get("comparisons", [])
    moved = [c for c in rows if c.get("report_only") or c["metric"] in REPORT_ONLY]
    if moved:
        claim["comparisons"] = [c for c in rows if c not in moved]
        for c in moved:
            c.update(report_only=True, verdict=Outcome.REPORTED, paper="reported, not a verdict")
        claim["reported"] = [*claim.get("reported", []), *moved]


def complete(claim: dict[str, Any]) -> bool:
    """The claim has reached the seeds experiments/plan.yaml planned for it (a claim outside the plan: always)."""
    planned = claim.get("plan")
    return not planned or planned["done"] >= planned["planned"]


def unconverged(claim: dict[str, Any]) -> bool:
    """The claim needs converged arms and either arm failed the strict rule (convergence.py)."""
    conv = claim.get("convergence") or {}
    return bool(conv.get("required")) and not conv.get("all_converged", True)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _power(row: dict[str, Any], alpha: float) -> tuple[float, int | None]:
    """MDE and seeds needed at `alpha`, recomputed from the row's per-seed values (old claim.json files too)."""
    x, y = compared_values(row["reference"], row["ablated"], row["ratio"])
    if min(len(x), len(y)) < 2:
        return math.nan, None
    _, se, df, sd = test_delta(x, y, row.get("paired", True))
    need = seeds_for(row["size"], sd, row.get("paired", True), alpha) if row.get("size") is not None else None
    return mde(se, df, alpha), need


def _rests_on_normality(row: dict[str, Any], verdict: str, levels: dict[str, float]) -> bool:
    """No exact sign-flip test on the row's seeds could reach the Holm level of the test(s) its verdict rests on."""
    if not Outcome(verdict).rejects_a_null or not row.get("paired", True):
        return False
    decisive = {Outcome.REPRODUCED: ("p",), Outcome.OPPOSITE: ("p",), Outcome.SMALLER: TESTS,
                Outcome.EXCLUDED: ("p_paper",)}[Outcome(verdict)]  # fmt: skip
    n = len(row["reference"])
    return any(smallest_p(n, two_sided=t == "p") > levels[t] for t in decisive)


def adjust(claims: list[dict[str, Any]], into: str | None = None) -> None:
    """Holm across every test of every verdict row of `claims` as one family, in place: per row `p_holm`,
    `p_paper_holm`, `verdict`, `verdict_tests` (the tests' outcome, before the plan's and convergence's overrides),
    `mde` and `seeds_needed` at α/m,
    `alpha_adjusted` (= α/m), `family_size` (m), `levels` (the Holm level each test was held to) and
    `normality_only` (†). `into`: write them into that key of each row instead (a claim's own family, "alone")."""
    for claim in claims:
        split_reported(claim)
    rows = [(claim, c) for claim in claims for c in claim["comparisons"]]
    flat = [_num(c.get(t)) for _, c in rows for t in TESTS]
    adjusted, levels = holm(flat), holm_levels(flat)
    m = sum(not math.isnan(p) for p in flat)
    alpha_m = ALPHA / max(m, 1)
    for k, (claim, c) in enumerate(rows):
        out: dict[str, Any] = {f"{t}_holm": adjusted[2 * k + j] for j, t in enumerate(TESTS)}
        sign = parse_spec(c["paper_spec"]).sign if c.get("paper_spec") is not None else 1.0
        facts = {"reached": not (c.get("unreached") and not c["reference"]),  # judge.compare: no pair left to test
                 "comparable": comparable(c["metric"], c.get("censored") or {})}  # fmt: skip
        tests = decide(c["delta"], out["p_holm"], out["p_paper_holm"], sign, **facts)
        row_levels = dict(zip(TESTS, levels[2 * k : 2 * k + 2], strict=True))
        out["mde"], out["seeds_needed"] = _power(c, alpha_m)
        out["verdict_tests"] = tests
        out["verdict"] = decide(c["delta"], out["p_holm"], out["p_paper_holm"], sign, **facts,
                                complete=complete(claim), converged=not unconverged(claim))  # fmt: skip
        out["alpha_adjusted"], out["family_size"] = alpha_m, m
        if claim.get("plan"):  # how far the claim is along its planned seeds
            out["seeds_planned"] = [claim["plan"]["done"], claim["plan"]["planned"], claim["plan"].get("showing")]
        out["normality_only"] = _rests_on_normality(c, tests, row_levels)
        out["levels"] = row_levels  # the Holm level each test was held to
        if into:
            c[into] = out
            c[f"verdict_{into}"] = out["verdict"]
        else:
            c.update(out)


def without_seed(row: dict[str, Any], seed: int) -> dict[str, Any]:
    """A paired row's statistics recomputed with one seed's pair left out (its censoring and the paper's size, which
    follows the ablated arm's mean, too); the row as it is where that seed is not among its pairs."""
    seeds = list(row.get("seeds") or [])
    if seed not in seeds or not row.get("paired", True):
        return row
    i = seeds.index(seed)
    keep = [j for j in range(len(seeds)) if j != i]
    ref, abl = [row["reference"][j] for j in keep], [row["ablated"][j] for j in keep]
    spec = parse_spec(row["paper_spec"])
    level = sum(abl) / len(abl) if abl and spec.relative is not None else None
    c = judge_values(row["metric"], spec, ref, abl, True, ablated_level=level)
    stats = {k: getattr(c, k) for k in ("delta", "low", "high", "p", "p_paper", "p_perm", "p_paper_perm", "se", "df",
                                         "sd", "mde", "seeds_needed", "size")}  # fmt: skip
    censored = {arm: [v for j, v in enumerate(flags) if j != i] for arm, flags in (row.get("censored") or {}).items()}
    return {**row, **stats, "reference": ref, "ablated": abl, "seeds": [seeds[j] for j in keep], "censored": censored}


def leave_one_out(claims: list[dict[str, Any]]) -> None:
    """Per row of every claim that has its planned seeds, in place: `leave_one_out` = {"seeds": n, "flips": {seed:
    verdict}}, the whole table decided again (Holm over every row) with each of the claim's seeds left out in turn,
    and the verdicts that differ from the row's. Convergence is held as decided on all seeds (a claim.json keeps the
    runs' last errors, not their curves). Rows of a claim short of its seeds get None (no verdict to test)."""
    for k, claim in enumerate(claims):
        rows = claim["comparisons"]
        seeds = sorted({s for c in rows for s in c.get("seeds") or []})
        if not complete(claim) or not seeds:
            for row in rows:
                row["leave_one_out"] = None
            continue
        flips: list[dict[str, str]] = [{} for _ in rows]
        for seed in seeds:
            trial = copy.deepcopy(claims)
            trial[k]["comparisons"] = [without_seed(row, seed) for row in trial[k]["comparisons"]]
            adjust(trial)
            for j, (row, again) in enumerate(zip(rows, trial[k]["comparisons"], strict=True)):
                if again["verdict"] != row["verdict"]:
                    flips[j][str(seed)] = str(again["verdict"])
        for row, flipped in zip(rows, flips, strict=True):
            row["leave_one_out"] = {"seeds": len(seeds), "flips": flipped}


def robustness(row: dict[str, Any]) -> str:
    """The leave-one-out cell: stable, or which seeds flip the verdict and to what."""
    loo = row.get("leave_one_out")
    if not loo:
        return "–"
    if not loo["flips"]:
        return f"stable (each of {loo['seeds']} seeds left out)"
    return "flips without " + ", ".join(f"seed {s} (→ {v})" for s, v in loo["flips"].items())
