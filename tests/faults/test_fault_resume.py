"""#30: resuming a run (src/train.py resume=RUN_DIR, or the same command again): refused attempts, failed attempts,
foreign checkpoints, two processes in one directory, moved runs, and what a resumed run logs."""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faultkit import (
    BATCHES_PER_EPOCH,
    FAST,
    LONG,
    NARROW,
    changed_files,
    copy_run,
    data_args,
    load_checkpoint,
    no_traceback,
    read_rows,
    snapshot,
    stop_mid_epoch,
)


def kept(folder: Path) -> dict[str, str]:
    """What a failed or refused attempt must leave as it was: every file but the logs, which may gain lines."""
    return {k: v for k, v in snapshot(folder).items() if not k.endswith(".log")}


# --- a refused resume -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("change", ["model.dropout=0.3", "optimizer.lr=0.01"])
def test_a_refused_resume_leaves_the_run_resumable(entry, finished_run, tmp_path, change):
    run = copy_run(finished_run[1], tmp_path / "run")
    before = kept(run)

    refused = entry.run("train.py", f"resume={run}", change)
    assert refused.returncode != 0 and change.split("=")[0] in refused.stderr, refused.output[-2000:]
    assert no_traceback(refused), refused.stderr[-2000:]
    assert changed_files(before, kept(run)) == [], "a refused resume changed the run's files"

    again = entry.run("train.py", f"resume={run}")
    assert again.returncode == 0, f"resume={run} without the change is refused now:\n{again.stderr[-1500:]}"


@pytest.mark.slow
def test_a_second_start_with_another_seed_leaves_the_run_resumable(entry, finished_run, fm_data, tmp_path):
    run = copy_run(finished_run[1], tmp_path / "run")
    before = kept(run)

    intruder = entry.run("train.py", *data_args(fm_data), *FAST, "seed=7", f"hydra.run.dir={run}")
    assert intruder.returncode != 0 and "seed" in intruder.stderr, intruder.output[-2000:]
    assert changed_files(before, kept(run)) == [], "the refused start changed the run's files"

    again = entry.run("train.py", f"resume={run}")
    assert again.returncode == 0, f"resume={run} is refused after the intruder:\n{again.stderr[-1500:]}"


@pytest.mark.slow
def test_the_record_a_process_killed_during_its_start_staged_is_cleared_by_the_next(entry, finished_run, tmp_path):
    """A SIGKILL between Hydra writing a start's record (staged beside .hydra/, train/rundir.py) and the run's
    acceptance leaves `.hydra.staged-PID/`; the next process to hold the run removes it, and only it."""
    run = copy_run(finished_run[1], tmp_path / "run")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # a pid that has ended
    stale = run / f".hydra.staged-{killed.pid}"
    before = kept(run)
    shutil.copytree(run / ".hydra", stale)

    again = entry.run("train.py", f"resume={run}")
    assert again.returncode == 0, again.output[-2000:]
    assert not stale.exists(), "the killed start's staged record is still there"
    assert changed_files(before, kept(run)) == [], "the run's own files changed"


# --- a failed resume ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_resume_that_fails_keeps_the_saved_state(entry, interrupted_run, fm_data, tmp_path):
    run = copy_run(interrupted_run[1], tmp_path / "run")
    state = run / "checkpoints" / "on_exception.ckpt"
    step = load_checkpoint(state)["global_step"]
    before = kept(run)
    empty = tmp_path / "no-data"
    empty.mkdir()

    failed = entry.run("train.py", f"resume={run}", f"data.data_dir={empty}")
    assert failed.returncode != 0 and "Fashion-MNIST not found" in failed.stderr, failed.output[-2000:]
    assert load_checkpoint(state)["global_step"] == step, "the failed resume replaced the saved state"
    assert changed_files(before, kept(run)) == [], "the failed resume changed the run's files"

    # the data is back: the run goes on from where it was stopped
    resumed = entry.run("train.py", f"resume={run}", f"data.data_dir={fm_data}")
    assert resumed.returncode == 0, resumed.output[-2000:]
    assert f"(step {step})" in resumed.output, resumed.output[-2000:]


def foreign_checkpoint(kind: str, finished_run: tuple, path: Path) -> None:
    if kind == "another run's":  # the default net's checkpoint in a narrow net's run
        path.write_bytes((finished_run[1] / "checkpoints" / "last.ckpt").read_bytes())
    else:  # weights saved by hand, no training state
        torch.save({"weights": torch.zeros(3)}, path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["another run's", "a hand-saved"])
def test_a_foreign_checkpoint_does_not_erase_the_metrics(entry, interrupted_run, finished_run, tmp_path, kind):
    run = copy_run(interrupted_run[1], tmp_path / "run")
    (run / "checkpoints" / "on_exception.ckpt").unlink()
    foreign = run / "checkpoints" / "last.ckpt"
    foreign_checkpoint(kind, finished_run, foreign)
    metrics = (run / "metrics.csv").read_bytes()

    result = entry.run("train.py", f"resume={run}")
    assert result.returncode != 0, result.output[-2000:]
    assert (run / "metrics.csv").read_bytes() == metrics, "metrics.csv lost rows to a checkpoint that did not load"
    assert no_traceback(result) and str(foreign) in result.stderr, result.stderr[-2000:]


# --- finished runs --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resuming_a_finished_run_leaves_its_record_alone(entry, finished_run, tmp_path):
    run = copy_run(finished_run[1], tmp_path / "run")
    summary = (run / "summary.json").read_bytes()

    result = entry.run("train.py", f"resume={run}")
    assert result.returncode == 0, result.output[-2000:]
    assert (run / "summary.json").read_bytes() == summary, "summary.json was rewritten"


@pytest.mark.slow
def test_a_moved_run_uses_its_own_checkpoints(entry, finished_run, tmp_path):
    """A finished run moved and resumed reads nothing at its old place and, finished, is neither retested nor
    rewritten: its summary.json is its record (a sweep rerun from another checkout skips its finished jobs the same
    way, and must not rewrite them). A moved interrupted run tests its own best.ckpt: the test below."""
    moved = tmp_path / "archive" / "run"
    moved.parent.mkdir()
    copy_run(finished_run[1], tmp_path / "run").rename(moved)
    summary = (moved / "summary.json").read_bytes()

    result = entry.run("train.py", f"resume={moved}")
    assert result.returncode == 0, result.output[-2000:]
    assert (moved / "summary.json").read_bytes() == summary, "the moved finished run was retested or rewritten"
    assert str(finished_run[1]) not in result.output, "the moved run read its old directory"


# --- two processes --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_in_the_same_directory_is_refused(entry, fm_data, tmp_path):
    run = tmp_path / "run"
    args = [*data_args(fm_data), *FAST, *NARROW, f"trainer.limit_train_batches={BATCHES_PER_EPOCH}",
            f"hydra.run.dir={run}"]  # fmt: skip
    first, second = entry.start("train.py", *args), entry.start("train.py", *args)
    results = [first.wait(), second.wait()]

    finished = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(finished) == 1 and len(refused) == 1, [r.output[-1500:] for r in results]
    message = refused[0].stderr
    assert no_traceback(refused[0]) and str(run) in message, message[-2000:]
    assert any(w in message.lower() for w in ("another", "already", "in use", "lock")), message[-2000:]
    steps = [int(r["step"]) for r in read_rows(run / "metrics.csv") if r.get("train/loss_step")]
    assert sorted(steps) == list(range(BATCHES_PER_EPOCH)), f"metrics.csv holds training steps {steps}"


# --- what a resumed run logs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, fm_data, entry):
    """The interrupted run's command, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = entry.run("train.py", *data_args(fm_data), *LONG, *NARROW, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.output[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, interrupted_run, entry):
    """The SIGTERM'd run resumed to its end."""
    run_dir = copy_run(interrupted_run[1], tmp_path_factory.mktemp("resumed") / "run")
    result = entry.run("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.output[-3000:]
    return run_dir


def logged(run_dir: Path, skip=("train/images_per_sec",)) -> dict[tuple[str, int], float]:
    """metrics.csv as {(metric, step): value}."""
    values = {}
    for row in read_rows(run_dir / "metrics.csv"):
        for key, value in row.items():
            if key not in ("epoch", "step", *skip) and value:
                values[(key, int(row["step"]))] = float(value)
    return values


EPOCH_AVERAGES = ("train/loss_epoch", "train/top1_err", "train/top5_err")


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_and_resumed_logs_what_an_uninterrupted_one_does(reference_run, resumed_run):
    """The per-step losses, every validation, the test and the interrupted epoch's averages (a mid-epoch checkpoint
    holds their running sums) of a run stopped by SIGTERM mid-epoch and resumed are those of the same run
    uninterrupted, bit for bit."""
    reference, resumed = logged(reference_run), logged(resumed_run)
    assert sorted(reference) == sorted(resumed)
    different = {k: (reference[k], resumed[k]) for k in reference if reference[k] != resumed[k]}
    assert different == {}, different


@pytest.mark.slow
def test_a_resumed_epoch_averages_every_batch_of_the_epoch(reference_run, resumed_run, interrupted_run):
    stopped_at = load_checkpoint(interrupted_run[1] / "checkpoints" / "on_exception.ckpt")["global_step"]
    reference, resumed = logged(reference_run), logged(resumed_run)
    first_epoch = [k for k in reference if k[0] in EPOCH_AVERAGES and k[1] < BATCHES_PER_EPOCH]
    assert first_epoch, "the reference logged no epoch averages"
    losses = [v for (k, step), v in resumed.items() if k == "train/loss_step" and step < BATCHES_PER_EPOCH]
    assert len(losses) == BATCHES_PER_EPOCH
    for key in first_epoch:
        assert math.isclose(resumed[key], reference[key], rel_tol=1e-6), (
            f"{key[0]} of the first epoch (stopped at step {stopped_at}): {resumed[key]} resumed, "
            f"{reference[key]} uninterrupted"
        )


def test_resume_of_a_directory_that_holds_no_run_says_so(entry, tmp_path):
    """What holds today: resume= of an empty directory stops with one line naming what is missing."""
    empty = tmp_path / "nothing"
    empty.mkdir()
    result = entry.run("train.py", f"resume={empty}")
    assert result.returncode != 0 and no_traceback(result)
    assert str(empty) in result.stderr and "overrides.yaml" in result.stderr


class Kept:
    """A run directory as a test found it (`pristine`, a copy), put back at its own path by `restore()` (a copy
    elsewhere is a moved run: test_a_moved_run_uses_its_own_checkpoints)."""

    def __init__(self, run: Path, pristine: Path) -> None:
        self.run, self.pristine = run, pristine

    def restore(self) -> Path:
        shutil.rmtree(self.run, ignore_errors=True)
        return copy_run(self.pristine, self.run)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, fm_data, entry) -> Kept:
    """The interrupted run's command killed (SIGKILL) in its second epoch: last.ckpt and best.ckpt of the first
    epoch, no on_exception.ckpt."""
    base = tmp_path_factory.mktemp("killed")
    run = base / "run"
    killed = stop_mid_epoch(entry, run, [*data_args(fm_data), *LONG, *NARROW], BATCHES_PER_EPOCH + 3, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.output[-2000:]
    assert not (run / "checkpoints" / "on_exception.ckpt").exists()
    return Kept(run, copy_run(run, base / "pristine"))


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_epoch(entry, killed_run, reference_run):
    """What holds today (#30): SIGKILL in the second epoch, then resume=: the run ends as the uninterrupted one."""
    run = killed_run.restore()
    resumed = entry.run("train.py", f"resume={run}")
    assert resumed.returncode == 0, resumed.output[-2000:]
    assert f"(step {BATCHES_PER_EPOCH})" in resumed.output
    assert logged(run) == logged(reference_run)


@pytest.mark.slow
def test_a_moved_interrupted_run_tests_its_best_epoch(entry, killed_run, reference_run, tmp_path):
    moved = copy_run(killed_run.pristine, tmp_path / "moved" / "run")
    resumed = entry.run("train.py", f"resume={moved}")
    assert resumed.returncode == 0, resumed.output[-2000:]
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    tested = {k: v for k, v in logged(moved).items() if k[0].startswith("test/")}
    assert tested == {k: v for k, v in logged(reference_run).items() if k[0].startswith("test/")}


@pytest.mark.slow
def test_a_checkpoint_cut_short_by_a_kill_is_passed_over_for_an_intact_one(entry, killed_run):
    """A kill in the middle of writing last.ckpt (Lightning copies it from a temporary file in $TMPDIR into place
    when the run directory is on another filesystem): what it leaves, made by cutting the file."""
    run = killed_run.restore()
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    step = load_checkpoint(best)["global_step"]

    result = entry.run("train.py", f"resume={run}")
    assert "start it again" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 0, result.output[-2000:]
    assert f"(step {step})" in result.output
