"""Interrupted runs: a run directory that holds an earlier start of the run, `resume=RUN_DIR`, sweeps that skip
finished jobs and continue unfinished ones, and a CSV log that continues instead of starting over.

Exactness comes from elsewhere: the checkpoint holds the weights, PaperSGD's velocities, the schedule, the
dropout stream and the loop's position (callbacks.RandomStreams), and the data order and augmentation are
functions of (seed, epoch, index) (streams.py).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from alexnet.errors import ConfigError
from alexnet.legacy import upgrade
from alexnet.model.towers import in_layout_of
from alexnet.train.checkpoints import newest_checkpoint, safe_load
from alexnet.train.module import AlexNetModule

# settings that name where and how a run is started, not what it computes; and `claim`, how src/compare.py judges
# the runs (never read by training): an edit to a claim's analysis re-judges finished runs, it does not retrain them
NOT_THE_RUN = ("paths", "ckpt_path", "resume", "hydra", "extras", "optimized_metric", "claim")
# at any depth; data_dir follows paths.data_dir, so a sweep committed from one checkout is found finished in another
# (data.checksums: how local data files are verified, not what the run computes)
WHERE = ("default_root_dir", "dirpath", "save_dir", "data_dir", "num_workers", "checksums")
# what happens after training, and the eval-mode training error, which reads the weights and never changes them
# (train_error_sample: its key in the configs of runs before callbacks.train_eval_error)
CONTINUATION = ("train", "test", "also_test_crops", "callbacks.train_eval_error", "train_error_sample")
LONGER = ("trainer.max_epochs", "trainer.max_steps", "scheduler.max_reductions")  # extend a run with ckpt_path


def what_ran(cfg: DictConfig | dict) -> dict[str, Any]:
    """The parts of a resolved config that decide what a run computes: not where it writes (paths, directories
    derived from them, which move with the run directory) nor how many loader workers it used."""
    container = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in WHERE}
        return node

    ran = {k: strip(v) for k, v in container.items() if k not in NOT_THE_RUN}
    # an option that is off computes what its absence did: a run from before callbacks.early_stopping is the same run
    callbacks = ran.get("callbacks") or {}
    if "early_stopping" in callbacks and (callbacks["early_stopping"] or {}).get("patience") is None:
        del callbacks["early_stopping"]
    return ran


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if a != b else []


def within(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether dotted `key` is one of `prefixes` or lies below one."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def existing_run(cfg: DictConfig, out: Path) -> tuple[str, Path | None]:
    """What to do in a run directory that may hold an earlier start of this run: ("fresh", None), ("finished",
    None) when its summary.json is there (resumed with no longer budget and nothing more to test, too: its record is
    left alone), ("resume", checkpoint) when it was interrupted. A directory holding another run is an error naming
    the settings that differ. Reads only: nothing is written before the run is accepted."""
    saved = out / "config.yaml"
    if not saved.is_file():
        return "fresh", None
    before = what_ran(upgrade(yaml.safe_load(saved.read_text()) or {}))  # an older version's import paths too
    continuing = cfg.get("ckpt_path") is not None  # training on from a checkpoint may set a longer budget
    differ = differences(before, what_ran(cfg))
    changed = [k for k in differ if not (within(k, CONTINUATION) or continuing and k in LONGER)]
    if changed:
        raise ValueError(
            f"{out} holds another run (it differs in {', '.join(changed[:8])}); nothing in it was changed. A resumed "
            "run computes what the interrupted one would have, so it takes the settings the run was started with "
            f"(python src/train.py resume={out}), a longer budget aside ({', '.join(LONGER)}). To train with "
            f"another {changed[0]}, start a new run in another directory: its config.yaml records the setting"
        )
    if (out / "summary.json").is_file() and not (continuing and differ):
        return "finished", None
    if continuing:
        return "resume", Path(cfg.ckpt_path)
    checkpoint = newest_checkpoint(out)
    return ("resume", checkpoint) if checkpoint else ("fresh", None)


def check_checkpoint(path: Path, cfg: DictConfig, module: AlexNetModule, same_run: bool) -> int:
    """The global step of checkpoint `path` once it is known to fit this run, before anything loads it or is pruned
    to it: it loads safely, was written by src/train.py, and its weights have this net's shapes. With `same_run` (a
    run continued in its own directory) it must be of this run's config too (the settings that decide what a run
    computes; a longer budget and what happens after training aside); otherwise (a new run started from it, or a
    test alone) of this net's settings (`model`). Else a ConfigError naming the file and what differs."""
    checkpoint = safe_load(path, mmap=True)  # mmap: the shapes without reading the weights
    saved = checkpoint.get("alexnet_config")
    if not isinstance(saved, dict) or not isinstance(checkpoint.get("state_dict"), dict) or "loops" not in checkpoint:
        raise ConfigError(
            f"{path} is not a checkpoint of src/train.py (it holds no run config or no training state: weights saved "
            "by hand, or another program's file); nothing was loaded or changed"
        )
    changed = [k for k in differences(what_ran(upgrade(saved)), what_ran(cfg))
               if not (within(k, CONTINUATION) or k in LONGER)]  # fmt: skip
    if not same_run:  # the weights must fit; how they are trained on or tested is this run's to say
        changed = [k for k in changed if within(k, ("model",))]
    if changed:
        raise ConfigError(
            f"{path} is a checkpoint of another run: its settings differ from this run's in {', '.join(changed[:8])} "
            "(the checkpoint's alexnet_config against this run's config); nothing was loaded or changed"
        )
    state, own = in_layout_of(module.net, checkpoint["state_dict"]), module.state_dict()
    misfits = [f"{k}: {tuple(state[k].shape) if k in state else 'absent'} there, {tuple(v.shape)} here"
               for k, v in own.items() if k not in state or state[k].shape != v.shape]  # fmt: skip
    if misfits:
        raise ConfigError(f"{path}: its weights do not fit this net ({'; '.join(misfits[:3])})")
    return int(checkpoint.get("global_step", 0))


def resume_argv(argv: list[str]) -> list[str]:
    """`python src/train.py resume=RUN_DIR [more overrides]` -> the run's own overrides (from Hydra's record in
    RUN_DIR/.hydra), its directory and its newest usable checkpoint. Later overrides (e.g. a higher
    trainer.max_epochs) are applied on top."""
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return argv
    run_dir = Path(given[-1].split("=", 1)[1]).expanduser().absolute()
    record = run_dir / ".hydra" / "overrides.yaml"
    if not record.is_file():
        raise SystemExit(f"error: resume={run_dir}: no {record}; name a directory written by src/train.py")
    checkpoint = newest_checkpoint(run_dir)
    if checkpoint is None and not (run_dir / "summary.json").is_file():
        raise SystemExit(
            f"error: resume={run_dir}: no usable checkpoint in it (the run stopped before its first checkpoint); "
            "start it again"
        )
    start_only = ("hydra.run.dir=", "hydra.sweep.", "ckpt_path=", "resume=")
    overrides = [o for o in yaml.safe_load(record.read_text()) or [] if not o.startswith(start_only)]
    extra = [a for a in argv[1:] if not a.startswith("resume=")]
    located = [f"hydra.run.dir={run_dir}"] + ([f"ckpt_path={checkpoint}"] if checkpoint else [])
    return [argv[0], *overrides, *extra, *located]


@rank_zero_only
def prune_metrics(path: Path, step: int) -> None:
    """Drop the rows an interrupted run logged after its checkpoint: the resumed run logs them again."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], [r for r in reader if int(r.get("step") or 0) < step]
    tmp = path.with_suffix(".part")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes metrics.csv whenever its directory is not empty, with a warning; the run
    directory always holds Hydra's files, and a resumed run continues its metrics.csv instead."""

    # The one private method this project overrides: Lightning's CSV logger has no public switch to continue an
    # existing metrics.csv (CSVLogger always starts it over), and the writer calls this from its constructor.
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class RunCSVLogger(CSVLogger):
    """CSVLogger writing metrics.csv straight into the run directory, continued on resume."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
