"""What `src/train.py` and `src/eval.py` do, as functions of a composed Hydra config."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from alexnet.data import ImageDataModule
from alexnet.loggers import finish_wandb
from alexnet.module import AlexNetModule, error_rates
from alexnet.strategies import PairedDDPStrategy, TwoDeviceStrategy
from alexnet.utils import git_commit, print_config_tree, print_metrics_table, to_float_dict, write_json


class ConfigError(ValueError):
    """A config value that cannot work; raised before any training starts."""


class Interrupted(RuntimeError):
    """Training was stopped from outside; the message says which checkpoint to resume from."""


def _build(group: str, node: DictConfig | Callable, *args: Any, **kwargs: Any) -> Any:
    """Hydra-instantiate `node` (or call it), turning any failure into one message naming the group."""
    try:
        return node(*args, **kwargs) if callable(node) else instantiate(node, *args, **kwargs)
    except (InstantiationException, TypeError, ValueError) as e:
        cause = e
        while cause.__cause__ is not None:  # Hydra wraps the constructor's own message
            cause = cause.__cause__
        raise ConfigError(f"{group}: {cause}") from e


def build(cfg: DictConfig) -> tuple[AlexNetModule, ImageDataModule, list[L.Callback], dict[str, Any]]:
    """The module, data, callbacks and tower placement (extra Trainer arguments) of a run. Every
    constructor validates its own arguments, so a bad value stops here, before any training, with
    the config group in the message."""
    datamodule = _build("data", cfg.data)  # first: its own checks (e.g. PCA noise needs RGB) say most
    check_budget(cfg)
    net = _build("model", cfg.model)
    optimizer = _build("optimizer", cfg.optimizer)
    _build("optimizer", optimizer, [torch.zeros(1, requires_grad=True)])  # check its values now
    callbacks = [_build(f"callbacks.{k}", v) for k, v in (cfg.get("callbacks") or {}).items() if v]
    if cfg.get("scheduler"):
        callbacks.append(_build("scheduler", cfg.scheduler))
        if cfg.scheduler.monitor not in AlexNetModule.VAL_METRICS:
            raise ConfigError(f"scheduler: monitor={cfg.scheduler.monitor!r}: allowed {AlexNetModule.VAL_METRICS}")
    placement = _build("trainer", tower_placement, cfg.model.get("devices"), cfg.trainer.get("strategy", "auto"))
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = AlexNetModule(net, optimizer, datamodule.num_classes, run_config=run_config)
    return module, datamodule, callbacks, placement


def tower_placement(devices: list[str] | None, strategy: Any) -> dict[str, Any]:
    """Trainer arguments that keep the two towers on their devices (§3.2); none for the grouped net."""
    if not devices:
        return {}
    accelerator = "gpu" if torch.device(devices[0]).type == "cuda" else "cpu"
    if strategy == "ddp":
        return {"strategy": PairedDDPStrategy(list(devices)), "accelerator": accelerator}
    if strategy not in ("auto", None):
        raise ValueError(f"trainer.strategy={strategy!r} with model.devices: allowed auto (one process) or ddp")
    return {"strategy": TwoDeviceStrategy(list(devices)), "accelerator": accelerator, "devices": 1}


def _test_title(crops: int, ckpt: str | Path) -> str:
    return f"Test error, {'centre crop' if crops == 1 else f'{crops} crops'}, of {Path(ckpt).name}"


def check_arm(cfg: DictConfig) -> None:
    """An experiment's `arms` maps each arm to the settings it changes; `arm` picks one. An experiment about
    colour says so (`needs_rgb`)."""
    arms = cfg.get("arms")
    if arms and cfg.get("arm") not in arms:
        raise ConfigError(f"arm={cfg.get('arm')!r}: this experiment's arms are {', '.join(arms)}")
    if cfg.get("needs_rgb") and cfg.data.channels != 3:
        raise ConfigError(
            f"experiment={cfg.experiment_name} needs RGB images, and {cfg.data._target_} has {cfg.data.channels} "
            "channel(s): PCA colour noise (§4.1) has no meaning on grayscale data. Run it on ILSVRC-2012 "
            "(data=imagenet data.root=PATH, the default of this experiment)"
        )


def check_budget(cfg: DictConfig) -> None:
    """An experiment's budget is sized for one kind of data set."""
    budget = cfg.get("budget")
    if budget and cfg.data._target_ not in budget.data:
        raise ConfigError(
            f"budget={budget.name} is sized for {' or '.join(budget.data)}, not {cfg.data._target_}: for ILSVRC-2012 "
            "use budget=ilsvrc (the paper's net on GPUs; it selects data=imagenet), for the embedded data "
            "budget=embedded"
        )


def train(cfg: DictConfig) -> dict[str, Any]:
    check_arm(cfg)
    try:
        return _train(cfg)
    finally:
        finish_wandb()  # every job of a multirun gets its own W&B run


def _train(cfg: DictConfig) -> dict[str, Any]:
    started, provenance = time.time(), git_commit()  # the code as it was when the run started
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print_config_tree(cfg, save_to=out / "config_tree.log")
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, callbacks, placement = build(cfg)
    loggers = [_build(f"logger.{k}", v) for k, v in (cfg.get("logger") or {}).items() if v]
    for logger in loggers:  # the whole resolved config: W&B's run config, CSV's hparams.yaml
        logger.log_hyperparams(module.run_config)
    trainer: L.Trainer = _build("trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False, **placement)

    if cfg.train:
        with warnings.catch_warnings():  # OnExceptionCheckpoint makes Lightning look for a run to resume
            warnings.filterwarnings("ignore", r".*ckpt_path=None\)` was called without a model")
            warnings.filterwarnings("ignore", r".*there is no last checkpoint available")
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
            except SIGTERMException as e:  # OnExceptionCheckpoint has saved the state by now
                resume = out / "checkpoints" / "on_exception.ckpt"
                raise Interrupted(
                    f"killed (SIGTERM) at step {trainer.global_step}; resume with ckpt_path={resume}"
                ) from e
    fit_seconds = time.time() - started

    test_metrics: dict[str, float] = {}
    by_crops: dict[str, dict[str, float]] = {}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or (None if cfg.train else cfg.get("ckpt_path"))
        # the run's own setting first; `also_test_crops` tests the same weights with other crop counts
        # (logged as test_<n>crop/..., so that loggers keep both; summary.json names them all test/...)
        for i, crops in enumerate(dict.fromkeys([datamodule.test_crops, *cfg.get("also_test_crops", [])])):
            datamodule.test_crops, module.test_name = crops, "test" if i == 0 else f"test_{crops}crop"
            results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
            metrics = {
                k.replace(f"{module.test_name}/", "test/", 1): v for k, v in (results[0] if results else {}).items()
            }
            by_crops[str(crops)] = to_float_dict(metrics)
            print_metrics_table(_test_title(crops, ckpt or "the final weights"), by_crops[str(crops)])
        datamodule.test_crops, module.test_name = int(next(iter(by_crops))), "test"
        test_metrics = by_crops[next(iter(by_crops))]

    train_eval: dict[str, float] = {}
    if cfg.get("train_error_sample") and trainer.is_global_zero:
        # the training error of the final weights in eval mode (no dropout, centre crop): set against the
        # test error it measures overfitting, which the running training error under dropout cannot
        train_eval = error_rates(module, datamodule.train_sample_dataloader(cfg.train_error_sample))

    history = module.val_history
    best_row = min(history, key=lambda r: r.get("val/top1_err", float("inf")), default={})
    scheduler = next((c for c in callbacks if hasattr(c, "reductions")), None)
    summary = {
        "run_dir": str(out),
        "experiment": cfg.get("experiment_name"),
        "arm": cfg.get("arm"),
        "seed": cfg.seed,
        "git": provenance,
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "lrn_alpha_convention": cfg.model.lrn.alpha_convention if cfg.model.lrn.enabled else None,
        "test_crops": datamodule.test_crops,
        "train_images": len(datamodule.sources["train"]) if datamodule.sources else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "lr_reductions": getattr(scheduler, "reductions", None),
        "world_size": trainer.world_size,
        "replicas_identical": module.replicas_identical,
        "model_devices": OmegaConf.to_container(cfg.model, resolve=True).get("devices"),
        "final_lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
        "best_epoch": best_row.get("epoch"),
        "best_val": {k: v for k, v in best_row.items() if k.startswith("val/")},
        "final_val": {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val/")},
        "test": test_metrics,
        "test_by_crops": by_crops,
        "train_eval": train_eval,
        "checkpoints": {
            "best": getattr(trainer.checkpoint_callback, "best_model_path", "") or None,
            "last": str(out / "checkpoints" / "last.ckpt") if (out / "checkpoints" / "last.ckpt").exists() else None,
        },
        "fit_seconds": round(fit_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
    }
    for callback in callbacks:  # e.g. the steps to a target training error (Fig. 1)
        summary.update(getattr(callback, "summary", lambda: {})())
    if trainer.is_global_zero:
        write_json(out / "summary.json", summary)
    return summary


def load_checkpoint(cfg: DictConfig) -> tuple[Path, dict[str, Any], DictConfig]:
    """The checkpoint named by `cfg.ckpt_path`, or `cfg.run_dir`'s best one; its contents and the run's config,
    with the data settings `cfg` overrides (test_crops, batch_size when not null) and model.devices."""
    if cfg.ckpt_path:
        ckpt_path = Path(cfg.ckpt_path)
    elif cfg.run_dir:
        ckpt_path = Path(cfg.run_dir) / "checkpoints" / "best.ckpt"
    else:
        raise ConfigError("pass run_dir=PATH (a directory of src/train.py) or ckpt_path=PATH")
    if not ckpt_path.is_file():
        raise ConfigError(f"no checkpoint at {ckpt_path}; pass ckpt_path=PATH to a .ckpt file")
    # Our own checkpoints hold plain Python types besides tensors (the run's config, the schedule).
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if not checkpoint.get("alexnet_config"):
        raise ConfigError(f"{ckpt_path} holds no run config: it was not written by src/train.py")
    run_cfg = OmegaConf.create(checkpoint["alexnet_config"])
    for key in ("test_crops", "batch_size"):
        if cfg.get(key) is not None:
            run_cfg.data[key] = cfg[key]
    if cfg.get("devices", "run") != "run":  # e.g. a split run evaluated on one device: devices=null
        run_cfg.model.devices = cfg.devices
    return ckpt_path, checkpoint, run_cfg


def rebuild(checkpoint: dict[str, Any], run_cfg: DictConfig) -> tuple[AlexNetModule, ImageDataModule]:
    """The run's module with its trained weights, and its data module, from a checkpoint and its config."""
    datamodule = _build("data", run_cfg.data)
    net = _build("model", run_cfg.model)
    module = AlexNetModule(
        net, optimizer=None, num_classes=datamodule.num_classes, run_config=checkpoint["alexnet_config"]
    )
    module.load_state_dict(checkpoint["state_dict"])
    return module, datamodule


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild a finished run from the config saved in its checkpoint and test it."""
    ckpt_path, checkpoint, run_cfg = load_checkpoint(cfg)
    module, datamodule = rebuild(checkpoint, run_cfg)
    placement = tower_placement(run_cfg.model.get("devices"), "auto") or {"accelerator": cfg.accelerator, "devices": 1}
    trainer = L.Trainer(logger=False, enable_checkpointing=False, **placement)
    results = to_float_dict(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    print_metrics_table(_test_title(datamodule.test_crops, ckpt_path), results)
    report = {"checkpoint": str(ckpt_path), "test_crops": datamodule.test_crops, "test": results}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", report)
    return report
