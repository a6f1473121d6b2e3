"""A sweep's jobs as the reports read them (claims/runs.py), on copies of a committed sweep's jobs: each job that
cannot be used is left out by name with what to do, a folder given twice is read once, and two runs of one arm and
seed are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alexnet.claims.runs import read_sweeps

SOURCE = Path(__file__).resolve().parents[2] / "experiments" / "runs" / "ablate_towers" / "programme"
JOBS = ("ablate_towers_one_seed11", "ablate_towers_two_seed11")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    target = tmp_path / "sweep"
    for job in JOBS:
        shutil.copytree(SOURCE / job, target / job, ignore=shutil.ignore_patterns("predictions", "checkpoints"))
    return target


def test_an_undamaged_sweep_leaves_nothing_out(sweep: Path) -> None:
    read = read_sweeps([sweep])
    assert sorted(r.arm for r in read.runs) == ["one", "two"] and read.left_out == []


def test_a_metrics_csv_cut_at_the_end_of_a_line_is_found_short_by_its_epochs(sweep: Path) -> None:
    """A cut inside a line shows in its last byte; one at a line's end only in the epochs the rows reach."""
    metrics = sweep / JOBS[1] / "metrics.csv"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[: len(lines) // 2]))
    read = read_sweeps([sweep])
    (left_out,) = read.left_out
    assert [r.arm for r in read.runs] == ["one"] and left_out.file == metrics
    assert "cut short (its rows end at epoch" in str(left_out) and "left out of the analysis" in str(left_out)
    assert left_out.short().startswith(f"`{JOBS[1]}/metrics.csv`: cut short")


def test_a_failed_and_an_unfinished_job_are_named_with_what_to_do(sweep: Path) -> None:
    failed, unfinished = sweep / "ablate_towers_two_seed12", sweep / "ablate_towers_two_seed13"
    for job in (failed, unfinished):
        (job / ".hydra").mkdir(parents=True)
    (failed / "failed.json").write_text(json.dumps({"error": "FloatingPointError", "message": "non-finite loss"}))
    read = read_sweeps([sweep])
    assert len(read.runs) == 2
    why = {lo.job.name: str(lo) for lo in read.left_out}
    assert "failed (FloatingPointError: non-finite loss)" in why[failed.name] and "error.txt" in why[failed.name]
    assert "not finished (no summary.json)" in why[unfinished.name] and "resume" in why[unfinished.name]


def test_a_folder_given_twice_is_read_once_and_a_copied_job_is_refused(sweep: Path) -> None:
    assert len(read_sweeps([sweep, sweep, sweep / JOBS[0]]).runs) == 2
    shutil.copytree(sweep / JOBS[0], sweep / "copy")
    with pytest.raises(ValueError, match=r"two runs of arm 'one', seed 11: .*ablate_towers_one_seed11 and .*copy"):
        read_sweeps([sweep])
