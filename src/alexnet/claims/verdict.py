"""The verdict on one claim-metric: Δ paired by seed, its interval, the t-tests and their exact sign-flip
counterparts, the smallest effect the runs could detect, and one of five outcomes (family.py adjusts the p-values
of the whole claim table as one family).

Why by hand: scipy gives the t distribution and tests, but no library states "the paper's effect is excluded"
(a one-sided test against the paper's size, translated to our error level) or the seeds a claim would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats

from alexnet.claims.stats.signflip import sign_flip_p, sign_flip_p_below

ALPHA, POWER = 0.05, 0.8


class Outcome(StrEnum):
    """What a row of the claim table says: one of the five outcomes of its two tests, the outcome that withholds
    them when the claim's runs did not converge, a row with nothing to test, or a figure shown without a verdict.
    A str, so claim.json keeps the words it always had. Each carries its colour in the figures and how it sets
    against a later finding (literature.yaml)."""

    REPRODUCED = "reproduced"
    SMALLER = "smaller"
    OPPOSITE = "opposite"
    EXCLUDED = "excluded"
    INCONCLUSIVE = "inconclusive"
    NOT_CONVERGED = "not converged"
    NOT_REACHED = "not reached"
    PENDING = "pending"  # the claim has not reached its planned seeds (experiments/plan.yaml): no verdict yet
    REPORTED = "reported"

    @property
    def colour(self) -> str:
        return _COLOURS[self]

    @property
    def rejects_a_null(self) -> bool:
        """The outcome rests on a rejected null hypothesis (Δ = 0 or the paper's size)."""
        return self in (Outcome.REPRODUCED, Outcome.SMALLER, Outcome.OPPOSITE, Outcome.EXCLUDED)

    def agreement(self, supports: bool | None) -> str:
        """Against a later finding (supports: it found the paper's effect; None: mixed or not comparable)."""
        if not self.rejects_a_null:
            return "no verdict"
        if supports is None:
            return "later work mixed"
        found_it = self in (Outcome.REPRODUCED, Outcome.SMALLER)
        return "agrees" if found_it == bool(supports) else "disagrees"


_COLOURS = {
    Outcome.REPRODUCED: "tab:green",
    Outcome.SMALLER: "tab:olive",
    Outcome.OPPOSITE: "tab:red",
    Outcome.EXCLUDED: "tab:purple",
    Outcome.INCONCLUSIVE: "tab:gray",
    Outcome.NOT_CONVERGED: "tab:orange",
    Outcome.NOT_REACHED: "tab:brown",
    Outcome.PENDING: "tab:cyan",
    Outcome.REPORTED: "k",
}
VERDICTS = tuple(o for o in Outcome if o is not Outcome.REPORTED)  # the outcomes a judged row can have

VERDICT_RULE = (
    "Δ = ablated − reference, paired by seed (the arms of a seed share the data order, crops, flips and dropout "
    "masks, and the initial weights where their layers have the same shapes: not the towers' arms); ratios (`×R`) "
    "are compared as Δ of log values. The paper's size is translated to this data as the "
    "same relative change: Δ_paper / (the paper's error without the feature) × our ablated arm's mean. Two paired "
    "t-tests per row: p, two-sided, of Δ = 0, and p (paper's size), one-sided, of an effect as large as the "
    "paper's. **One family**: the p and p (paper's size) of every row of the claim table (experiments/README.md) "
    "are Holm-corrected together at α = 0.05 (m = the number of these tests; rows of a claim whose runs did not "
    "converge stay in it; figures reported without a verdict, such as test loss, do not enter it); a claim's "
    "report also shows its rows as a family of their own. **reproduced**: Δ ≠ 0 in the paper's direction and "
    "the paper's size not excluded; **smaller**: Δ ≠ 0 in the paper's direction and the paper's size excluded (a "
    "smaller effect in the paper's direction); **opposite**: Δ ≠ 0 against the paper's direction; **excluded**: no "
    "effect detected, the paper's size excluded; **inconclusive**: neither, with the minimum detectable effect "
    "(MDE, 80% power) and the seeds the paper's size would need, both at the Bonferroni level α/m (Holm's first "
    "step, the most conservative of its levels); **not converged**: a claim "
    "where either arm failed the strict convergence rule (its mean validation curve over "
    "seeds: the last 3 epochs within 0.2 points; for the claims of experiments/plan.yaml also not still improving: "
    "the mean over seeds of each run's slope over its last 3 validations, its 95% interval wholly below zero): its "
    "statistics are "
    "shown, its verdict is withheld. Beside each t-test, the exact sign-flip permutation p of the same null (all "
    "2^n sign flips of the paired differences): it needs no normality, but on n seeds it cannot fall below "
    "2/2^n (5 seeds: 0.0625; 8 seeds: 0.0078); where that floor lies above the Holm level the verdict's test was "
    "held to, the row is marked † (it rests on the t-test's normality). A value that a run ended before reaching "
    "counts as the whole run (shown as ≥, a bound); a pair of runs in which neither reached it bounds nothing of "
    "their ratio and is left out, and a row with no pair left gets **not reached** (no test; outside the family). "
    "**pending**: a claim whose runs have not reached the seeds experiments/plan.yaml planned for it (fixed before "
    "its new runs): its statistics so far are shown, no verdict; its tests stay in the family, whose size the plan "
    "fixed."
)


@dataclass
class Spec:
    """What the paper says of one metric: a size translated to our data (`delta` at the paper's `base`), a ratio
    (`xR`), or a direction (`+`/`-`) with our smallest effect of interest (`least`) or none."""

    text: str
    sign: float  # the paper's direction of Δ = ablated - reference
    ratio: bool = False
    relative: float | None = None  # delta / (base + delta): a size relative to the ablated arm's value
    least: float | None = None  # a fixed size (ratio claims: log R; direction claims: ours)


REPORTED = Spec("reported, not a verdict", 1.0)  # a figure shown with its Δ and interval, never judged


def parse_spec(paper: Any) -> Spec:
    if isinstance(paper, dict):
        if "delta" in paper:
            delta, base = float(paper["delta"]), float(paper["base"])
            what = f" ({paper['as']})" if paper.get("as") else ""
            return Spec(f"{delta * 100:+.2f} pts at {base:.1%}{what}", math.copysign(1.0, delta),
                        relative=abs(delta) / (base + delta))  # fmt: skip
        direction = str(paper["direction"])
        least = paper.get("least")
        text = {"+": "higher", "-": "lower"}[direction] + (f" (≥ {float(least) * 100:.1f} pts, ours)" if least else "")
        return Spec(text, -1.0 if direction == "-" else 1.0, least=None if least is None else float(least))
    spec = str(paper).strip()
    if spec.startswith("x"):
        r = float(spec[1:])
        return Spec(f"×{r:g}", math.copysign(1.0, math.log(r)), ratio=True, least=abs(math.log(r)))
    if spec in ("+", "-"):
        return Spec({"+": "higher", "-": "lower"}[spec], -1.0 if spec == "-" else 1.0)
    return Spec(f"{float(spec) * 100:+.2f} pts", math.copysign(1.0, float(spec)))  # a size with no base: a direction


@dataclass
class Comparison:
    metric: str
    paper: str
    reference: list[float]
    ablated: list[float]
    delta: float
    low: float
    high: float
    verdict: str
    ratio: bool
    note: str = ""
    seeds: list[int] = field(default_factory=list)
    paired: bool = True
    size: float | None = None  # the paper's size translated here, in Δ's units (log for ratios), signed
    p: float = math.nan  # two-sided, H0: Δ = 0
    p_paper: float = math.nan  # one-sided, H0: the effect in the paper's direction is >= |size|
    p_perm: float = math.nan  # exact sign-flip counterpart of p (paired rows only)
    p_paper_perm: float = math.nan  # exact sign-flip counterpart of p_paper
    se: float = math.nan  # standard error of Δ
    df: float = math.nan
    sd: float = math.nan  # the spread the seeds needed scale with (of the paired differences, or of one arm)
    mde: float = math.nan
    seeds_needed: int | None = None  # for the paper's translated size at 80% power (None: no size, or > 10,000)
    censored: dict[str, list[bool]] = field(default_factory=dict)  # per arm, per value: a bound, not a value
    unreached: list[int] = field(default_factory=list)  # seeds whose two runs both ended before the event (left out)
    paper_spec: Any = None  # the config's claim.paper entry, as written
    report_only: bool = False  # a figure shown with its statistics but never judged (test loss)
    bootstrap: dict[str, float] | None = None  # bootstrap.paired_delta over the test images, where predictions exist


def _t_quantiles(df: float, alpha: float = ALPHA) -> float:
    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(POWER, df))


def mde(se: float, df: float, alpha: float = ALPHA) -> float:
    """The smallest |Δ| a two-sided test at `alpha` detects with POWER, given Δ's standard error."""
    return _t_quantiles(df, alpha) * se


def seeds_for(size: float, sd: float, paired: bool, alpha: float = ALPHA) -> int | None:
    """Seeds per arm for a two-sided test at `alpha` to detect `size` with POWER, given the spread `sd` (of the
    paired differences, or of one arm)."""
    if sd == 0:
        return 2
    for n in range(2, 10_001):
        se = sd / math.sqrt(n) if paired else sd * math.sqrt(2 / n)
        if _t_quantiles(n - 1 if paired else 2 * n - 2, alpha) * se <= abs(size):
            return n
    return None


def decide(delta: float, p: float, p_paper: float, sign: float, alpha: float = ALPHA, *, reported: bool = False,
           complete: bool = True, reached: bool = True, comparable: bool = True,
           converged: bool = True) -> Outcome:  # fmt: skip
    """The one place a row's outcome is decided (VERDICT_RULE): a figure shown without a verdict is `reported`; a
    claim short of its planned seeds is `pending` (no verdict is published before them: experiments/plan.yaml); a
    row with no pair of runs that reached the event is `not reached`; otherwise the two tests at level `alpha` (p-values
    already adjusted for their family; NaN: no test), `inconclusive` where the values cannot be compared (runs
    still improving at their last epoch, for best_epoch), and `not converged` over the tests' outcome where the
    claim's arms failed the convergence rule."""
    if reported:
        return Outcome.REPORTED
    if not complete:
        return Outcome.PENDING
    if not reached:
        return Outcome.NOT_REACHED
    p, p_paper = (1.0 if math.isnan(v) else v for v in (p, p_paper))  # an untested null is never rejected
    if p < alpha:
        tests = Outcome.OPPOSITE if math.copysign(1.0, delta) != sign else (
            Outcome.SMALLER if p_paper < alpha else Outcome.REPRODUCED)  # fmt: skip
    else:
        tests = Outcome.EXCLUDED if p_paper < alpha else Outcome.INCONCLUSIVE
    if not comparable:
        tests = Outcome.INCONCLUSIVE
    return tests if converged else Outcome.NOT_CONVERGED


def test_delta(x: np.ndarray, y: np.ndarray, paired: bool) -> tuple[float, float, float, float]:
    """Δ = mean(x - y) (paired) or mean(x) - mean(y) (Welch), its standard error, degrees of freedom, and the
    spread the seed count scales with."""
    if paired:
        d = x - y
        sd = float(d.std(ddof=1))
        return float(d.mean()), sd / math.sqrt(len(d)), len(d) - 1.0, sd
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)) if se > 0 else len(x) + len(y) - 2.0
    return float(x.mean() - y.mean()), se, float(df), float(np.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2))


def compared_values(ref: list[float], abl: list[float], ratio: bool) -> tuple[np.ndarray, np.ndarray]:
    """The per-seed values Δ is taken of: logs for ratio metrics."""
    if ratio:
        return np.log(np.asarray(abl, float)), np.log(np.asarray(ref, float))
    return np.asarray(abl, float), np.asarray(ref, float)


def comparable(metric: str, censoring: dict[str, list[bool]]) -> bool:
    """Whether the values can be compared at all: an epoch of the best validation is no epoch where the run was
    still improving at its last one."""
    return not (metric == "best_epoch" and any(any(v) for v in censoring.values()))


def judge_values(
    metric: str,
    spec: Spec,
    ref: list[float],
    abl: list[float],
    paired: bool,
    ablated_level: float | None = None,
    **facts: bool,
) -> Comparison:
    """One claim-metric's statistics and its verdict as a family of its own (VERDICT_RULE), from per-seed values
    (paired: in seed order); family.adjust decides it again within the claim and within the table. `facts`: what
    the pairing found (decide's reported, reached, comparable)."""
    c = _statistics(metric, spec, ref, abl, paired, ablated_level)
    c.verdict = decide(c.delta, c.p, c.p_paper, spec.sign, **facts)
    return c


def _statistics(metric: str, spec: Spec, ref: list[float], abl: list[float], paired: bool,
                ablated_level: float | None) -> Comparison:  # fmt: skip
    x, y = compared_values(ref, abl, spec.ratio)
    size = None
    if spec.relative is not None and ablated_level is not None:
        size = spec.sign * spec.relative * abs(ablated_level)
    elif spec.least is not None:
        size = spec.sign * spec.least
    c = Comparison(metric, spec.text, list(ref), list(abl), math.nan, math.nan, math.nan, Outcome.INCONCLUSIVE,
                   spec.ratio, paired=paired, size=size)  # fmt: skip
    if len(x) == 0 or len(y) == 0:
        return c
    c.delta = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        c.note = "fewer than 2 runs per arm: no interval"
        return c
    delta, se, df, sd = test_delta(x, y, paired)
    c.se, c.df, c.sd = se, df, sd
    if se == 0:  # no spread at all: the interval is the point
        c.low = c.high = delta
        c.p = 1.0 if delta == 0 else 0.0
        c.p_paper = 0.0 if size is not None and spec.sign * delta < abs(size) else 1.0
    else:
        t = float(stats.t.ppf(1 - ALPHA / 2, df))
        c.low, c.high = delta - t * se, delta + t * se
        c.p = float(2 * stats.t.sf(abs(delta) / se, df))
        if size is not None:  # H0: sign*Δ >= |size|; small when the effect is clearly below the paper's
            c.p_paper = float(stats.t.cdf((spec.sign * delta - abs(size)) / se, df))
    if paired:
        c.p_perm = sign_flip_p(x - y)
        if size is not None:  # the same one-sided null, on the differences turned to the paper's direction
            c.p_paper_perm = sign_flip_p_below(spec.sign * (x - y), abs(size))
    c.mde = mde(se, df)
    if size is not None:
        c.seeds_needed = seeds_for(size, sd, paired)
    return c
