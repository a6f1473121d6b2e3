"""The decisive-claims protocol: what the runs record (fixed-epoch schedule, eval-mode training error every epoch,
each test view, Fig. 1 at several targets, a diverging rate) through real training runs
(alexnet.train.pipeline.train, what
src/train.py runs), and the statistics
of the verdict (Holm, seeds needed, gaps at a matched training error, rates chosen on tuning seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from alexnet.claims.family import adjust, holm
from alexnet.claims.fig1 import chosen_settings, select_runs
from alexnet.claims.run_tables import grid_table
from alexnet.claims.runs import Run, load_runs, read_curves, run_metrics, stops_at
from alexnet.claims.verdict import judge_values, parse_spec, seeds_for
from alexnet.train.pipeline import ConfigError


def _by_epoch(run_dir: Path, metric: str) -> dict[int, float]:
    return {e: v for e, _, v in read_curves(run_dir / "metrics.csv")[metric]}


@pytest.mark.slow
def test_a_converged_budget_run_records_what_the_verdict_needs(train_here) -> None:
    _, run_dir = train_here(
        "experiment=ablate_lrn", "arm=lrn", "debug=fast", "trainer.max_epochs=3", "scheduler.milestones=[1,2]",
        "callbacks.train_eval_error.sample=64", "data.train_subset=300",
        "trainer.limit_train_batches=null",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    # the rate ÷10 after epochs 1 and 2, whatever validation did, and the report can say when
    assert summary["lr_reduction_epochs"] == [1, 2] and summary["lr_reductions"] == 2
    lr = read_curves(run_dir / "metrics.csv")["lr"]
    assert {e: v for e, _, v in lr} == pytest.approx({0: 0.02, 1: 0.002, 2: 0.0002})
    # the eval-mode training error every epoch, of the weights of that epoch: at the best epoch, those the test and
    # summary's train_eval use (the same 64 images)
    per_epoch = _by_epoch(run_dir, "train_eval/top1_err")
    assert sorted(per_epoch) == [0, 1, 2]
    assert per_epoch[summary["best_epoch"]] == pytest.approx(summary["train_eval"]["top1_err"])
    assert set(_by_epoch(run_dir, "train_eval/loss")) == {0, 1, 2}
    # every view of the 10-crop test alone: the centre view is the centre-crop test of the same weights
    ten, one = summary["test_by_crops"]["10"], summary["test_by_crops"]["1"]
    assert ten["test/view4_top1_err"] == pytest.approx(one["test/top1_err"])
    assert {f"test/view{i}_top1_err" for i in range(10)} <= set(ten) and "test/centre_mirror_top1_err" in ten
    assert "test/loss" in one  # the stand-in for top-5 on 10 classes


@pytest.mark.slow
def test_the_overfit_budget_warms_up_step_by_step_and_a_resumed_run_continues_the_ramp(train_here, tmp_path) -> None:
    # 2 steps an epoch (200 images, batch 128), 2 warm-up epochs = 4 steps rising to lr 0.02, ÷10 after epoch 3
    common = ["experiment=ablate_dropout", "arm=no_dropout", "debug=fast", "scheduler.warmup_epochs=2",
              "scheduler.milestones=[3]", "data.train_subset=200", "trainer.check_val_every_n_epoch=1",
              "callbacks.train_eval_error.sample=32", "test=false"]  # fmt: skip
    _, run_dir = train_here(*common, "trainer.max_epochs=4")
    lrs = [v for _, _, v in read_curves(run_dir / "metrics.csv")["lr"]]
    assert lrs == pytest.approx([0.02 * k / 4 for k in range(1, 5)] + [0.02] * 2 + [0.002] * 2)
    # stopped inside the warm-up and resumed from its checkpoint: the ramp goes on from the step it reached
    first = tmp_path / "first"
    train_here(*common, "trainer.max_epochs=1", run_dir=first)
    resumed = tmp_path / "resumed"
    train_here(*common, "trainer.max_epochs=4", f"ckpt_path={first}/checkpoints/last.ckpt", run_dir=resumed)
    assert [v for _, _, v in read_curves(resumed / "metrics.csv")["lr"]] == pytest.approx(lrs[2:])
    # a warm-up longer than the first milestone is refused before anything runs
    with pytest.raises(ConfigError, match="warmup_epochs"):
        train_here(*common, "scheduler.warmup_epochs=4", run_dir=tmp_path / "refused")
    assert not (tmp_path / "refused" / "checkpoints").exists()


@pytest.mark.slow
def test_the_plateau_schedule_waits_out_the_warm_up_and_its_stop_is_the_iterations_metric(train_here) -> None:
    # a threshold no epoch can meet: with patience 0 every counted validation after the first is a plateau
    _, run_dir = train_here(
        "experiment=ablate_dropout_iterations", "arm=no_dropout", "debug=fast", "scheduler.warmup_epochs=2",
        "scheduler.patience=0", "scheduler.threshold=10", "data.train_subset=200", "trainer.check_val_every_n_epoch=1",
        "trainer.max_epochs=20", "callbacks.train_eval_error.sample=32", "data.test_crops=1",
        # the "best" checkpoint, which the test restores with every callback's state, is the worst epoch: an early
        # one, before the last cut; the summary must still give the cuts of the whole run
        "callbacks.model_checkpoint.mode=max",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    lrs = [v for _, _, v in read_curves(run_dir / "metrics.csv")["lr"]]
    assert lrs[:4] == pytest.approx([0.02 * k / 4 for k in range(1, 5)])  # 2 steps an epoch, 2 warm-up epochs
    # (even the first counted validation fails it). The warm-up's validations neither cut nor count: the cuts come
    # after epochs 3, 4 and 5 and the stop after 6 (counted from epoch 1: cuts after 1, 2 and 3, the stop after 4)
    tested = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["epoch"]
    assert tested < 4  # (0-based) the tested checkpoint's schedule had not made all its cuts
    assert summary["lr_reduction_epochs"] == [3, 4, 5] and summary["epochs"] == 6
    assert run_metrics(summary, claim={}, max_epochs=20)["epochs_to_stop"] == 6
    assert math.isinf(run_metrics(summary, claim={}, max_epochs=6)["epochs_to_stop"])  # stopped by the cap: a bound
    # what a report reads: the cap of a run whose schedule stops it; a fixed schedule's runs get no such metric
    (run,) = load_runs([run_dir.parent])
    assert stops_at(run.cfg) == 20 and run.metrics["epochs_to_stop"] == 6
    assert stops_at({**run.cfg, "scheduler": {"_target_": "alexnet.train.optim.MilestoneSchedule"}}) is None
    assert "epochs_to_stop" not in run_metrics(summary, claim={})


def test_fig1_records_every_target_and_stops_at_the_last(train_here) -> None:
    _, run_dir = train_here(
        "experiment=ablate_activation", "arm=relu", "optimizer.lr=0.01", "callbacks.train_error_target.window=2",
        "callbacks.train_error_target.target=[0.95,0.9]", "trainer.max_epochs=3", "data.batch_size=32",
        "trainer.log_every_n_steps=1", "callbacks.progress_bar=null", "logger=csv",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    reached = summary["to_targets"]
    assert set(reached) == {"0.95", "0.9"} and summary["steps_to_target"] == reached["0.95"][0]
    if reached["0.9"] is not None:  # stopped at the last target reached
        assert reached["0.95"][0] <= reached["0.9"][0] == summary["steps"]
    metrics = run_metrics(summary)
    assert metrics["steps_to_0.95"] == reached["0.95"][0]


def test_a_diverging_rate_ends_its_run_and_is_recorded(train_here) -> None:
    # a grid's diverged rate is a result, not a crash: train returns
    _, run_dir = train_here(
        "experiment=ablate_activation", "arm=relu", "optimizer.lr=1000", "trainer.max_epochs=1",
        "callbacks.progress_bar=null", "logger=csv",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["diverged_at_step"] is not None and summary["steps_to_target"] is None
    assert summary["steps"] <= summary["diverged_at_step"] + 1  # it stopped there


# --- statistics ---------------------------------------------------------------------------------------------------


def test_holm_adjusts_step_down_and_keeps_the_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, math.nan, 0.5]) == pytest.approx([0.02, math.nan, 0.5], nan_ok=True)
    assert holm([0.3, 0.9]) == pytest.approx([0.6, 0.9])


def test_holm_across_the_table_can_undo_a_verdict() -> None:
    spec = {"delta": 0.014, "base": 0.407}
    row = judge_values("test/top1_err", parse_spec(spec), [0.20, 0.21, 0.22], [0.206, 0.222, 0.227], True, 0.218)
    assert row.verdict == "reproduced" and 0.01 < row.p < 0.05 and row.p_paper > row.p  # alone
    claims = [{"comparisons": [{**row.__dict__, "paper_spec": spec}]}]
    other = {"metric": "overfit_gap", "delta": 0.0, "p": 0.5, "p_paper": math.nan, "verdict": "inconclusive",
             "reference": [0.2, 0.3], "ablated": [0.2, 0.3], "ratio": False, "size": None}  # fmt: skip
    claims += [{"comparisons": [dict(other)]} for _ in range(4)]
    adjust(claims)
    adjusted = claims[0]["comparisons"][0]
    assert adjusted["verdict"] != "reproduced"
    # one family: the row's own two tests and the four others' p (their NaN p_paper left out)
    assert adjusted["family_size"] == 6 and adjusted["p_holm"] == pytest.approx(min(1.0, 6 * row.p))


def test_seeds_needed_reach_the_size_and_grow_with_the_spread() -> None:
    n = seeds_for(0.0045, 0.0039, paired=True)  # the pilot: 0.45 points against a 0.39-point spread
    assert 6 <= n <= 12
    assert seeds_for(0.0045, 0.0078, paired=True) > n and seeds_for(0.0045, 0.0039, paired=False) > n
    values = [0.2 + 0.0039 * z for z in (-1.2, -0.6, 0.0, 0.6, 1.2)]
    c = judge_values("test/top1_err", parse_spec({"delta": 0.014, "base": 0.407}), values[:4], values[1:], True, 0.2)
    assert c.mde > 0 and c.seeds_needed is not None


def test_overfitting_gaps_and_epochs_to_a_training_error_come_from_the_same_weights() -> None:
    curves = {  # (epoch, step, value): validation and eval-mode training error every 2 epochs
        "val/top1_err": [(1, 10, 0.30), (3, 20, 0.22), (5, 30, 0.20), (7, 40, 0.21)],
        "train_eval/top1_err": [(1, 10, 0.28), (3, 20, 0.15), (5, 30, 0.08), (7, 40, 0.02)],
    }
    m = run_metrics({"test": {"test/top1_err": 0.2}}, None, curves, {"match_train_err": 0.1})
    assert m["overfit_gap"] == pytest.approx(0.21 - 0.02)  # the last epoch's weights
    # 10% is crossed 5/7 of the way from epoch 4 (15%) to epoch 6 (8%): validation 22% -> 20% there
    assert m["matched_epoch"] == pytest.approx(4 + 2 * 5 / 7)
    assert m["overfit_gap_matched"] == pytest.approx(0.22 - 0.02 * 5 / 7 - 0.10)
    assert m["epochs_to_train_err"] == 6  # the first check at or below it, kept as a reported figure
    never = run_metrics({"test": {}}, None, curves, {"match_train_err": 0.01})
    assert never["overfit_gap_matched"] is None and math.isinf(never["epochs_to_train_err"])  # a bound


def _fig1_run(arm: str, lr: float, seed: int, steps: float) -> Run:
    cfg = {"optimizer": {"lr": lr}}
    return Run(Path("."), cfg, {"seed": seed, "steps": 2000}, arm, {"steps_to_target": steps})


def test_fig1_rates_are_chosen_on_the_tuning_seeds_and_compared_on_others() -> None:
    claim = {"select_by": "optimizer.lr", "tuning_seeds": [101, 102], "paper": {"steps_to_target": "x6"}}
    runs = [_fig1_run("relu", lr, s, steps) for s in (101, 102) for lr, steps in ((0.01, 400), (0.03, 200), (0.1, 300))]
    runs += [_fig1_run("relu", 0.03, s, 250) for s in (1, 2, 3)]
    runs += [_fig1_run("relu", 0.01, s, 100) for s in (1, 2, 3)]  # fast on the compared seeds: must not count
    assert chosen_settings(runs, claim) == {"relu": 0.03}  # inside the grid
    compared = select_runs(runs, claim, "relu")
    assert {r.seed for r in compared} == {1, 2, 3} and {r.setting("optimizer.lr") for r in compared} == {0.03}
    edge = [_fig1_run("tanh", lr, s, 1000 * lr) for s in (101, 102) for lr in (0.01, 0.03, 0.1)]
    assert chosen_settings(edge, claim) == {"tanh": 0.01, "tanh_at_grid_edge": True}


def test_fig1_report_shows_every_rate_of_the_grid_and_an_arm_that_reached_nothing() -> None:
    claim = {"select_by": "optimizer.lr", "tuning_seeds": [101, 102], "paper": {"steps_to_target": "x6"}}
    grid = [(0.01, 400), (0.03, 200), (0.1, 300)]
    runs = [_fig1_run("relu", lr, s, steps) for s in (101, 102) for lr, steps in grid]
    runs += [_fig1_run("tanh", lr, s, math.inf) for s in (101, 102) for lr, _ in grid]  # at chance at every rate
    runs += [_fig1_run("relu", 0.01, 1, 100)]  # a compared seed: not part of the grid
    table = grid_table(runs, claim)
    rows = [line for line in table.splitlines() if line.startswith(("| relu", "| tanh"))]
    assert [r.split(" | ")[0] for r in rows] == [
        "| relu lr=0.01", "| relu lr=0.03 (chosen)", "| relu lr=0.1",
        "| tanh lr=0.01 (chosen)", "| tanh lr=0.03", "| tanh lr=0.1",
    ]  # fmt: skip
    assert rows[1].split(" | ")[1:3] == ["2", "200.00 ± 0.00"]  # the tuning seeds only
    assert all("≥ 2000.00" in r for r in rows[3:])  # bounds, never values
    assert "tanh reached no target" in table and "relu reached no target" not in table
    # what programme.sh reads: a warning for the arm, not a silent rate to run the comparison at
    assert chosen_settings(runs, claim) == {"relu": 0.03, "tanh": 0.01, "tanh_reached_nothing": True}


def test_a_run_records_its_code_as_dirty_for_code_changes_not_for_claim_reports(tmp_path: Path) -> None:
    import subprocess

    from alexnet.record import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "experiments").mkdir()
    (tmp_path / "src" / "net.py").write_text("a = 1\n")
    (tmp_path / "experiments" / "report.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "experiments" / "report.md").write_text("rewritten by the programme between claims\n")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "src" / "net.py").write_text("a = 2\n")
    assert git_commit(tmp_path)["dirty"] is True
