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


class Requeued(RuntimeError):
    """The job saved its state and asked SLURM to requeue it; the requeued job resumes from that checkpoint."""
