"""Evaluate a finished run: python src/eval.py run_dir=PATH | ckpt_path=PATH [test_crops=1|10]"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("ALEXNET_ROOT", str(Path(__file__).resolve().parents[1]))

from alexnet.config.command_line import command_line_problems  # noqa: E402
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
    # a misspelt key (Hydra would say to add it with +), a run directory that cannot be written (a traceback)
    problems = command_line_problems(Path(__file__).resolve().parents[1] / "conf", "eval", sys.argv[1:])
    if problems:
        sys.exit("\n".join(f"error: {p}" for p in problems))
    main()
