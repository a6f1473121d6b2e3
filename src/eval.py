"""Evaluate a finished run: python src/eval.py run_dir=PATH | ckpt_path=PATH [test_crops=1|10]"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.errors import ConfigError, DataError  # noqa: E402
from alexnet.jobs.runtime import hide_advertisements, name_the_run, quiet_known_warnings  # noqa: E402
from alexnet.jobs.sweeps import run_job  # noqa: E402
from alexnet.train.pipeline import evaluate  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    quiet_known_warnings()
    hide_advertisements()
    run_job(lambda: evaluate(cfg), expected=(ConfigError, DataError))


if __name__ == "__main__":
    name_the_run()
    main()
