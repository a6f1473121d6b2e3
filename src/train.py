"""Train AlexNet: python src/train.py [experiment=NAME] [group=option ...] [key=value ...]
Resume an interrupted run where it stopped: python src/train.py resume=RUN_DIR"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.errors import ConfigError, DataError, Interrupted  # noqa: E402  (python src/train.py finds the package)
from alexnet.pipeline import train  # noqa: E402
from alexnet.resume import resume_argv  # noqa: E402
from alexnet.runtime import quiet_known_warnings, register_resolvers  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_known_warnings()
    try:
        summary = train(cfg)
    except (ConfigError, DataError, FloatingPointError, Interrupted) as e:
        sys.exit(f"error: {e}")
    return summary["best_val"].get("val/top1_err")  # what a Hydra sweeper would optimise


if __name__ == "__main__":
    register_resolvers()  # ${alexnet.run_id:}, the run directory's name (conf/hydra/default.yaml)
    sys.argv = resume_argv(sys.argv)  # resume=RUN_DIR: that run's overrides, directory and newest checkpoint
    main()
