"""Train AlexNet: python src/train.py [experiment=NAME] [group=option ...] [key=value ...]
Resume an interrupted run where it stopped: python src/train.py resume=RUN_DIR"""

import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.jobs.slurm import listen_for_preemption  # noqa: E402  (the standard library only)

# under SLURM, before the seconds of imports below: a preemption warning (SIGUSR1/2) is kept for the first batch
listen_for_preemption()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from alexnet.config.command_line import command_line_problems  # noqa: E402
from alexnet.config.schema import removed_overrides  # noqa: E402
from alexnet.errors import ConfigError, DataError, Interrupted  # noqa: E402  (python src/train.py finds the package)
from alexnet.jobs.runtime import hide_advertisements, name_the_experiment, name_the_run, quiet_known_warnings  # noqa: E402
from alexnet.jobs.sweeps import run_job  # noqa: E402
from alexnet.train.console import apply_extras  # noqa: E402
from alexnet.train.pipeline import train  # noqa: E402
from alexnet.train.resume import resume_argv  # noqa: E402
from alexnet.train.rundir import staging_subdir  # noqa: E402

log = logging.getLogger(__name__)
SUMMARY_METRICS = ("best_val", "test", "train_eval")  # where summary.json keeps a run's metrics, by name


def optimized_value(summary: dict[str, Any], metric: str | None) -> float | None:
    """The value of `optimized_metric` (what a Hydra sweeper, e.g. hparams_search=..., minimises or maximises):
    a validation metric at the best epoch, or a test metric of the tested checkpoint."""
    for part in SUMMARY_METRICS:
        if metric in (summary.get(part) or {}):
            return summary[part][metric]
    if metric:  # e.g. limit_val_batches=0 (ablate_activation): no validation, nothing to return
        log.warning(f"optimized_metric={metric}: this run recorded no such metric, so it returns none")
    return None


def train_and_score(cfg: DictConfig) -> float | None:
    apply_extras(cfg)
    return optimized_value(train(cfg), cfg.get("optimized_metric"))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # a launcher's job (submitit: one SLURM job each) runs this function in a process of its own, without the
    # lines above: from here on the warning is ours, not submitit's (alexnet.jobs.slurm)
    listen_for_preemption()
    name_the_experiment(cfg)
    quiet_known_warnings()
    hide_advertisements()
    # a single run's bad setting: one line and exit status 1; a sweep records the failed job and goes on
    return run_job(
        lambda: train_and_score(cfg), expected=(ConfigError, DataError, FloatingPointError), fatal=(Interrupted,)
    )


if __name__ == "__main__":
    name_the_run()  # ALEXNET_RUN_ID, the run directory's name (conf/hydra/default.yaml)
    sys.argv = resume_argv(sys.argv)  # resume=RUN_DIR: that run's overrides, directory and newest checkpoint
    for removed in removed_overrides(sys.argv[1:]):  # Hydra would say only that the key is not in the config
        sys.exit(f"error: {removed}")
    # a misspelt key (Hydra would say to add it with +), a run directory that cannot be written (a traceback)
    problems = command_line_problems(Path(__file__).resolve().parents[1] / "conf", "train", sys.argv[1:])
    if problems:
        sys.exit("\n".join(f"error: {p}" for p in problems))
    # a directory that holds a run keeps its .hydra/ record until this start is accepted (alexnet/train/rundir.py)
    if (subdir := staging_subdir(sys.argv)) is not None:
        sys.argv.append(f"hydra.output_subdir={subdir}")
    main()
