"""#30, item 7: src/compare.py on a damaged sweep. The sweep is a copy of 2 arms x 2 seeds of a committed one
(experiments/runs/ablate_towers); each test damages its own copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from faultkit import changed_files, no_traceback, snapshot, tmpfs

JOB = "ablate_towers_two_seed12"


@pytest.fixture
def sweep(sweep_copy, tmp_path) -> Path:
    return Path(shutil.copytree(sweep_copy, tmp_path / "sweep", symlinks=True))


def said(result, out: Path) -> str:
    """All that compare.py told its user: its output and the report it wrote."""
    report = out / "report.md"
    return result.output + (report.read_text() if report.is_file() else "")


def line_naming(text: str, *names: str) -> str | None:
    return next((line for line in text.splitlines() if all(n in line for n in names)), None)


def test_compare_reads_a_sweep_without_changing_it(entry, sweep, tmp_path):
    """What holds today: the undamaged copy gives a report, and compare.py changes none of the sweep's files."""
    before = snapshot(sweep)
    result = entry.run("compare.py", str(sweep), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.output[-2000:]
    assert (tmp_path / "out" / "claim.json").is_file()
    assert changed_files(before, snapshot(sweep)) == []


def test_compare_of_a_folder_without_runs_says_so(entry, tmp_path):
    """What holds today: one line naming the folder."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = entry.run("compare.py", str(empty), "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and no_traceback(result) and str(empty) in result.stderr


def damage_metrics(job: Path, how: str) -> None:
    metrics = job / "metrics.csv"
    if how == "cut short":  # e.g. a copy that stopped part-way: the last line ends inside a number
        data = metrics.read_bytes()
        metrics.write_bytes(data[: int(len(data) * 0.7)])
    else:
        metrics.unlink()


@pytest.mark.parametrize("how", ["cut short", "missing"])
def test_compare_names_a_damaged_metrics_csv(entry, sweep, tmp_path, how):
    damage_metrics(sweep / JOB, how)
    result = entry.run("compare.py", str(sweep), "--out", str(tmp_path / "out"))
    assert no_traceback(result), result.output[-2000:]
    assert line_naming(said(result, tmp_path / "out"), JOB, "metrics.csv"), (
        f"nothing compare.py said names {JOB}/metrics.csv ({how})"
    )


def test_compare_names_the_failed_jobs_of_a_sweep(entry, sweep, tmp_path):
    failed = Path(shutil.copytree(sweep / JOB, sweep / "ablate_towers_two_seed13"))
    (failed / "summary.json").unlink()
    shutil.rmtree(failed / "predictions", ignore_errors=True)
    record = {"job": 4, "overrides": ["arm=two", "seed=13", "experiment=ablate_towers"],
              "error": "FloatingPointError", "message": "non-finite training loss at step 1234"}  # fmt: skip
    (failed / "failed.json").write_text(json.dumps(record, indent=2) + "\n")
    (failed / "error.txt").write_text("FloatingPointError: non-finite training loss at step 1234\n")

    result = entry.run("compare.py", str(sweep), "--out", str(tmp_path / "out"))
    assert no_traceback(result), result.output[-2000:]
    assert line_naming(said(result, tmp_path / "out"), failed.name), "the failed job is not mentioned"


def test_compare_names_a_cut_off_summary_json(entry, sweep, tmp_path):
    summary = sweep / JOB / "summary.json"
    summary.write_bytes(summary.read_bytes()[:400])
    result = entry.run("compare.py", str(sweep), "--out", str(tmp_path / "out"))
    assert no_traceback(result), result.stderr[-2000:]
    assert line_naming(said(result, tmp_path / "out"), str(summary)), result.stderr[-2000:]


def test_compare_names_a_job_without_its_config(entry, sweep, tmp_path):
    (sweep / JOB / "config.yaml").unlink()
    result = entry.run("compare.py", str(sweep), "--out", str(tmp_path / "out"))
    assert no_traceback(result), result.stderr[-2000:]
    assert line_naming(said(result, tmp_path / "out"), JOB, "config.yaml"), result.stderr[-2000:]


def test_compare_names_two_runs_of_one_arm_and_seed(entry, sweep, tmp_path):
    twin = Path(shutil.copytree(sweep / JOB, sweep / "rerun_of_two_seed12"))
    result = entry.run("compare.py", str(sweep), "--out", str(tmp_path / "out"))
    assert no_traceback(result), result.stderr[-2000:]
    assert line_naming(said(result, tmp_path / "out"), twin.name), "the second run of arm two, seed 12 is not named"


def test_compare_in_a_read_only_directory_says_so(entry, sweep, tmp_path):
    with tmpfs(tmp_path / "read-only", size="1m", read_only=True) as here:
        result = entry.run("compare.py", str(sweep), cwd=here)
    assert result.returncode != 0
    assert no_traceback(result), result.stderr[-2000:]
    assert str(here) in result.stderr and "--out" in result.stderr, result.stderr[-2000:]
