"""The claim's tables in report.md, on the console and in the claim table of experiments/README.md: each row's Δ,
interval, test-set bootstrap, t-test and sign-flip p-values, Holm-adjusted p-values and verdict, for the whole
table's family or the claim's own; and the figures reported without a verdict."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from alexnet.claims.family import robustness
from alexnet.claims.run_tables import is_percent, markdown_table, mean_std
from alexnet.claims.stats.signflip import smallest_p
from alexnet.claims.verdict import Comparison, Outcome


def fmt_value(metric: str, value: float | None, ratio: bool, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if ratio:
        return f"×{math.exp(value):.2f}"
    if is_percent(metric):
        return f"{value * 100:+.2f} pts" if signed else f"{value * 100:.2f} pts"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def fmt_delta(c: dict | Comparison) -> tuple[str, str]:
    c = c if isinstance(c, dict) else asdict(c)
    delta = fmt_value(c["metric"], c["delta"], c["ratio"])
    if math.isnan(c["low"]):
        return delta, "–"
    return delta, f"[{fmt_value(c['metric'], c['low'], c['ratio'])}, {fmt_value(c['metric'], c['high'], c['ratio'])}]"


def fmt_p(p: float | None) -> str:
    return "–" if p is None or math.isnan(p) else f"{p:.3g}"


def fmt_bootstrap(c: dict) -> str:
    """The test-set bootstrap's 95% interval of Δ and its sd (test-image sampling alone); – without predictions."""
    b = c.get("bootstrap")
    if not b:
        return "–"
    low, high, sd = (fmt_value(c["metric"], b[k], False, signed=k != "sd") for k in ("low", "high", "sd"))
    return f"[{low}, {high}] (sd {sd})"


def family_view(c: dict[str, Any], adjusted: bool) -> dict[str, Any]:
    """The row as decided in the whole table's family (adjusted) or in its claim's own; a claim.json of an older
    compare.py has no own family: its uncorrected p-values and verdict."""
    if adjusted:
        return c
    own = c.get("alone")
    if own:
        return {**c, **own}
    return {**c, "verdict": c.get("verdict_alone", c["verdict"]), "p_holm": c["p"], "p_paper_holm": c["p_paper"]}


def _tests(p: float | None, perm: float | None) -> str:
    return f"{fmt_p(p)} / {fmt_p(perm)}"


def verdict_cells(c: dict[str, Any]) -> list[str]:
    """The verdict and what it rests on: MDE and seeds needed at α/m where nothing was decided, a † where only
    the t-test's normality could reach the Holm level; and the note."""
    verdict, note = f"**{c['verdict']}**", [c.get("note") or ""]
    if c["verdict"] == Outcome.PENDING:
        done, planned, showing = [*(c.get("seeds_planned") or ("?", "?")), None][:3]
        shown = f"; the Δ shown is {showing}" if showing else ""
        return [f"**pending** ({done} of {planned} planned seeds{shown}: no verdict yet)", c.get("note") or ""]
    if c["verdict"] == Outcome.NOT_CONVERGED:
        verdict += f" (the tests alone: {c.get('verdict_tests', '–')})"
    if c.get("verdict_tests", c["verdict"]) == Outcome.INCONCLUSIVE and not math.isnan(c.get("mde", math.nan)):
        need = c.get("seeds_needed")
        more = f"; the paper's size needs {need} seeds" if need else ("; no size to detect" if c.get("size") is None
                                                                      else "; > 10,000 seeds")  # fmt: skip
        at = f" at α/m = 0.05/{c['family_size']}" if c.get("family_size") else ""
        verdict += f" (MDE {fmt_value(c['metric'], c['mde'], c['ratio'], signed=False)}{at}{more})"
    if c.get("normality_only"):
        verdict += " †"
        floor = smallest_p(len(c["reference"]))
        note.append(f"†: rests on normality; no sign-flip test on {len(c['reference'])} seeds (smallest p "
                    f"{floor:.3g}) can reach the Holm level of its test")  # fmt: skip
    return [verdict, "; ".join(filter(None, note))]


def claim_table(comparisons: list[dict], adjusted: bool) -> str:
    """Every verdict row of a claim, decided in the whole table's family (adjusted) or in the claim's own."""
    which = "Holm, whole table" if adjusted else "Holm, this claim"
    header = ["metric", "paper", "paper's size here", "measured Δ", "95% interval", "test-set bootstrap 95%",
              "p (Δ=0): t / sign-flip", "p (paper's size): t / sign-flip", f"{which}: p / p (paper's size)",
              f"verdict ({which})", *(["one seed left out"] if adjusted else []), "note"]  # fmt: skip
    rows = []
    for row in comparisons:
        c = family_view(row, adjusted)
        size = fmt_value(c["metric"], c["size"], c["ratio"]) if c.get("size") is not None else "–"
        rows.append([c["metric"], c["paper"], size, *fmt_delta(c), fmt_bootstrap(c),
                     _tests(c["p"], c.get("p_perm")), _tests(c["p_paper"], c.get("p_paper_perm")),
                     f"{fmt_p(c.get('p_holm'))} / {fmt_p(c.get('p_paper_holm'))}", *verdict_cells(c)])  # fmt: skip
        if adjusted:
            rows[-1].insert(-1, robustness(c))
    return markdown_table(header, rows)


def reported_table(reported: list[dict], arms: tuple[str, str]) -> str:
    """The figures shown without a verdict (test loss): each arm's mean ± sd, Δ with its interval, bootstrap and
    uncorrected p-values, outside every Holm family."""
    if not reported:
        return ""
    header = ["metric", f"{arms[0]} (reference)", f"{arms[1]} (ablated)", "measured Δ", "95% interval",
              "test-set bootstrap 95%", "p (Δ=0): t / sign-flip", ""]  # fmt: skip
    rows = []
    for c in reported:
        percent = is_percent(c["metric"])
        means = [mean_std(c[arm], c["censored"].get(arm, []), percent) for arm in ("reference", "ablated")]
        rows.append([c["metric"], *means, *fmt_delta(c), fmt_bootstrap(c), _tests(c["p"], c.get("p_perm")),
                     "reported, not a verdict"])  # fmt: skip
    return "Reported, not a verdict (no paper's size applies; outside the Holm family):\n\n" + markdown_table(
        header, rows
    )


def plain_table(comparisons: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "paper", "size here", "measured Δ", "95% interval", "p", "sign-flip p", "verdict"]
    return header, [[c["metric"], c["paper"], fmt_value(c["metric"], c["size"], c["ratio"])
                     if c.get("size") is not None else "–", *fmt_delta(c), fmt_p(c["p"]), fmt_p(c.get("p_perm")),
                     verdict_cells(c)[0]] for c in comparisons]  # fmt: skip
