"""judge.compare: the verdict rule on per-seed values, pairing by seed, ratios and misses, and the choice of
Fig. 1's rate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alexnet.claims.judge import claim_json, compare
from alexnet.claims.runs import Run
from alexnet.claims.verdict import VERDICTS


def _runs(arm: str, values: list[float], metric: str = "test/top1_err") -> list[Run]:
    return [Run(Path("."), {}, {"seed": i, "steps": 1000}, arm, {metric: v}) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    "paper, ref, abl, verdict",
    [
        # the paper: +1.4 points at 40.7% -> 3.3% of our ablated arm's error (~0.8 points at 23%)
        ({"delta": 0.014, "base": 0.407}, [0.20, 0.21, 0.205], [0.23, 0.24, 0.236], "reproduced"),
        ({"delta": 0.014, "base": 0.407}, [0.23, 0.24, 0.236], [0.20, 0.21, 0.205], "opposite"),
        # a tight interval around 0 that rules out the paper's size
        ({"delta": 0.014, "base": 0.407}, [0.20, 0.21, 0.22, 0.23], [0.2001, 0.2099, 0.2202, 0.2298], "excluded"),
        # a wide one that rules out neither
        ({"delta": 0.014, "base": 0.407}, [0.20, 0.24, 0.22], [0.21, 0.23, 0.235], "inconclusive"),
        ("+", [0.20, 0.21, 0.205], [0.23, 0.24, 0.236], "reproduced"),
        ("-", [0.20, 0.21, 0.205], [0.23, 0.24, 0.236], "opposite"),
        ("+", [0.20, 0.21, 0.22, 0.23], [0.2001, 0.2099, 0.2202, 0.2298], "inconclusive"),  # no size to exclude
        ({"direction": "+", "least": 0.01}, [0.20, 0.21, 0.22, 0.23], [0.2001, 0.2099, 0.2202, 0.2298], "excluded"),
        ({"delta": 0.014, "base": 0.407}, [0.20], [0.25], "inconclusive"),  # one run per arm: no interval
    ],
)
def test_the_verdict_rule(paper, ref, abl, verdict: str) -> None:
    c = compare("test/top1_err", paper, _runs("a", ref), _runs("b", abl))
    assert c.verdict == verdict
    assert c.delta == pytest.approx(sum(abl) / len(abl) - sum(ref) / len(ref))
    if verdict == "inconclusive" and len(ref) > 1:
        assert c.mde > abs(c.delta)  # what the runs could have seen, reported with the verdict


def test_paired_comparison_pairs_seeds() -> None:
    # a large seed-to-seed spread but a consistent within-seed difference: only pairing sees it
    ref, abl = [0.10, 0.20, 0.30], [0.11, 0.21, 0.31]
    assert compare("test/top1_err", 0.02, _runs("a", ref), _runs("b", abl), paired=True).verdict == "reproduced"
    assert compare("test/top1_err", 0.02, _runs("a", ref), _runs("b", abl), paired=False).verdict == "inconclusive"


def test_ratio_claims_compare_logs_and_count_a_miss_as_the_whole_run() -> None:
    ref = _runs("relu", [100, 110, 90], "steps_to_target")
    abl = _runs("tanh", [600, 650, float("inf")], "steps_to_target")  # the last never reached the target
    c = compare("steps_to_target", "x6", ref, abl, paired=False)
    assert c.verdict == "reproduced" and c.ablated == [600, 650, 1000]  # censored at the run's 1000 steps
    log_mean = lambda xs: sum(map(math.log, xs)) / len(xs)  # noqa: E731
    assert c.delta == pytest.approx(log_mean([600, 650, 1000]) - log_mean([100, 110, 90]))


def test_pairs_where_neither_run_reached_the_target_are_no_evidence() -> None:
    # both nets still above the target when their runs ended: each value is a bound, their ratio bounds nothing
    inf = float("inf")
    ref, abl = _runs("relu", [inf, 900, inf], "steps_to_target"), _runs("tanh", [inf, inf, inf], "steps_to_target")
    c = compare("steps_to_target", "x6", ref, abl)
    assert c.unreached == [0, 2] and c.reference == [900] and c.ablated == [1000]  # seed 1's pair kept, a bound
    assert "2 pairs where neither run reached it left out" in c.note
    nothing = compare("steps_to_target", "x6", _runs("relu", [inf, inf], "steps_to_target"),
                      _runs("tanh", [inf, inf], "steps_to_target"))  # fmt: skip
    assert nothing.verdict == "not reached" and nothing.reference == [] and math.isnan(nothing.p)
    # and so it stays in the table's family, which it does not enter (no p-value), beside a row that is tested
    tested = compare("test/top1_err", {"delta": 0.014, "base": 0.407}, _runs("a", [0.10, 0.20, 0.30]),
                     _runs("b", [0.11, 0.21, 0.31]))  # fmt: skip
    claim = claim_json("ablate_activation", {"text": "", "reference": "relu", "ablated": "tanh"}, [nothing, tested])
    rows = {r["metric"]: r for r in claim["comparisons"]}
    assert rows["steps_to_target"]["verdict"] == "not reached" and rows["test/top1_err"]["family_size"] == 2
    assert "not reached" in VERDICTS


def test_best_epoch_at_the_last_epoch_is_no_verdict() -> None:
    # val error still falling when the runs stopped: their best epoch is a lower bound, not a value
    ref = [Run(Path("."), {}, {"seed": i, "epochs": 8}, "dropout", {"best_epoch": 8}) for i in range(3)]
    abl = [
        Run(Path("."), {}, {"seed": i, "epochs": 8}, "no_dropout", {"best_epoch": e}) for i, e in enumerate((3, 4, 3))
    ]
    c = compare("best_epoch", "x0.5", ref, abl, paired=False)
    assert c.verdict == "inconclusive" and c.note.startswith("3 of 6 runs still improving")


def test_the_fastest_setting_is_picked_by_fewest_misses_first() -> None:
    from alexnet.claims.fig1 import select_setting

    def run(lr: float, steps: float) -> Run:
        cfg = {"optimizer": {"lr": lr}}
        return Run(Path("."), cfg, {"seed": 0, "steps": 600}, "tanh", {"steps_to_target": steps})

    runs = [run(0.1, 50), run(0.1, math.inf), run(0.01, 300), run(0.01, 320)]  # fast once, but a miss
    assert {r.setting("optimizer.lr") for r in select_setting(runs, "tanh", "optimizer.lr", "steps_to_target")} == {
        0.01
    }
