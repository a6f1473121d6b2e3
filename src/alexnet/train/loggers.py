"""Weights & Biases, offline first: a run logs to disk unless the user has configured W&B."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from alexnet.config.schema import require
from alexnet.wandb_access import has_credentials, server_reachable

log = logging.getLogger(__name__)


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE if the user set it; online with credentials and a reachable server; else offline,
    which never prompts for a key and makes no network call; `wandb sync` uploads the run later."""
    require("logger.wandb", mode=mode)
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if has_credentials() and server_reachable() else "offline"


def wandb_logger(
    save_dir: str,
    project: str = "alexnet-2012",
    mode: str = "auto",
    group: str | None = None,
    arm: str | None = None,
    seed: int | None = None,
    variant: str | None = None,
    tags: list[str] | None = None,
    **kwargs: Any,
) -> WandbLogger:
    """A WandbLogger whose run is named by arm and seed and grouped by experiment, so the W&B UI compares
    the arms of one experiment (group) with their seeds (job_type = arm, or arm-variant when an experiment
    also sweeps a setting, e.g. the learning rate of Fig. 1). Lightning creates the run on rank zero only."""
    mode = resolve_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    # the run's W&B id, kept in its directory: a resumed run (resume=RUN_DIR, a rerun sweep) continues the same
    # W&B run and its curves instead of starting another
    id_file = Path(save_dir) / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    job_type = "-".join(str(p) for p in (arm, variant) if p) or None
    name = f"{job_type}-seed{seed}" if job_type else None
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        job_type=job_type,
        tags=[*(tags or []), *([arm] if arm else [])],
        mode=mode,
        id=run_id,
        resume="allow",
        settings={"silent": True, "disable_git": True},  # our summary.json records the commit
        **kwargs,
    )


def finish_wandb(error: BaseException | None = None) -> None:
    """Close this process's W&B run. Hydra runs a multirun's jobs in one process; without this, the
    second job logs into the first job's run. With `error`, the exception that is ending the run, the W&B run is
    marked failed (exit code 1) and anything W&B raises is logged, never raised: it would replace `error`. A SLURM
    requeue or scancel sends SIGTERM to W&B's service process too, so that closing the run then fails
    (ConnectionResetError), and the sweep would report that instead of the requeue or the kill."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    if error is None:
        wandb.finish()
        return
    try:
        wandb.finish(exit_code=1)
    except Exception as e:
        log.warning(f"W&B could not close its run ({type(e).__name__}: {e}); its files so far are kept")
        # its service is gone: without this, W&B's exit hook fails again and prints a traceback after our last line
        with contextlib.suppress(Exception, SystemExit):
            wandb.teardown(exit_code=1)


class OneFileTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger, writing a run's fit and test into one event file. Lightning closes the writer
    after fit and the test's first event reopens it; tensorboardX names an event file by the second and the host
    only, so a fit shorter than a second had its file overwritten by the test's. Here the end of fit (and of the
    test) flushes the file and keeps it open."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()
