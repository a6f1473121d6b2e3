"""The training side of SLURM's preemption warning: at the first batch boundary after the warning (jobs/slurm.py hears
it, from the process's first line) the run writes `hpc_ckpt_N.ckpt` and stops with Requeued; jobs/sweeps.run_job
asks SLURM for the requeue once the loggers are closed, and the requeued job resumes in the same directory."""

from __future__ import annotations

from typing import Any

import lightning as L

from alexnet.errors import Requeued
from alexnet.jobs.slurm import next_hpc_checkpoint, preemption_warning, slurm_job_id


class SlurmRequeue(L.Callback):
    """Checkpoint and stop at the batch boundary after SLURM's warning (SIGUSR1 or SIGUSR2), as Lightning's
    `hpc_ckpt_N.ckpt` in the run directory. Lightning's own SLURM handler saves inside the signal handler, which
    can fall between a backward pass and its update; at a batch boundary the checkpoint resumes exactly. A warning
    heard before training (imports, data set-up, checkpoint load) is answered at the first batch; one heard during
    validation or the test at the next training batch, or not at all (the run then finishes).
    SIGTERM (a preemption without warning, scancel, a time limit without --signal) is not this callback's: it writes
    checkpoints/on_exception.ckpt through Lightning's OnExceptionCheckpoint and does not requeue, so that a job
    cancelled with scancel stays cancelled."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        warned = preemption_warning() is not None
        if trainer.world_size > 1:  # every process stops at the same batch, or the checkpoint's collectives hang
            warned = trainer.strategy.reduce_boolean_decision(warned, all=False)
        if not warned:
            return
        path = next_hpc_checkpoint(trainer.default_root_dir)
        trainer.save_checkpoint(path)
        heard = preemption_warning() or "another process's preemption signal"
        job = slurm_job_id() if trainer.is_global_zero else None  # one requeue for the job, from rank 0
        raise Requeued(f"{heard}: saved {path} at step {trainer.global_step}", job)
