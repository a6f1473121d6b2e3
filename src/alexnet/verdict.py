"""The verdict on one claim-metric: Δ paired by seed, its interval, p-values, the smallest effect the runs could
detect, and one of four outcomes; Holm's correction across the claim table.

Why by hand: scipy gives the t distribution and tests, but no library states "the paper's effect is excluded"
(a one-sided test against the paper's size, translated to our error level) or the seeds a claim would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

ALPHA, POWER = 0.05, 0.8
VERDICTS = ("reproduced", "opposite", "excluded", "inconclusive")

VERDICT_RULE = (
    "Δ = ablated − reference, paired by seed (the arms of a seed share initial weights, data order, crops and "
    "flips); ratios (`×R`) are compared as Δ of log values. The paper's size is translated to this data as the "
    "same relative change: Δ_paper / (the paper's error without the feature) × our ablated arm's mean. "
    "**reproduced**: a two-sided paired t-test rejects Δ = 0 and Δ has the paper's sign; **opposite**: it rejects "
    "Δ = 0 with the other sign; **excluded**: it does not, and a one-sided test rejects an effect as large as the "
    "paper's translated size (Δ in the paper's direction ≥ that size); **inconclusive**: neither, with the minimum "
    "detectable effect (MDE, 80% power at α = 0.05) and the seeds the paper's size would need. p-values are "
    "Holm-corrected across every row of the claim table (experiments/README.md) at α = 0.05; each report shows the "
    "uncorrected test too. A value that a run ended before reaching counts as the whole run (shown as ≥, a bound)."
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
    mde: float = math.nan
    seeds_needed: int | None = None  # for the paper's translated size at 80% power (None: no size, or > 10,000)
    censored: dict[str, list[bool]] = field(default_factory=dict)  # per arm, per value: a bound, not a value


def _t_quantiles(df: float) -> float:
    return float(stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df))


def seeds_for(size: float, sd: float, paired: bool) -> int | None:
    """Seeds per arm for a two-sided test at ALPHA to detect `size` with POWER, given the spread `sd` (of the
    paired differences, or of one arm)."""
    if sd == 0:
        return 2
    for n in range(2, 10_001):
        se = sd / math.sqrt(n) if paired else sd * math.sqrt(2 / n)
        if _t_quantiles(n - 1 if paired else 2 * n - 2) * se <= abs(size):
            return n
    return None


def decide(delta: float, p: float, p_paper: float, sign: float) -> str:
    if p < ALPHA:
        return "reproduced" if math.copysign(1.0, delta) == sign else "opposite"
    if p_paper < ALPHA:
        return "excluded"
    return "inconclusive"


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


def judge_values(
    metric: str, spec: Spec, ref: list[float], abl: list[float], paired: bool, ablated_level: float | None = None
) -> Comparison:
    """One claim-metric's statistics and verdict (VERDICT_RULE) from per-seed values (paired: in seed order)."""
    x, y = (np.log(abl), np.log(ref)) if spec.ratio else (np.array(abl, float), np.array(ref, float))
    size = None
    if spec.relative is not None and ablated_level is not None:
        size = spec.sign * spec.relative * abs(ablated_level)
    elif spec.least is not None:
        size = spec.sign * spec.least
    c = Comparison(metric, spec.text, list(ref), list(abl), math.nan, math.nan, math.nan, "inconclusive",
                   spec.ratio, paired=paired, size=size)  # fmt: skip
    if len(x) == 0 or len(y) == 0:
        return c
    c.delta = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        c.note = "fewer than 2 runs per arm: no interval"
        return c
    delta, se, df, sd = test_delta(x, y, paired)
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
    c.mde = _t_quantiles(df) * se
    if size is not None:
        c.seeds_needed = seeds_for(size, sd, paired)
    c.verdict = decide(delta, c.p, c.p_paper, spec.sign)
    return c


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (NaN entries are left out of the family and stay NaN)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, out, running = len(order), [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def adjust(claims: list[dict[str, Any]]) -> None:
    """Holm across every claim-metric of the table, in place: `p_holm`, `p_paper_holm` and the adjusted `verdict`
    of each comparison (the uncorrected one stays as `verdict_alone`)."""
    rows = [c for claim in claims for c in claim["comparisons"]]
    p_holm = holm([_num(c.get("p")) for c in rows])
    p_paper_holm = holm([_num(c.get("p_paper")) for c in rows])
    for c, p, pp in zip(rows, p_holm, p_paper_holm, strict=True):
        c["p_holm"], c["p_paper_holm"] = p, pp
        c.setdefault("verdict_alone", c["verdict"])
        sign = parse_spec(c["paper_spec"]).sign if "paper_spec" in c else 1.0
        c["verdict"] = decide(c["delta"], _nan_big(p), _nan_big(pp), sign)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _nan_big(p: float) -> float:  # an untested row never passes a test
    return 1.0 if math.isnan(p) else p
