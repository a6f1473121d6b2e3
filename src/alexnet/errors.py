"""The project's own exceptions: what an entry point turns into one `error: ...` line instead of a traceback.

A leaf module (no Lightning, no torch), so that every other module, the data modules included, can raise them
without importing the training machinery."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; raised before any training starts."""


class DataError(RuntimeError):
    """A data set is missing, truncated or malformed; the message says which file and what to do."""


class Interrupted(RuntimeError):
    """Training was stopped from outside; the message says which checkpoint to resume from."""


class Requeued(Interrupted):
    """SLURM warned the job (a preemption or its time limit): its state is saved at a batch boundary, and the job is
    to be requeued once the run has closed its loggers (jobs.sweeps.run_job asks SLURM); the requeued job resumes
    from that checkpoint. `job`: the SLURM job to requeue; None in a data-parallel run's processes but rank 0."""

    def __init__(self, message: str, job: str | None) -> None:
        super().__init__(message)
        self.job = job
