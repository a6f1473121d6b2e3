"""SLURM: the job's id, the run directory named after it, and preemption (SIGUSR1 -> checkpoint -> requeue)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L

from alexnet.errors import Requeued


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


class SlurmRequeue(L.Callback):
    """Preemption on SLURM: SIGUSR1 (`#SBATCH --signal=USR1@120`) asks for a checkpoint, written at the next batch
    boundary as Lightning's `hpc_ckpt_N.ckpt` in the run directory, then `scontrol requeue` as Lightning's SLURM
    support does, then the process stops. Lightning's own handler saves inside the signal handler, which can fall
    between a backward pass and its update; at a batch boundary the checkpoint resumes exactly. The requeued
    job finds its directory by the job id (run_id) and continues from the newest checkpoint.
    SIGTERM (a preemption, or a time limit without --signal) writes checkpoints/on_exception.ckpt through
    Lightning's OnExceptionCheckpoint and does not requeue: SLURM requeues preempted jobs itself if configured
    to, and a job cancelled with scancel must stay cancelled."""

    def __init__(self) -> None:
        self.requested = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before any loader worker starts (they inherit it: SIGUSR1 must not kill them), kept for the process's
        # life: a signal during validation or the test is answered at the next training batch, or not at all
        signal.signal(signal.SIGUSR1, self._request)

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.world_size > 1:  # every process stops at the same batch, or the checkpoint's collectives hang
            self.requested = trainer.strategy.reduce_boolean_decision(self.requested, all=False)
        if not self.requested:
            return
        path = next_hpc_checkpoint(trainer.default_root_dir)
        trainer.save_checkpoint(path)
        job = slurm_job_id() or ""
        code = subprocess.call(["scontrol", "requeue", job]) if trainer.is_global_zero else 0
        raise Requeued(f"SIGUSR1: saved {path} at step {trainer.global_step}; scontrol requeue {job} exit {code}")
