"""What the entry points set up for their process, explicitly: no module of the package does any of this when it
is imported. src/*.py call name_the_run() before Hydra composes the config, and the Hydra task functions of
train.py and eval.py call quiet_known_warnings() and hide_advertisements() (they also run in a launcher's worker
processes)."""

from __future__ import annotations

import logging
import os
import warnings

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from alexnet.jobs.slurm import run_id

RUN_ID = "ALEXNET_RUN_ID"  # conf/hydra/default.yaml names the run (and sweep) directory with it


def name_the_run() -> None:
    """This process's run directory name (slurm.run_id: the time and a random suffix; under SLURM the job's id) in
    ALEXNET_RUN_ID, which conf/hydra/default.yaml reads with OmegaConf's own `oc.env`, falling back on Hydra's `now`:
    a config composed from Python (hydra.compose) resolves without any resolver of ours. One value per process: the
    directory Hydra creates and the one the run writes to are the same, and a launcher's job processes inherit it."""
    os.environ[RUN_ID] = run_id()


def name_the_experiment(cfg: DictConfig) -> None:
    """experiment_name in a Hydra task's config: conf/train.yaml reads it from Hydra's record of the choice
    (hydra.runtime.choices.experiment), which Hydra takes out of the config it hands the task; here it is read from
    HydraConfig instead, so the run's config.yaml, W&B group and tags name the experiment file the run composed. A
    name given on the command line (experiment_name=...) stays."""
    if cfg.get("experiment_name") is None and HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("experiment")
        with open_dict(cfg):
            cfg.experiment_name = choice


def quiet_known_warnings() -> None:
    """Warnings no user can act on. torch 2.13 deprecates LeafSpec, which Lightning 2.6 still builds on every step."""
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's promotions of its paid services (litlogger, litmodels), which it marks `💡 Tip:`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def hide_advertisements() -> None:
    """No third-party advertisements in a run's output. Lightning 2.6 logs them at INFO through its rank-zero
    loggers, as it builds every Trainer; the filter sits on those loggers (idempotent)."""
    for name in ("lightning.fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoAdvertisements) for f in logger.filters):
            logger.addFilter(_NoAdvertisements())
