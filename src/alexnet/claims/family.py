"""One multiple-testing family for a claim table: Holm's step-down correction over every test that can give a
verdict (both p-values of every row), the verdicts decided on the adjusted p-values, the MDE and seeds needed at the
family's Bonferroni level, the rows whose verdict no sign-flip test on their seeds could reach, and the override of
a claim whose runs did not converge.

Why by hand: scipy.stats.false_discovery_control does Benjamini-Hochberg, not Holm; Holm's adjustment is a few
lines, and the rest (which tests form the family, what a verdict rests on) is this project's rule.
"""

from __future__ import annotations

import math
from typing import Any

from alexnet.claims.stats.signflip import smallest_p
from alexnet.claims.verdict import (
    ALPHA,
    Outcome,
    comparable,
    compared_values,
    decide,
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
    `p_paper_holm`, `verdict`, `verdict_tests` (before the convergence override), `mde` and `seeds_needed` at α/m,
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
                                converged=not unconverged(claim))  # fmt: skip
        out["alpha_adjusted"], out["family_size"] = alpha_m, m
        out["normality_only"] = _rests_on_normality(c, tests, row_levels)
        out["levels"] = row_levels  # the Holm level each test was held to
        if into:
            c[into] = out
            c[f"verdict_{into}"] = out["verdict"]
        else:
            c.update(out)
