"""SLURM: the job's id, the run directory named after it, and the preemption warning (SIGUSR1 or SIGUSR2 ->
checkpoint at a batch boundary -> requeue). Only the standard library: src/train.py listens for the warning
before it imports torch, Lightning or Hydra, so that a warning during the imports, the data set-up or the
checkpoint load is kept for the first training batch instead of killing the job (a signal's default action).

One story for every way a run meets SLURM (docs/slurm.md): the run listens for both user signals from its first
line, so it answers the launcher as shipped (submitit asks SLURM for `--signal=USR2@signal_delay_s`), a job script's
`#SBATCH --signal=USR2@120` (or USR1, Lightning's and older scripts' choice) and `scancel --signal=...`. Once the
task function runs, this handler replaces submitit's own (which would requeue, or raise UncompletedJobError
with `max_num_timeout: 0`, from inside the signal handler, mid-step): one requeue, ours, at a batch boundary
(jobs/requeue.py writes the checkpoint; jobs/sweeps.py asks for the requeue once W&B and the loggers are closed)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

# the signals that mean "the job will be stopped soon: checkpoint and requeue"
PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

_warned: list[str] = []  # the warnings heard in this process, by signal name (a list: the handler only appends)


def slurm_job_id() -> str | None:
    """This SLURM batch job's id as `scontrol requeue` takes it (<array job>_<task> in an array); None outside one
    (or in an interactive allocation, which Lightning does not treat as SLURM either)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else job


def run_id() -> str:
    """A run directory's name: the start time and a random suffix, so two runs started in the same second get two
    directories; under SLURM the job's id, so that a requeued job finds its own directory and checkpoints."""
    job = slurm_job_id()
    return f"slurm-{job}" if job else time.strftime("%Y-%m-%d_%H-%M-%S_") + secrets.token_hex(3)


def next_hpc_checkpoint(folder: str | Path) -> Path:
    """`hpc_ckpt_<N+1>.ckpt` after the highest N in `folder`: the name Lightning's own SLURM handler gives its
    checkpoints (checkpoints.CHECKPOINT_GLOBS finds them). Lightning builds it in a private method
    (`_CheckpointConnector.hpc_save_path`) with no public equivalent, so the few lines are ours."""
    numbers = [
        int(m.group(1))
        for p in Path(folder).glob("hpc_ckpt_*.ckpt")
        if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))
    ]
    return Path(folder) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def _hear(signum: int, frame: Any) -> None:
    # a signal handler only notes the warning: the checkpoint is written at the next batch boundary, where it
    # resumes exactly (a save inside the handler could fall between a backward pass and its update)
    _warned.append(signal.Signals(signum).name)


def listen_for_preemption() -> bool:
    """Under SLURM, keep SIGUSR1 and SIGUSR2 as a preemption warning for the run (preemption_warning) instead of
    letting them end the process, replacing any earlier handler (submitit's); outside SLURM leave them alone.
    Idempotent; returns whether it listens. Loader workers forked later inherit the handler, so that the signal,
    which SLURM sends to every process of the step, does not kill them either."""
    if slurm_job_id() is None:
        return False
    for signum in PREEMPTION_SIGNALS:
        signal.signal(signum, _hear)
    return True


def preemption_warning() -> str | None:
    """The first preemption signal this process has heard (e.g. 'SIGUSR2'), or None."""
    return _warned[0] if _warned else None


def requeue(job: str) -> tuple[bool, str]:
    """`scontrol requeue JOB`: whether SLURM took it, and a sentence saying so. SLURM answers a requeue by sending
    SIGTERM to the job's processes, this one included: from here on this process ignores SIGTERM, so that it ends in
    its own words, its state saved and its loggers closed, instead of being killed while it says them."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"scontrol requeue {job} failed ({e})"
    if done.returncode != 0:
        return False, f"scontrol requeue {job} failed (exit {done.returncode}: {done.stderr.strip()})"
    return True, f"SLURM job {job} requeued"
