"""Saved configs of older versions read under today's names. Run directories (config.yaml), checkpoints
(`alexnet_config`) and the committed experiments/runs/ name the classes and functions they were built with by their
import path, e.g. `_target_: alexnet.callbacks.TrainEvalError`; when the package was arranged in wings (model/,
config/, train/, jobs/, claims/) those paths moved. `upgrade` rewrites a saved config's old paths to today's, so that
such a run still resumes, evaluates and reports; it is applied wherever a saved config is read back
(train/checkpoints.load_checkpoint, train/resume.existing_run, claims/preregistration)."""

from __future__ import annotations

import re
from typing import Any

# module of the flat package (until the wings) -> its module now
MOVED = {
    "lrn": "model.lrn", "model": "model.net", "towers": "model.towers",
    "schema": "config.schema", "rules": "config.rules", "checks": "config.checks",
    "pipeline": "train.pipeline", "build": "train.build", "module": "train.module", "optim": "train.optim",
    "callbacks": "train.callbacks", "checkpoints": "train.checkpoints", "resume": "train.resume",
    "crop_tests": "train.crop_tests", "loggers": "train.loggers", "progress": "train.progress",
    "strategies": "train.strategies", "utils": "train.console",
    "sweeps": "jobs.sweeps", "slurm": "jobs.slurm", "runtime": "jobs.runtime",
    "runs": "claims.runs", "curves": "claims.curves", "convergence": "claims.convergence",
    "verdict": "claims.verdict", "family": "claims.family", "report": "claims.judge", "claim_report": "claims.report",
    "claim_index": "claims.index", "claim_tables": "claims.verdict_tables", "render": "claims.run_tables",
    "fig1": "claims.fig1", "plots": "claims.plots", "literature": "claims.literature",
    "signflip": "claims.stats.signflip", "bootstrap": "claims.stats.bootstrap",
}  # fmt: skip
# an old path is alexnet.MODULE.NAME with three parts; today's paths of moved modules have four or more
_OLD_PATH = re.compile(rf"alexnet\.({'|'.join(sorted(MOVED, key=len, reverse=True))})\.(\w+)")


def upgrade_path(value: str) -> str:
    """`alexnet.callbacks.TrainEvalError` -> `alexnet.train.callbacks.TrainEvalError`; any other string as it is."""
    m = _OLD_PATH.fullmatch(value)
    return f"alexnet.{MOVED[m.group(1)]}.{m.group(2)}" if m else value


def upgrade(config: Any) -> Any:
    """A saved config (plain dicts and lists, as yaml or a checkpoint holds it) with every old import path renamed."""
    if isinstance(config, dict):
        return {k: upgrade(v) for k, v in config.items()}
    if isinstance(config, list):
        return [upgrade(v) for v in config]
    return upgrade_path(config) if isinstance(config, str) else config
