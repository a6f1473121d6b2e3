"""Train AlexNet: python src/train.py [experiment=NAME] [group=option ...] [key=value ...]
Resume an interrupted run where it stopped: python src/train.py resume=RUN_DIR"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.data import DataError  # noqa: E402  (python src/train.py finds the package beside it)
from alexnet.pipeline import ConfigError, Interrupted, train  # noqa: E402
from alexnet.resume import resume_argv  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except (ConfigError, DataError, FloatingPointError, Interrupted) as e:
        sys.exit(f"error: {e}")
    return summary["best_val"].get("val/top1_err")  # what a Hydra sweeper would optimise


if __name__ == "__main__":
    sys.argv = resume_argv(sys.argv)  # resume=RUN_DIR: that run's overrides, directory and newest checkpoint
    main()
