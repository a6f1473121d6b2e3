"""The callbacks through real runs: Fig. 1's steps to a training error, and one set of weights tested with 10
and 1 crops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alexnet.claims.curves import smoothed_crossing
from alexnet.claims.runs import load_runs, read_curves
from conftest import evaluate_in_process


def _curve(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    return [(step, value) for _, step, value in read_curves(run_dir / "metrics.csv")[metric]]


@pytest.mark.slow
def test_fig1_callback_records_the_first_step_at_the_target_and_stops(train_here) -> None:
    _, run_dir = train_here(
        "experiment=ablate_activation", "arm=relu", "callbacks.train_error_target.window=3",
        "callbacks.train_error_target.target=0.5", "trainer.max_steps=60", "data.batch_size=32",
        "trainer.log_every_n_steps=1", "callbacks.progress_bar=null",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    reached = summary["steps_to_target"]
    assert reached is not None and summary["steps"] == reached < 60  # stopped there
    curve = _curve(run_dir, "train/top1_err_running")
    assert curve[-1][1] <= 0.5 and all(v > 0.5 for _, v in curve[2:-1])  # the first full window at the target
    # the report's smoothed crossing, read off the logged curve with the callback's own window, is the callback's
    # step: metrics.csv's steps are counted alike
    logged = read_curves(run_dir / "metrics.csv")["train/top1_err_running"]
    assert smoothed_crossing(logged, 3, 3, 0.5) == reached
    per_epoch = summary["train_images"]  # batches of 32, the last one of each epoch partial
    steps_per_epoch = -(-per_epoch // 32)
    assert summary["images_to_target"] == reached // steps_per_epoch * per_epoch + reached % steps_per_epoch * 32


def test_fig1_callback_reports_a_target_never_reached(train_here) -> None:
    _, run_dir = train_here(
        "experiment=ablate_activation", "arm=tanh", "callbacks.train_error_target.target=0.001",
        "trainer.max_steps=5", "data.batch_size=32", "callbacks.progress_bar=null",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps_to_target"] is None and summary["steps"] == 5
    assert math.isinf(load_runs([run_dir])[0].metrics["steps_to_target"])  # compare counts it as never


def test_test_crops_experiment_tests_the_same_weights_both_ways(train_here, tmp_path: Path) -> None:
    # one epoch: what is compared is one set of weights tested two ways, whatever training reached
    crops = [
        "data.test_crops=10",
        "also_test_crops=[1]",
        "callbacks.train_eval_error.sample=64",
        "trainer.max_epochs=1",
        "model.width=0.125",
        "model.fc_width=64",
    ]
    _, run_dir = train_here(*crops)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["test_by_crops"]) == {"10", "1"} and summary["test"] == summary["test_by_crops"]["10"]
    assert summary["test_crops"] == 10 and set(summary["train_eval"]) == {"top1_err", "top5_err"}
    evaluate_in_process([f"run_dir={run_dir}", "test_crops=1"], tmp_path / "eval")
    centre = json.loads((tmp_path / "eval" / "eval.json").read_text())["test"]
    assert centre["test/top1_err"] == pytest.approx(summary["test_by_crops"]["1"]["test/top1_err"])
    # loggers keep both: the second test is logged under its own name, not over the first
    logged = {m: v for m, points in read_curves(run_dir / "metrics.csv").items() for *_, v in points}
    assert logged["test/top1_err"] == pytest.approx(summary["test_by_crops"]["10"]["test/top1_err"])
    assert logged["test_1crop/top1_err"] == pytest.approx(summary["test_by_crops"]["1"]["test/top1_err"])
