"""From a composed config to the run's parts: the module, the data, the callbacks and the tower placement.

Every constructor checks its own arguments; `instantiate` turns a problem with the config into one
`ConfigError` naming the group, and lets any other exception (a bug) through with its traceback."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.config.checks import check_config
from alexnet.data import ImageDataModule
from alexnet.errors import ConfigError, DataError
from alexnet.jobs.requeue import SlurmRequeue
from alexnet.jobs.slurm import slurm_job_id
from alexnet.streams import stream_seed
from alexnet.train.callbacks import RandomStreams, replace_on_exception
from alexnet.train.module import AlexNetModule
from alexnet.train.strategies import PairedDDPStrategy, TwoDeviceStrategy
from alexnet.wandb_access import OFFLINE, why_not_online

PACKAGE = Path(__file__).resolve().parents[1]  # src/alexnet: a frame in any wing
# the TypeErrors Python raises when a call's arguments do not fit the signature: a misspelt or missing config key
ARGUMENT_MISMATCH = re.compile(
    r"unexpected keyword argument|missing \d+ required .*argument|takes .* positional argument|multiple values for"
)


def instantiate(group: str, node: DictConfig | Callable, *args: Any, **kwargs: Any) -> Any:
    """Hydra-instantiate `node` (or call it); a problem with the config becomes one message naming the group."""
    try:
        return node(*args, **kwargs) if callable(node) else hydra_instantiate(node, *args, **kwargs)
    except Exception as e:
        if not says_config_is_wrong(e):
            raise  # a bug, not a setting: its traceback is what helps
        cause = e
        while cause.__cause__ is not None:  # Hydra wraps the constructor's own message
            cause = cause.__cause__
        raise ConfigError(f"{group}: {cause}") from e


def says_config_is_wrong(error: BaseException) -> bool:
    """Whether `error`, raised while building a part, is about the config: our own errors, Lightning's
    MisconfigurationException, Hydra's own complaint (a target it cannot find), a call whose arguments do not fit
    the signature, or a ValueError from an argument check (in this package, or in a constructor's own __init__,
    e.g. torch's optimizers; there too a ModuleNotFoundError for an optional package, e.g. W&B's logger without
    wandb). Anything else (a TypeError or ValueError from deeper inside) is a bug."""
    raised = error
    if isinstance(error, InstantiationException):
        if error.__cause__ is None or not str(error).startswith(("Error in call to target", "Error in creating")):
            return True  # Hydra's own: the config names no usable target
        raised = error.__cause__
    if isinstance(raised, (ConfigError, DataError, MisconfigurationException)):
        return True
    if isinstance(raised, TypeError):
        return bool(ARGUMENT_MISMATCH.search(str(raised)))
    if isinstance(raised, (ValueError, ModuleNotFoundError)):
        frame = _innermost_frame(raised)
        return frame is not None and (PACKAGE in Path(frame.f_code.co_filename).resolve().parents
                                      or frame.f_code.co_name == "__init__")  # fmt: skip
    return False


def _innermost_frame(error: BaseException) -> Any:
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else tb.tb_frame


def build(cfg: DictConfig) -> tuple[AlexNetModule, ImageDataModule, list[L.Callback], dict[str, Any]]:
    """The module, data, callbacks and tower placement (extra Trainer arguments) of a run whose config check_values
    has passed (pipeline.train checks it once, before the run directory is touched). Every constructor still
    validates its own arguments (the same rules, config/rules.py, for a caller from Python), and a problem becomes a
    ConfigError naming the config group, before any training."""
    datamodule = build_data(cfg)  # first: its own checks (e.g. PCA noise needs RGB) say most
    if cfg.data.get("num_classes") is None:  # data=imagefolder: as many as the folders hold, now in the run's config
        cfg.data.num_classes = datamodule.num_classes
    check_budget(cfg)
    with torch.random.fork_rng(devices=[]):  # the init stream (streams.py): the same weights for every arm of a seed
        torch.manual_seed(stream_seed(cfg.seed, "init"))
        net = instantiate("model", cfg.model)
    optimizer_cfg = cfg.optimizer.copy()
    with open_dict(optimizer_cfg):
        bias_decay = optimizer_cfg.pop("bias_decay", False)  # ours, not the optimizer class's (optim.parameter_groups)
    optimizer = instantiate("optimizer", optimizer_cfg)
    instantiate("optimizer", optimizer, [torch.zeros(1, requires_grad=True)])  # check its values now
    callbacks = [instantiate(f"callbacks.{k}", v) for k, v in (cfg.get("callbacks") or {}).items() if v]
    callbacks = replace_on_exception(callbacks)  # saves only a state this process restored (checkpoints.py)
    callbacks = [c for c in callbacks if c is not None]  # an option that is off (callbacks.early_stopping)
    callbacks.insert(0, RandomStreams(cfg.seed))  # not optional: resuming and paired arms depend on it
    if slurm_job_id():  # SLURM's warning (SIGUSR1/2, heard from the process's start): checkpoint, requeue (requeue.py)
        callbacks.append(SlurmRequeue())
    if cfg.get("scheduler"):
        callbacks.append(instantiate("scheduler", cfg.scheduler))  # its monitor is checked with every value
    placement = instantiate("trainer", tower_placement, cfg.model.get("devices"), cfg.trainer.get("strategy", "auto"))
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = AlexNetModule(net, optimizer, datamodule.num_classes, run_config=run_config, bias_decay=bias_decay)
    module.stop_on_nonfinite = bool(cfg.get("stop_on_nonfinite", False))
    speed = cfg.get("speed") or {}
    if speed.get("channels_last"):  # NHWC weights and inputs: the layout tensor cores' convolutions want
        module.net.to(memory_format=torch.channels_last)
        module.channels_last = True
    if speed.get("compile"):
        module.compile_net(**{k: v for k, v in speed.get("compile_options", {}).items() if v is not None})
    # one image's shape: the model summary shows each layer's output size and the FLOPs (else "Total FLOPs: 0")
    module.example_input_array = torch.zeros(1, datamodule.channels, datamodule.crop_size, datamodule.crop_size)
    return module, datamodule, callbacks, placement


def build_data(cfg: DictConfig) -> ImageDataModule:
    """The data module of a config (prepare, predict): its own checks name the group."""
    return instantiate("data", cfg.data)


def check_values(cfg: DictConfig) -> None:
    """Every value of every group (checks.py), and what the loggers need, before anything is built, read or
    written."""
    problems = check_config(cfg) + logger_problems(cfg)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def logger_problems(cfg: DictConfig) -> list[str]:
    """W&B asked to log online (logger.wandb.mode=online, or WANDB_MODE=online under mode=auto) where it cannot
    (wandb_access.why_not_online: no API key, or no route to its server), found before the data is read."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    if not wandb or "_target_" not in wandb:  # an experiment's W&B settings for a run that logs only to CSV
        return []
    mode, source = wandb.get("mode", "auto"), "logger.wandb.mode"
    if mode == "auto" and os.environ.get("WANDB_MODE"):  # what loggers.resolve_mode follows
        mode, source = os.environ["WANDB_MODE"], "WANDB_MODE"
    if mode != "online":
        return []
    why = why_not_online(f"{source}=online", offline=f"{OFFLINE} (or logger.wandb.mode=offline)")
    return [why] if why else []


def tower_placement(devices: list[str] | None, strategy: Any) -> dict[str, Any]:
    """Trainer arguments that keep the two towers on their devices (§3.2); none for the grouped net. Under
    SLURM, Lightning's own SIGUSR1 handler is off: jobs.requeue.SlurmRequeue answers it at a batch boundary."""
    slurm = {"plugins": [SLURMEnvironment(auto_requeue=False)]} if SLURMEnvironment.detect() else {}
    if not devices:
        return slurm
    accelerator = "gpu" if torch.device(devices[0]).type == "cuda" else "cpu"
    if strategy == "ddp":
        return {"strategy": PairedDDPStrategy(list(devices)), "accelerator": accelerator, **slurm}
    if strategy not in ("auto", None):
        raise ValueError(f"trainer.strategy={strategy!r} with model.devices: allowed auto (one process) or ddp")
    return {"strategy": TwoDeviceStrategy(list(devices)), "accelerator": accelerator, "devices": 1, **slurm}


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
