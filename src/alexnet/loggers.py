"""Weights & Biases, offline first: a run logs to disk unless the user has configured W&B."""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

MODES = ("auto", "online", "offline", "disabled")


def has_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE if the user set it, online with credentials, else offline, which never prompts
    for a key and never touches the network; `wandb sync` uploads the run later."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: allowed {', '.join(MODES)}")
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")


def wandb_logger(
    save_dir: str,
    project: str = "alexnet-2012",
    mode: str = "auto",
    group: str | None = None,
    arm: str | None = None,
    seed: int | None = None,
    tags: list[str] | None = None,
    **kwargs: Any,
) -> WandbLogger:
    """A WandbLogger whose run is named by arm and seed and grouped by experiment, so the W&B UI compares
    the arms of one experiment (group) with their seeds (job_type = arm). Lightning creates the run on
    rank zero only."""
    mode = resolve_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    name = f"{arm}-seed{seed}" if arm else None
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        job_type=arm,
        tags=[*(tags or []), *([arm] if arm else [])],
        mode=mode,
        settings={"silent": True, "disable_git": True},  # our summary.json records the commit
        **kwargs,
    )


def finish_wandb() -> None:
    """Close this process's W&B run. Hydra runs a multirun's jobs in one process; without this, the
    second job logs into the first job's run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
