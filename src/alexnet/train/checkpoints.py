"""Checkpoints: loading one safely, the newest usable one of a run, and a finished run rebuilt from its own.

A checkpoint of src/train.py holds the run's resolved config (`alexnet_config`), its weights (`state_dict`), the
data module's state under the data module's class name (Lightning's key for a LightningDataModule's state_dict)
and the validation history."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.data import ImageDataModule
from alexnet.errors import ConfigError
from alexnet.legacy import upgrade
from alexnet.model.towers import in_layout_of
from alexnet.train.build import build_data, instantiate
from alexnet.train.module import AlexNetModule

CHECKPOINT_GLOBS = ("checkpoints/last.ckpt", "checkpoints/on_exception.ckpt", "hpc_ckpt_*.ckpt")


def safe_load(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint loaded without running code from it: torch's weights-only unpickler admits tensors and plain
    Python types (all our checkpoints hold), and refuses any other object a crafted pickle would build."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ConfigError(
            f"{path}: refused to load: it holds objects other than tensors and plain Python types, which could run "
            "code when unpickled. Checkpoints written by src/train.py never do; load only files you trust"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ConfigError(f"{path}: not a readable checkpoint ({e}); is the file complete?") from e


def checkpoint_step(path: Path) -> int | None:
    """The global step a checkpoint was written at, or None if it cannot be loaded safely (partial, foreign)."""
    try:
        return int(safe_load(path, mmap=True).get("global_step", -1))  # mmap: no need to read the weights
    except (ConfigError, ValueError, TypeError):
        return None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of `run_dir` that got furthest (highest global step, then newest file) and loads."""
    found = [p for pattern in CHECKPOINT_GLOBS for p in run_dir.glob(pattern)]
    steps = {p: checkpoint_step(p) for p in found}
    usable = [p for p, step in steps.items() if step is not None]
    return max(usable, key=lambda p: (steps[p], p.stat().st_mtime), default=None)


def data_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The data module's saved state (training-set mean, class names, PCA): Lightning stores a datamodule's
    state_dict under its class's __qualname__, which is the last part of the run's `data._target_`."""
    target = str((checkpoint.get("alexnet_config") or {}).get("data", {}).get("_target_", ""))
    return checkpoint.get(target.rsplit(".", 1)[-1]) or {}


def load_checkpoint(cfg: DictConfig) -> tuple[Path, dict[str, Any], DictConfig]:
    """The checkpoint named by `cfg.ckpt_path`, or `cfg.run_dir`'s best one; its contents and the run's config,
    with what `cfg` replaces: a data or model option (eval.yaml's groups), the data settings test_crops and batch_size
    when not null, and model.devices. `cfg`'s seed, experiment_name, arm and tags, where null, become the run's."""
    if cfg.ckpt_path:
        ckpt_path = Path(cfg.ckpt_path)
    elif cfg.run_dir:
        ckpt_path = Path(cfg.run_dir) / "checkpoints" / "best.ckpt"
    else:
        raise ConfigError("pass run_dir=PATH (a directory of src/train.py) or ckpt_path=PATH")
    if not ckpt_path.is_file():
        raise ConfigError(f"no checkpoint at {ckpt_path}; pass ckpt_path=PATH to a .ckpt file")
    checkpoint = safe_load(ckpt_path)
    if not checkpoint.get("alexnet_config"):
        raise ConfigError(f"{ckpt_path} holds no run config: it was not written by src/train.py")
    if "stats_scale" not in data_state(checkpoint):
        raise ConfigError(
            f"{ckpt_path} was written before the pixel-scale change (its net saw pixels on [0, 1] and inverted "
            "dropout; this version feeds raw 0-255 pixels, docs/fidelity.md): retrain it with this version"
        )
    checkpoint["alexnet_config"] = upgrade(checkpoint["alexnet_config"])  # an older version's import paths
    run_cfg = OmegaConf.create(checkpoint["alexnet_config"])
    with open_dict(cfg):  # what the evaluation's groups interpolate: the run's own seed, experiment, arm and tags
        for key in ("seed", "experiment_name", "arm", "tags"):
            if key in cfg and cfg[key] in (None, []) and run_cfg.get(key) is not None:
                cfg[key] = run_cfg[key]
    chosen = {g: OmegaConf.to_container(cfg[g]) for g in ("data", "model") if cfg.get(g) is not None}
    if chosen:  # an option chosen for the evaluation (eval.yaml) replaces the run's own, whole
        run_cfg = replace_groups(run_cfg, chosen, OmegaConf.to_container(cfg.paths, resolve=True))
    for key in ("test_crops", "batch_size"):
        if cfg.get(key) is not None:
            run_cfg.data[key] = cfg[key]
    if cfg.get("devices", "run") != "run":  # e.g. a split run evaluated on one device: devices=null
        run_cfg.model.devices = cfg.devices
    return ckpt_path, checkpoint, run_cfg


def replace_groups(run_cfg: DictConfig, chosen: dict[str, Any], paths: dict[str, Any]) -> DictConfig:
    """The run's config with whole groups replaced, resolved where they stand: a data option's paths are this
    machine's and its seed the run's; a net's sizes (model.num_classes: ${data.num_classes}) the data's. A net and
    data that do not fit each other are refused here, before anything is built."""
    context = OmegaConf.create(OmegaConf.to_container(run_cfg))
    context.paths = paths
    for group, node in chosen.items():
        context[group] = node
    try:
        replaced = OmegaConf.create(OmegaConf.to_container(context, resolve=True))
    except Exception as e:  # an interpolation a chosen option needs and this config lacks
        raise ConfigError(f"{' and '.join(chosen)}: {e}") from e
    net, data = replaced.model, replaced.data
    for size, of_data in (("num_classes", "num_classes"), ("in_channels", "channels"), ("input_size", "crop_size")):
        if size in net and of_data in data and net[size] != data[of_data]:
            raise ConfigError(
                f"{' and '.join(chosen)}: the net takes {size}={net[size]}, the data gives {of_data}={data[of_data]}"
            )
    return replaced


def rebuild(checkpoint: dict[str, Any], run_cfg: DictConfig) -> tuple[AlexNetModule, ImageDataModule]:
    """The run's module with its trained weights, and its data module, from a checkpoint and its config."""
    datamodule = build_data(run_cfg)
    net = instantiate("model", run_cfg.model)
    module = AlexNetModule(
        net, optimizer=None, num_classes=datamodule.num_classes, run_config=checkpoint["alexnet_config"]
    )
    try:
        module.load_state_dict(in_layout_of(module.net, checkpoint["state_dict"]))
    except RuntimeError as e:  # a model option (eval.py model=...) whose net is not the checkpoint's
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"model: the checkpoint's weights do not fit this net ({first} ...)") from e
    return module, datamodule
