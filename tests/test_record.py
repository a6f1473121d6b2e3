"""summary.json through the real Trainer: the record of a run, and its final validation when the tested (best)
checkpoint is not the last epoch's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet.claims.runs import by_epoch, read_curves
from alexnet.record import RunRecord
from alexnet.train.pipeline import train


def test_final_val_is_the_last_validation_when_the_best_checkpoint_is_earlier(train_cfg, tmp_path: Path) -> None:
    # mode=max keeps the epoch of the highest validation error as best.ckpt: the first one, as the net learns.
    # Testing it loads that checkpoint, whose validation history ends at that epoch.
    summary = train(train_cfg("trainer.max_epochs=3", "callbacks.model_checkpoint.mode=max"))
    best = torch.load(summary["checkpoints"]["best"], map_location="cpu", weights_only=True)
    assert best["epoch"] < summary["epochs"] - 1  # the premise: the tested checkpoint is not the last epoch's
    val = by_epoch(read_curves(tmp_path / "run" / "metrics.csv"), "val/top1_err")
    assert sorted(val) == [0, 1, 2]
    assert summary["final_val"]["val/top1_err"] == pytest.approx(val[2])
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["final_val"] == summary["final_val"] and written["best_val"]["val/top1_err"] == min(val.values())


def test_a_summary_reads_back_as_written(train_cfg, tmp_path: Path) -> None:
    summary = train(train_cfg())
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk == summary and RunRecord.read(tmp_path / "run" / "summary.json").to_json() == on_disk
    assert {"run_dir", "git", "final_val", "test_by_crops", "wall_seconds"} <= set(on_disk)
    old = {"seed": 3, "test": {"test/top1_err": 0.5}}  # an older summary lacks most keys: they read as empty
    record = RunRecord.from_json(old)
    assert record.seed == 3 and record.choices is None and record.final_val == {} and record.extra == {}


def test_final_val_through_the_command_line(fmnist_dir: Path, tmp_path: Path, run_cli) -> None:
    """The same through `python src/train.py` (issue #22's report: 0.875 in summary.json where metrics.csv's last
    validation said 0.9043)."""
    from conftest import data_overrides

    run = tmp_path / "cli"
    proc = run_cli("train.py", *data_overrides(fmnist_dir), "debug=fast", "trainer.max_epochs=3",
                   "callbacks.model_checkpoint.mode=max", f"hydra.run.dir={run}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    val = by_epoch(read_curves(run / "metrics.csv"), "val/top1_err")
    best = torch.load(summary["checkpoints"]["best"], map_location="cpu", weights_only=True)
    assert best["epoch"] < max(val) and val[best["epoch"]] != val[max(val)]  # the premise: an earlier, other best
    assert summary["final_val"]["val/top1_err"] == pytest.approx(val[max(val)])
