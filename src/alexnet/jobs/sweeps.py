"""A sweep goes on past a job that fails, and says at the end which jobs failed.

Hydra's own handling does not: a job that calls `sys.exit` (SystemExit is no Exception) ends the whole sweep,
and one that raises stops the sweep at the end of its batch, before any `on_multirun_end` callback, while the
Optuna sweeper stops at the first trial that raises. So in a multirun a job's error is recorded instead, in the job's
directory (failed.json, error.txt with the traceback) and its log, and the job returns NaN (the Optuna sweeper
counts that trial as failed and goes on); `FailedJobs`, a Hydra callback (conf/hydra/default.yaml), then ends the
sweep with exit status 1 and the list of failed jobs. A single run keeps one `error: ...` line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from alexnet.errors import Interrupted, Requeued
from alexnet.jobs.slurm import requeue

log = logging.getLogger(__name__)
T = TypeVar("T")

FAILED = "failed.json"  # what failed, in the job's directory
TRACEBACK = "error.txt"


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_has_its_own_process() -> bool:
    """Whether this multirun's launcher runs each job in a process of its own that ends with the job (the submitit
    launchers: one SLURM job each), so that a kill from outside (scancel) ends that job alone, not the sweep."""
    return str(HydraConfig.get().launcher.get("_target_", "")).startswith("hydra_plugins.hydra_submitit_launcher.")


def run_job(
    task: Callable[[], T],
    expected: tuple[type[Exception], ...],
    fatal: tuple[type[Exception], ...] = (),
) -> T | float:
    """`task()`'s result. An `expected` error (a bad value, missing data) ends a single run with one line
    `error: ...` and exit status 1; in a multirun any error is recorded in the job's directory and the sweep goes on
    (NaN: no metric). A `fatal` error (the run was killed from outside) ends a sweep too, unless the job has a process
    of its own (a SLURM job of the submitit launcher): then it is recorded, and the sweep lists it at the end.
    Requeued (SLURM's warning, the state saved): see requeue_or_raise."""
    task = _requeuing(task)
    if not in_multirun():
        try:
            return task()
        except (*expected, *fatal) as e:
            sys.exit(f"error: {e}")
    out = Path(HydraConfig.get().runtime.output_dir)
    for name in (FAILED, TRACEBACK):  # an earlier failure of this job, rerun into its directory
        (out / name).unlink(missing_ok=True)
    try:
        return task()
    except fatal as e:
        record_failure(out, e, known=True)
        if not job_has_its_own_process():  # the kill was meant for the whole sweep, which runs in this process
            sys.exit(f"error: {e}")
        return float("nan")
    except Exception as e:
        record_failure(out, e, known=isinstance(e, expected))
        return float("nan")


def _requeuing(task: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        try:
            return task()
        except Requeued as e:
            sys.exit(requeue_or_raise(e))

    return run


def requeue_or_raise(error: Requeued) -> str:
    """Ask SLURM to requeue the job (rank 0 of a data-parallel run; the others only stop); the line the process
    ends with, without a result, so that the submitit launcher waits for the requeued job (a result would end the
    job for it) and a job script's requeued job starts again. If SLURM refuses (a job submitted with --no-requeue, a
    cluster without requeueing), Interrupted: the job stops as if killed, and resumes when rerun."""
    if error.job is None:
        return f"stopped for a requeue: {error}"
    requeued, said = requeue(error.job)
    if not requeued:
        raise Interrupted(f"{error}; {said}") from error
    return f"requeued: {error}. {said}"


def record_failure(out: Path, error: Exception, known: bool) -> None:
    """failed.json (the job, its overrides and the error) and error.txt (the traceback) in the job's directory, and
    one line in its log."""
    hydra = HydraConfig.get()
    record = {
        "job": hydra.job.num,
        "overrides": list(hydra.overrides.task),
        "error": type(error).__name__,
        "message": str(error),
    }
    (out / FAILED).write_text(json.dumps(record, indent=2) + "\n")
    (out / TRACEBACK).write_text("".join(traceback.format_exception(error)))
    if known:
        log.error(f"job {hydra.job.num} failed: {error}")
    else:  # a bug rather than a bad setting: the traceback belongs in the log too
        log.exception(f"job {hydra.job.num} failed: {type(error).__name__}: {error}")


def failure_line(job_dir: Path) -> str:
    record = json.loads((job_dir / FAILED).read_text())
    return f"{job_dir}: {record['error']}: {record['message']} (overrides: {' '.join(record['overrides'])})"


class FailedJobs(Callback):
    """After a multirun: exit status 1 and every failed job, or nothing if none failed. Jobs run in this process
    (the basic launcher) are counted as they end; jobs of other launchers (joblib, SLURM), whose callbacks run in
    their own processes, by what they left under the sweep directory since the sweep began: the failed.json of those
    that failed, and Hydra's record of every job that started (its `.hydra/overrides.yaml`)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.jobs = 0
        self.failed: dict[Path, str] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started, self.jobs, self.failed = time.time(), 0, {}

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self.jobs += 1
        job_dir = Path(config.hydra.runtime.output_dir)
        if (job_dir / FAILED).is_file():
            self.failed[job_dir] = failure_line(job_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        for record in sweep.rglob(FAILED):
            if record.stat().st_mtime >= self.started and record.parent not in self.failed:
                self.failed[record.parent] = failure_line(record.parent)
        if not self.failed:
            return
        jobs = max(self.jobs, self.jobs_started(sweep, config.hydra.get("output_subdir")))
        of = f" of {jobs}" if jobs >= len(self.failed) else ""
        lines = "\n".join(f"  {line}" for _, line in sorted(self.failed.items()))
        # SystemExit: Hydra turns a callback's exceptions into warnings, and the sweep would end with status 0
        sys.exit(f"error: {len(self.failed)}{of} jobs failed (each one's {FAILED} and {TRACEBACK} say more):\n{lines}")

    def jobs_started(self, sweep: Path, output_subdir: str | None) -> int:
        """The jobs whose Hydra record (written as each job starts, wherever it runs) is from this sweep."""
        if not output_subdir:  # hydra.output_subdir=null: Hydra writes no record
            return 0
        records = sweep.rglob(f"{output_subdir}/overrides.yaml")
        return sum(1 for r in records if r.stat().st_mtime >= self.started)
