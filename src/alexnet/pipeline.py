"""What `src/train.py` and `src/eval.py` do, as functions of a composed Hydra config."""

from __future__ import annotations

import json
import pickle
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.callbacks import RandomStreams, Requeued, SlurmRequeue
from alexnet.checks import check_config
from alexnet.data import ImageDataModule
from alexnet.loggers import finish_wandb
from alexnet.module import AlexNetModule, error_rates
from alexnet.resume import checkpoint_step, existing_run, prune_metrics
from alexnet.strategies import PairedDDPStrategy, TwoDeviceStrategy
from alexnet.streams import stream_seed
from alexnet.utils import git_commit, print_config_tree, print_metrics_table, to_float_dict, write_json

# torch 2.13 deprecates LeafSpec, which Lightning 2.6 still builds on every step: a warning no user can act on.
warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)


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
    check_values(cfg)
    datamodule = build_data(cfg)  # first: its own checks (e.g. PCA noise needs RGB) say most
    check_budget(cfg)
    with torch.random.fork_rng(devices=[]):  # the init stream (streams.py): the same weights for every arm of a seed
        torch.manual_seed(stream_seed(cfg.seed, "init"))
        net = _build("model", cfg.model)
    optimizer_cfg = cfg.optimizer.copy()
    with open_dict(optimizer_cfg):
        bias_decay = optimizer_cfg.pop("bias_decay", False)  # ours, not the optimizer class's (optim.parameter_groups)
    optimizer = _build("optimizer", optimizer_cfg)
    _build("optimizer", optimizer, [torch.zeros(1, requires_grad=True)])  # check its values now
    callbacks = [_build(f"callbacks.{k}", v) for k, v in (cfg.get("callbacks") or {}).items() if v]
    callbacks.insert(0, RandomStreams(cfg.seed))  # not optional: resuming and paired arms depend on it
    if SLURMEnvironment.detect():  # checkpoint and requeue on SIGUSR1 at a batch boundary (callbacks.SlurmRequeue)
        callbacks.append(SlurmRequeue())
    if cfg.get("scheduler"):
        callbacks.append(_build("scheduler", cfg.scheduler))  # its monitor is checked with every value (checks.py)
    placement = _build("trainer", tower_placement, cfg.model.get("devices"), cfg.trainer.get("strategy", "auto"))
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = AlexNetModule(net, optimizer, datamodule.num_classes, run_config=run_config, bias_decay=bias_decay)
    # one image's shape: the model summary shows each layer's output size and the FLOPs (else "Total FLOPs: 0")
    module.stop_on_nonfinite = bool(cfg.get("stop_on_nonfinite", False))
    speed = cfg.get("speed") or {}
    if speed.get("channels_last"):  # NHWC weights and inputs: the layout tensor cores' convolutions want
        module.net.to(memory_format=torch.channels_last)
        module.channels_last = True
    if speed.get("compile"):
        module.compile_net(**{k: v for k, v in speed.get("compile_options", {}).items() if v is not None})
    module.example_input_array = torch.zeros(1, datamodule.channels, datamodule.crop_size, datamodule.crop_size)
    return module, datamodule, callbacks, placement


def build_data(cfg: DictConfig) -> ImageDataModule:
    """The data module of a config (prepare, predict): its own checks name the group."""
    return _build("data", cfg.data)


def check_values(cfg: DictConfig) -> None:
    """Every value of every group (checks.py), before anything is built, read or written."""
    problems = check_config(cfg)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def tower_placement(devices: list[str] | None, strategy: Any) -> dict[str, Any]:
    """Trainer arguments that keep the two towers on their devices (§3.2); none for the grouped net. Under
    SLURM, Lightning's own SIGUSR1 handler is off: callbacks.SlurmRequeue handles it at a batch boundary."""
    slurm = {"plugins": [SLURMEnvironment(auto_requeue=False)]} if SLURMEnvironment.detect() else {}
    if not devices:
        return slurm
    accelerator = "gpu" if torch.device(devices[0]).type == "cuda" else "cpu"
    if strategy == "ddp":
        return {"strategy": PairedDDPStrategy(list(devices)), "accelerator": accelerator, **slurm}
    if strategy not in ("auto", None):
        raise ValueError(f"trainer.strategy={strategy!r} with model.devices: allowed auto (one process) or ddp")
    return {"strategy": TwoDeviceStrategy(list(devices)), "accelerator": accelerator, "devices": 1, **slurm}


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
    check_values(cfg)
    try:
        return _train(cfg)
    finally:
        finish_wandb()  # every job of a multirun gets its own W&B run


def _train(cfg: DictConfig) -> dict[str, Any]:
    started, provenance = time.time(), git_commit()  # the code as it was when the run started
    out = Path(cfg.paths.output_dir)
    try:  # an earlier start of this run in this directory: a rerun sweep, a requeued job, resume=RUN_DIR
        state, checkpoint = existing_run(cfg, out)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if state == "finished":
        rank_zero_info(f"{out} holds this run, finished: skipping it (summary.json)")
        return json.loads((out / "summary.json").read_text())
    if state == "fresh":  # an earlier start that never reached a checkpoint: its rows would only confuse
        prune_metrics(out / "metrics.csv", 0)
    if state == "resume":
        with open_dict(cfg):
            cfg.ckpt_path = str(checkpoint)
        step = checkpoint_step(checkpoint) or 0
        prune_metrics(out / "metrics.csv", step)
        rank_zero_info(f"resuming {out} from {checkpoint} (step {step})")
    out.mkdir(parents=True, exist_ok=True)
    print_config_tree(cfg, save_to=out / "config_tree.log")
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, callbacks, placement = build(cfg)
    # an entry without _target_ is an experiment's setting for a logger this run left out (e.g. logger=csv)
    loggers = [_build(f"logger.{k}", v) for k, v in (cfg.get("logger") or {}).items() if v and "_target_" in v]
    for logger in loggers:  # the whole resolved config: W&B's run config, CSV's hparams.yaml
        logger.log_hyperparams(module.run_config)
    trainer: L.Trainer = _build("trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False, **placement)

    if cfg.train:
        with warnings.catch_warnings():  # OnExceptionCheckpoint makes Lightning look for a run to resume
            warnings.filterwarnings("ignore", r".*ckpt_path=None\)` was called without a model")
            warnings.filterwarnings("ignore", r".*there is no last checkpoint available")
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            except Requeued as e:
                raise Interrupted(
                    f"{e}. The requeued job resumes from it (or: python src/train.py resume={out})"
                ) from e
            except SIGTERMException as e:  # OnExceptionCheckpoint has saved the state by now
                raise Interrupted(
                    f"killed (SIGTERM) at step {trainer.global_step}; checkpoints/on_exception.ckpt holds the state. "
                    f"Resume with: python src/train.py resume={out}"
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
            results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
            metrics = {
                k.replace(f"{module.test_name}/", "test/", 1): v for k, v in (results[0] if results else {}).items()
            }
            by_crops[str(crops)] = to_float_dict(metrics)
            print_metrics_table(_test_title(crops, ckpt or "the final weights"), by_crops[str(crops)])
        datamodule.test_crops, module.test_name = int(next(iter(by_crops))), "test"
        test_metrics = by_crops[next(iter(by_crops))]

    train_eval: dict[str, float] = {}
    if cfg.get("train_error_sample") and trainer.is_global_zero:
        # the training error in eval mode (no dropout, centre crop) of the weights just tested (the best checkpoint;
        # without a test, the final weights): set against their test error it measures overfitting, which the
        # running error under dropout cannot
        train_eval = error_rates(module, datamodule.train_sample_dataloader(cfg.train_error_sample))

    history = module.val_history
    best_row = min(history, key=lambda r: r.get("val/top1_err", float("inf")), default={})
    scheduler = next((c for c in callbacks if hasattr(c, "reduction_epochs")), None)
    cuts = [e for e in getattr(scheduler, "reduction_epochs", []) if e < trainer.current_epoch]
    summary = {
        "run_dir": str(out),
        "experiment": cfg.get("experiment_name"),
        "arm": cfg.get("arm"),
        "seed": cfg.seed,
        "git": provenance,
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "lrn_alpha_convention": cfg.model.lrn.alpha_convention if cfg.model.lrn.enabled else None,
        "choices": fidelity_choices(cfg),
        "test_crops": datamodule.test_crops,
        "train_images": len(datamodule.sources["train"]) if datamodule.sources else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        # the epochs after which the rate was cut (a plateau schedule cuts at different epochs in different runs)
        "lr_reduction_epochs": cuts,
        "lr_reductions": None if scheduler is None else len(cuts),
        "world_size": trainer.world_size,
        "replicas_identical": module.replicas_identical,
        "model_devices": OmegaConf.to_container(cfg.model, resolve=True).get("devices"),
        "diverged_at_step": module.diverged_at,
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


def fidelity_choices(cfg: DictConfig) -> dict[str, Any]:
    """The settings a result rests on where the paper is ambiguous (docs/fidelity.md): every summary and report
    names them."""
    model = cfg.model
    return {
        "pixel_max": float(cfg.data.get("pixel_max", 255)),
        "lrn": f"{model.lrn.alpha_convention} alpha={model.lrn.alpha} k={model.lrn.k}" if model.lrn.enabled else "off",
        "dropout_style": model.get("dropout_style", "paper") if model.dropout else "off",
        "bias_decay": bool(cfg.optimizer.get("bias_decay", False)),
        "init": model.init,
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1],
    }


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
    checkpoint = safe_load(ckpt_path)
    if not checkpoint.get("alexnet_config"):
        raise ConfigError(f"{ckpt_path} holds no run config: it was not written by src/train.py")
    data_state = next((v for v in checkpoint.values() if isinstance(v, dict) and "class_names" in v), {})
    if "stats_scale" not in data_state:
        raise ConfigError(
            f"{ckpt_path} was written before the pixel-scale change (its net saw pixels on [0, 1] and inverted "
            "dropout; this version feeds raw 0-255 pixels, docs/fidelity.md): retrain it with this version"
        )
    run_cfg = OmegaConf.create(checkpoint["alexnet_config"])
    for key in ("test_crops", "batch_size"):
        if cfg.get(key) is not None:
            run_cfg.data[key] = cfg[key]
    if cfg.get("devices", "run") != "run":  # e.g. a split run evaluated on one device: devices=null
        run_cfg.model.devices = cfg.devices
    return ckpt_path, checkpoint, run_cfg


def rebuild(checkpoint: dict[str, Any], run_cfg: DictConfig) -> tuple[AlexNetModule, ImageDataModule]:
    """The run's module with its trained weights, and its data module, from a checkpoint and its config."""
    datamodule = build_data(run_cfg)
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
    placement = {"accelerator": cfg.accelerator, "devices": 1, **tower_placement(run_cfg.model.get("devices"), "auto")}
    trainer = L.Trainer(logger=False, enable_checkpointing=False, **placement)
    results = to_float_dict(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    print_metrics_table(_test_title(datamodule.test_crops, ckpt_path), results)
    report = {"checkpoint": str(ckpt_path), "test_crops": datamodule.test_crops, "test": results}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", report)
    return report
