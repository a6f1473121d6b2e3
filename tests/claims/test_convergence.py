"""Figures of merit read off the runs' curves: the strict convergence rule and its slope, the overfitting gap at
an interpolated training error, the epochs to converge, and Fig. 1's smoothed crossing and area."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from alexnet.claims import convergence
from alexnet.claims.curves import epochs_to_converge, error_area, matched_crossing, smoothed_crossing
from alexnet.claims.fig1 import chosen_settings
from alexnet.claims.runs import Run, capped, censored, run_metrics

STILL_IMPROVING = [0.30, 0.22, 0.190, 0.175, 0.162, 0.150]  # ends at its best: the old check passed it
PLATEAU = [0.30, 0.20, 0.160, 0.151, 0.150, 0.152]


def _run(seed: int, val: list[float], arm: str = "ref") -> Run:
    curves = {"val/top1_err": [(e, 10 * e, v) for e, v in enumerate(val)]}
    return Run(Path("."), {}, {"seed": seed, "epochs": len(val)}, arm, {}, curves)


def test_the_strict_rule_fails_a_still_improving_run_and_passes_a_plateau() -> None:
    rule = convergence.DEFAULT_RULE
    assert not convergence.converged(STILL_IMPROVING, rule["within"], rule["last"])  # 2.8 points over its last 3
    assert convergence.converged(PLATEAU, rule["within"], rule["last"])  # 0.2 points
    assert not convergence.converged(PLATEAU[:2], rule["within"], rule["last"])  # too few validations to say
    # the slope of the last 4 validations: clearly falling, against an interval around 0
    falling = convergence.slope(list(range(1, 7)), STILL_IMPROVING)
    flat = convergence.slope(list(range(1, 7)), PLATEAU)
    assert falling[2] < 0 < flat[2] and flat[1] < 0
    assert falling[0] == pytest.approx(np.polyfit(range(3, 7), STILL_IMPROVING[-4:], 1)[0])


def test_both_arms_are_checked_and_a_failure_in_either_is_reported() -> None:
    arms = {"lrn": [_run(1, PLATEAU, "lrn"), _run(2, PLATEAU, "lrn")],
            "no_lrn": [_run(1, PLATEAU, "no_lrn"), _run(2, STILL_IMPROVING, "no_lrn")]}  # fmt: skip
    conv = convergence.assess(arms, {})
    # the rule applies to each arm's mean curve: no_lrn's mean still falls 1.2 points over its last 3 epochs
    assert conv["arms"]["lrn"]["converged"] and not conv["arms"]["no_lrn"]["converged"]
    assert conv["arms"]["no_lrn"]["last"] == pytest.approx([0.163, 0.156, 0.151])
    assert (conv["arms"]["lrn"]["runs_converged"], conv["arms"]["no_lrn"]["runs_converged"]) == (2, 1)
    assert conv["required"] and not conv["all_converged"]
    assert [(c["arm"], c["seed"], c["converged"]) for c in conv["runs"]][-1] == ("no_lrn", 2, False)
    text = convergence.render(conv)
    assert "no_lrn: **not converged**" in text and "lrn: **converged**" in text and "| no_lrn | 2 |" in text
    assert "verdicts are **not converged**" in text
    # the claim's rule replaces the default
    assert conv["required"]  # every claim needs converged arms, whatever its budget ...
    assert not convergence.assess(arms, {"require_convergence": False})["required"]  # ... unless it says why not
    loose = convergence.assess(arms, {"convergence": {"within": 0.03, "last": 3}})
    assert loose["all_converged"] and loose["rule"] == {"within": 0.03, "last": 3}
    assert convergence.assess({"relu": [Run(Path("."), {}, {"seed": 1}, "relu", {})]}, {}) is None  # no val


def test_a_flat_arm_passes_though_one_of_its_runs_moves_by_noise() -> None:
    """The first converged sweep's seed 2 (lrn arm) at lr/100: 8.92, 8.98, 9.14 (0.22 points: outside the band
    alone); with the arm's other seeds flat, the arm's mean curve is flat and passes."""
    noisy = [0.1192, 0.0928, 0.0914, 0.0892, 0.0898, 0.0914]
    flat = [0.1108, 0.0970, 0.0946, 0.0924, 0.0934, 0.0930]
    arms = {"lrn": [_run(1, flat), _run(2, noisy), _run(3, flat)]}
    conv = convergence.assess(arms, {})
    assert conv["all_converged"] and conv["arms"]["lrn"]["runs_converged"] == 2
    assert not [c for c in conv["runs"] if c["seed"] == 2][0]["converged"]


def test_runs_that_stop_at_different_epochs_are_averaged_at_their_ends() -> None:
    """budget=until_stopped: each run stops at its own plateau. Averaged at common epochs, the short run's flat end
    sits beside the long run still descending (the first iterations sweep: a 0.51-point spread though every run was
    flat); aligned at their ends, the mean curve is each run's own plateau."""
    short = [0.30, 0.20, 0.160, 0.150, 0.150, 0.150]
    long = [0.32, 0.28, 0.25, 0.22, 0.20, 0.18, 0.165, 0.161, 0.160, 0.160]
    conv = convergence.assess({"no_dropout": [_run(1, short), _run(2, long)]}, {})
    arm = conv["arms"]["no_dropout"]
    assert conv["all_converged"] and arm["aligned_at_end"] and arm["runs_converged"] == 2
    assert arm["last"] == pytest.approx([0.1555, 0.155, 0.155])
    assert "aligned at their ends" in conv["applies_to"] and "aligned at their last validation" in convergence.render(
        conv
    )
    # at common epochs (the old mean) the same arm fails: epochs 4-6 average 0.185, 0.175, 0.165
    assert not convergence.converged([(a + b) / 2 for a, b in zip(short, long[:6], strict=True)], 0.002, 3)
    # runs of one length are averaged epoch by epoch, as before
    same = convergence.assess({"ref": [_run(1, PLATEAU), _run(2, STILL_IMPROVING)]}, {})
    assert "aligned_at_end" not in same["arms"]["ref"] and same["applies_to"].endswith("over its seeds")


def test_the_matched_gap_is_interpolated_at_the_first_crossing() -> None:
    train = {1: 0.30, 3: 0.18, 5: 0.12, 7: 0.16, 9: 0.05}  # crosses 15% between epochs 4 and 6, and again later
    val = {1: 0.32, 3: 0.24, 5: 0.21, 7: 0.25, 9: 0.22}
    epoch, val_at = matched_crossing(train, val, 0.15)
    assert epoch == pytest.approx(4 + 2 * 0.5) and val_at == pytest.approx(0.225)  # half way: 18% -> 12%
    assert matched_crossing(train, val, 0.01) is None  # never reached
    assert matched_crossing(train, val, 0.35) is None  # below it at the first check: nothing to interpolate from


def test_epochs_to_converge_is_where_the_training_error_settles_for_good() -> None:
    # every 2 epochs; within 1 point of the final 4.0% from epoch 8 on, though epoch 4 touched it once
    train = {1: 0.30, 3: 0.045, 5: 0.10, 7: 0.048, 9: 0.042, 11: 0.040}
    assert epochs_to_converge(train) == 8
    assert epochs_to_converge(train, within=0.07) == 4
    assert math.isinf(epochs_to_converge({1: 0.3, 3: 0.2, 5: 0.1}))  # still moving at its end: a bound
    curves = {"train_eval/top1_err": [(e, e, v) for e, v in train.items()],
              "val/top1_err": [(e, e, v + 0.05) for e, v in train.items()]}  # fmt: skip
    m = run_metrics({"test": {}}, None, curves, {"converge_within": 0.07})
    assert m["epochs_to_converge"] == 4
    run = Run(Path("."), {}, {"seed": 1, "epochs": 6}, "a", {"epochs_to_converge": math.inf})
    assert censored(run, "epochs_to_converge") and capped(run, "epochs_to_converge") == 6


def _logged(errors: np.ndarray, window: int, every: int) -> list[tuple[int, int, float]]:
    """The callback's curve as metrics.csv holds it: every `every` steps the mean batch error over the last
    `window` steps, at metrics.csv's step (the steps before this batch)."""
    return [(0, s - 1, float(errors[max(0, s - window) : s].mean())) for s in range(every, len(errors) + 1, every)]


def test_the_smoothed_crossing_ignores_a_lucky_stretch_and_the_area_sums_the_curve() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1, 1201)
    errors = (rng.random(1200) < 0.9 * np.exp(-steps / 300) + 0.05).astype(float)  # batch errors, 0/1 per image
    errors[150:170] = 0.0  # a lucky stretch: the callback's 20-batch mean touches 0 here
    exact = next(s for s in steps[99:] if errors[s - 100 : s].mean() <= 0.25)
    assert smoothed_crossing(_logged(errors, 1, 1), 1, 100, 0.25) == exact
    # the old crossing (the callback's 20-batch mean) falls in the lucky stretch, hundreds of steps early
    assert smoothed_crossing(_logged(errors, 20, 1), 20, 20, 0.25) <= 170 < exact - 100
    # as ablate_activation logs it (20-batch means every 5 steps): close to the exact 100-step crossing
    assert abs(smoothed_crossing(_logged(errors, 20, 5), 20, 100, 0.25) - exact) <= 15
    assert math.isinf(smoothed_crossing(_logged(errors, 1, 1), 1, 100, 0.01))
    assert error_area(_logged(errors, 1, 1), exact) == pytest.approx(errors[:exact].sum())
    assert error_area(_logged(errors, 20, 5), exact) == pytest.approx(errors[:exact].sum(), rel=0.1)


def _fig1_run(arm: str, lr: float, seed: int, errors: np.ndarray) -> Run:
    summary = {"seed": seed, "steps": len(errors), "train_error_target": 0.25, "train_error_targets": [0.25],
               "train_error_window": 1}  # fmt: skip
    curves = {"train/top1_err_running": _logged(errors, 1, 1)}
    claim = {"paper": {"smoothed_steps_to_0.2": "x6", "error_area_to_0.2": "x6"}, "smooth_steps": 50}
    return Run(Path("."), {"optimizer": {"lr": lr}}, summary, arm, run_metrics(summary, {}, curves, claim), curves)


def test_fig1_metrics_come_from_the_claims_targets_and_choose_the_rate() -> None:
    fast, slow = np.r_[np.full(100, 0.6), np.full(300, 0.1)], np.r_[np.full(250, 0.6), np.full(150, 0.1)]
    never = np.full(400, 0.5)
    run = _fig1_run("relu", 0.01, 101, fast)
    # targets: the claim's 0.2 and the callback's 0.25; the 50-step mean is at 0.2 once 40 of its steps are at 0.1
    assert run.metrics["smoothed_steps_to_0.2"] == 140 and run.metrics["smoothed_steps_to_0.25"] == 135
    assert run.metrics["error_area_to_0.2"] == pytest.approx(100 * 0.6 + 40 * 0.1)
    # a run that logs each batch's error is read from that curve, whatever its running mean's window
    summary = {**run.summary, "train_error_window": 20}
    curves = {"train/top1_err_running": _logged(fast, 20, 5), "train/top1_err_batch": _logged(fast, 1, 1)}
    assert run_metrics(summary, {}, curves, {"smooth_steps": 50})["smoothed_steps_to_0.25"] == 135
    missed = _fig1_run("relu", 0.1, 101, never)
    assert censored(missed, "error_area_to_0.2") and capped(missed, "error_area_to_0.2") == pytest.approx(200)
    assert capped(missed, "smoothed_steps_to_0.2") == 400  # the whole run: a bound
    claim = {"select_by": "optimizer.lr", "tuning_seeds": [101, 102],
             "paper": {"smoothed_steps_to_0.2": "x6", "error_area_to_0.2": "x6"}}  # fmt: skip
    runs = [_fig1_run("relu", lr, s, e) for s in (101, 102) for lr, e in ((0.01, slow), (0.03, fast), (0.1, never))]
    assert chosen_settings(runs, claim) == {"relu": 0.03}  # the fastest on the new metrics, inside the grid


def test_the_plans_rule_fails_an_arm_whose_runs_keep_improving_inside_the_band() -> None:
    # every run falls 0.05 points an epoch over its last 3 validations, with a little noise: the arm's mean moves
    # 0.1 points over them, inside the 0.2-point band, yet no run has stopped improving
    rng = np.random.default_rng(0)
    tails = [[0.0910 + 0.0005 * (2 - e) + rng.normal(0, 0.0001) for e in range(3)] for _ in range(11)]
    arm = [_run(s, [0.3, 0.2, *tail], "constant") for s, tail in enumerate(tails)]
    flat_tails = ([0.0910, 0.0915, 0.0912], [0.0912, 0.0905, 0.0910])  # runs that only move by noise
    flat = [_run(s, [0.3, 0.2, *flat_tails[s % 2]], "lrn") for s in range(11)]
    band_only = convergence.rule_of({"convergence": {"within": 0.002, "last": 3}})
    plan_rule = convergence.rule_of({"convergence": {"within": 0.002, "last": 3, "improving": "mean_run_slope"}})
    assert convergence.arm_check(arm, band_only)["converged"]  # the band alone passes it
    checked = convergence.arm_check(arm, plan_rule)
    assert checked["within_band"] and checked["improving"] and not checked["converged"]
    assert checked["run_slope"] == pytest.approx(-0.0005, abs=0.0001) and checked["run_slope_high"] < 0
    assert convergence.arm_check(flat, plan_rule)["converged"]


def test_the_plans_slope_is_the_mean_of_each_runs_own_slope_with_a_t_interval_over_runs() -> None:
    runs = [_run(s, [0.3, 0.1 + 0.01 * s, 0.1, 0.1 - 0.002 * s]) for s in range(1, 6)]
    mean, low, high = convergence.run_slopes(runs, 3)
    own = [np.polyfit([1, 2, 3], r.curves["val/top1_err"][-3:] and [v for *_, v in r.curves["val/top1_err"][-3:]], 1)[0]
           for r in runs]  # fmt: skip
    half = float(__import__("scipy").stats.t.ppf(0.975, 4)) * np.std(own, ddof=1) / math.sqrt(5)
    assert mean == pytest.approx(np.mean(own)) and (low, high) == pytest.approx((mean - half, mean + half))
