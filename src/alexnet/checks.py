"""Every user-facing value of every config group, checked for type, range and allowed choices before any data is
read: a wrong override stops at once with the key, the value and what is allowed, instead of training with a
value that a constructor would silently clamp or accept (a negative LRN beta, a width of 0, flip=maybe).

The constructors check their own arguments too; this table also covers what reaches Lightning or torch
unchecked, and the rules between keys. Keys absent from a composition (e.g. `scheduler=none`) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alexnet.module import AlexNetModule

VAL_METRICS = AlexNetModule.VAL_METRICS  # what a schedule or checkpoint can watch
# what a sweeper can optimise (src/train.py returns it): the best epoch's validation metrics, the test metrics
OPTIMIZABLE = (*VAL_METRICS, *(m.replace("val/", "test/", 1) for m in VAL_METRICS))
PRECISIONS = ("32-true", "32", "64-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "transformer-engine")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def boolean(v: Any) -> bool:
    return isinstance(v, bool)


def integer(low: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= low


def number(low: float, high: float = float("inf"), low_open: bool = False, high_open: bool = False):
    def ok(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    return ok


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: any(v == c and (type(v) is type(c) or _is_number(v) and _is_number(c)) for c in choices)


def limit(v: Any) -> bool:  # a Trainer limit_*_batches: null, a number of batches, or a fraction
    return v is None or _is_int(v) and v >= 0 or isinstance(v, float) and 0.0 <= v <= 1.0


def padding(v: Any) -> bool:
    return isinstance(v, list | tuple | ListConfig) and len(v) == 4 and all(_is_int(p) and p >= 0 for p in v)


def errors(v: Any) -> bool:  # one training error in (0, 1), or a non-empty list of them
    values = v if isinstance(v, list | tuple) else [v]
    return bool(values) and all(_is_number(e) and 0 < e < 1 for e in values)


def milestones(v: Any) -> bool:
    return isinstance(v, list | tuple) and all(_is_int(m) and m >= 1 for m in v) and list(v) == sorted(set(v))


def crop_counts(v: Any) -> bool:
    return isinstance(v, list | tuple | ListConfig) and all(c in (1, 10) and _is_int(c) for c in v)


BOOL = (boolean, "true or false")
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (integer(0), "an integer >= 0"),
    "train": BOOL,
    "test": BOOL,
    "stop_on_nonfinite": BOOL,
    "optimized_metric": (optional(one_of(*OPTIMIZABLE)), "null or " + ", ".join(OPTIMIZABLE)),
    "extras.ignore_warnings": BOOL,
    "extras.enforce_tags": BOOL,
    "extras.print_config": BOOL,
    "speed.channels_last": BOOL,
    "speed.compile": BOOL,
    "speed.compile_options.mode": (
        optional(one_of("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
        "null, default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs",
    ),
    "train_error_sample": (optional(integer(1)), "null or a number of training images >= 1"),
    "also_test_crops": (crop_counts, "a list of crop counts, each 1 or 10"),
    "model.width": (number(0, low_open=True), "a number > 0 (1.0: the paper's 96, 256, 384, 384, 256 kernels)"),
    "model.fc_width": (integer(2), "an integer >= 2 (the paper: 4096)"),
    "model.stem_kernel": (integer(1), "an integer >= 1 (the paper: 11)"),
    "model.stem_stride": (integer(1), "an integer >= 1 (the paper: 4)"),
    "model.stem_padding": (padding, "4 integers >= 0: [left, right, top, bottom] (the paper's net: [0, 3, 0, 3])"),
    "model.activation": (one_of("relu", "tanh"), "relu or tanh"),
    "model.pooling": (one_of("overlapping", "non_overlapping"), "overlapping or non_overlapping"),
    "model.pool_edges": (one_of("floor", "cover"), "floor or cover"),
    "model.dropout": (number(0, 1, high_open=True), "a probability in [0, 1); 0 turns dropout off"),
    "model.dropout_style": (one_of("paper", "inverted"), "paper or inverted"),
    "model.towers": (one_of("two", "one"), "two or one"),
    "model.init": (one_of("paper", "gain_matched", "kaiming"), "paper, gain_matched or kaiming"),
    "model.lrn.enabled": BOOL,
    "model.lrn.n": (integer(1), "an integer >= 1 (the paper: 5)"),
    "model.lrn.k": (number(0, low_open=True), "a number > 0 (the paper: 2)"),
    "model.lrn.alpha": (number(0), "a number >= 0 (the paper: 1e-4)"),
    "model.lrn.beta": (number(0, low_open=True), "a number > 0 (the paper: 0.75)"),
    "model.lrn.alpha_convention": (one_of("cuda_convnet", "paper"), "cuda_convnet or paper"),
    "model.lrn.mode": (one_of("normalise", "constant"), "normalise (the paper) or constant (x k^-beta, a control)"),
    "data.batch_size": (integer(1), "an integer >= 1 (the paper: 128)"),
    "data.num_workers": (integer(0), "an integer >= 0"),
    "data.stored_size": (integer(1), "an integer >= 1"),
    "data.crop_size": (integer(1), "an integer >= 1"),
    "data.test_crops": (one_of(1, 10), "1 (centre) or 10 (corners + centre, mirrored)"),
    "data.pixel_max": (one_of(255, 1), "255 (raw pixels, the paper's scale) or 1"),
    "data.pca_std": (number(0), "a number >= 0 (the paper: 0.1)"),
    "data.train_subset": (optional(integer(1)), "null or a number of training images >= 1"),
    "data.val_size": (integer(0), "an integer >= 0"),
    "data.augment_on": (one_of("loader", "device"), "loader or device"),
    "data.resident": BOOL,
    "data.decode_on": (one_of("loader", "device"), "loader or device"),
    "data.store_format": (one_of("npy", "jpeg"), "npy or jpeg"),
    "data.jpeg_quality": (lambda v: _is_int(v) and 1 <= v <= 100, "an integer in [1, 100] (90-95 keeps the images)"),
    "data.shuffle_block": (optional(integer(1)), "null or a block size >= 1"),
    "data.augment.random_crop": BOOL,
    "data.augment.flip": BOOL,
    "data.augment.pca": BOOL,
    "optimizer.lr": (number(0, low_open=True), "a number > 0 (the paper: 0.01)"),
    "optimizer.momentum": (number(0, 1, high_open=True), "a number in [0, 1) (the paper: 0.9)"),
    "optimizer.weight_decay": (number(0), "a number >= 0 (the paper: 5e-4)"),
    "optimizer.bias_decay": BOOL,
    "scheduler.monitor": (one_of(*VAL_METRICS), ", ".join(VAL_METRICS)),
    "scheduler.factor": (number(0, 1, low_open=True, high_open=True), "a number in (0, 1) (the paper: 0.1)"),
    "scheduler.patience": (integer(0), "an integer >= 0 (epochs without improvement)"),
    "scheduler.threshold": (number(0), "a number >= 0"),
    "scheduler.max_reductions": (integer(0), "an integer >= 0 (the paper: 3)"),
    "trainer.max_epochs": (lambda v: v == -1 and _is_int(v) or integer(1)(v), "an integer >= 1, or -1 (no limit)"),
    "trainer.min_epochs": (optional(integer(0)), "null or an integer >= 0"),
    "trainer.check_val_every_n_epoch": (optional(integer(1)), "null or an integer >= 1"),
    "trainer.log_every_n_steps": (integer(1), "an integer >= 1"),
    "trainer.deterministic": (one_of(True, False, "warn"), "true, false or warn"),
    "trainer.precision": (one_of(*PRECISIONS, 16, 32, 64), ", ".join(PRECISIONS)),
    "trainer.accelerator": (one_of("cpu", "gpu", "cuda", "mps", "auto"), "cpu, gpu, cuda, mps or auto"),
    "trainer.num_nodes": (integer(1), "an integer >= 1"),
    "trainer.limit_train_batches": (limit, "null, a number of batches >= 0 or a fraction in [0, 1]"),
    "trainer.limit_val_batches": (limit, "null, a number of batches >= 0 or a fraction in [0, 1]"),
    "trainer.limit_test_batches": (limit, "null, a number of batches >= 0 or a fraction in [0, 1]"),
    "callbacks.model_checkpoint.monitor": (one_of(*VAL_METRICS), ", ".join(VAL_METRICS)),
    "scheduler.milestones": (milestones, "a list of increasing epoch counts >= 1, e.g. [8, 11]"),
    "scheduler.warmup_epochs": (integer(0), "a number of epochs >= 0, at most the first milestone"),
    "callbacks.train_error_target.target": (errors, "a training error in (0, 1), or a list of them"),
    "callbacks.train_eval_error.sample": (optional(integer(1)), "null (every training image) or a number >= 1"),
    "callbacks.train_eval_error.every": (integer(1), "a number of epochs >= 1"),
    "callbacks.train_error_target.window": (integer(1), "a number of batches >= 1"),
    "callbacks.train_error_target.stop": BOOL,
}


def start_method(strategy: Any) -> str | None:
    """How a Lightning strategy starts its processes: by name (Lightning's registry: ddp_spawn -> spawn) or as a
    config node with `start_method`; None for a strategy that starts none."""
    if isinstance(strategy, str):  # (the registry's own get() builds the strategy)
        return StrategyRegistry[strategy]["init_params"].get("start_method") if strategy in StrategyRegistry else None
    if isinstance(strategy, DictConfig):
        return strategy.get("start_method")
    return None


def check_strategy(strategy: Any) -> list[str]:
    """Spawned or forked processes (ddp_spawn, ddp_fork, ddp_notebook) train in children and hand back only the
    weights: this process's data module is never set up (the eval-mode training error cannot be measured) and its
    module never sees the epochs (summary.json would record 0). Lightning's `ddp` runs this script once per device,
    each process whole, so it gives the same summary as one process."""
    method = start_method(strategy)
    if method not in ("spawn", "fork", "forkserver"):
        return []
    shown = strategy if isinstance(strategy, str) else f"{{start_method: {method}}}"
    return [
        f"trainer.strategy={shown}: its {method}ed processes hand nothing but the weights back to this one (no "
        "summary, no training error); allowed auto (one process) or ddp: use trainer=ddp (GPUs) or trainer=ddp_sim "
        "(two CPU processes)"
    ]


def check_config(cfg: DictConfig) -> list[str]:
    """Every problem with `cfg`'s values, as 'key=value: allowed ...' lines (empty if none)."""
    problems = []
    for key, (ok, allowed) in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=True)
        except OmegaConfBaseException:  # an interpolation that cannot resolve: named where it is used
            continue
        if isinstance(value, str) and value == "<absent>":
            continue
        plain = OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value
        if not ok(plain):
            problems.append(f"{key}={plain!r}: allowed {allowed}")
    trainer, data = cfg.get("trainer") or {}, cfg.get("data") or {}
    problems += check_strategy(trainer.get("strategy"))
    metric = cfg.get("optimized_metric")
    if isinstance(metric, str) and metric.startswith("test/") and cfg.get("test") is False:
        problems.append(f"optimized_metric={metric} with test=false: allowed a val/ metric, or test=true")
    min_epochs, max_epochs = trainer.get("min_epochs"), trainer.get("max_epochs")
    if _is_int(min_epochs) and _is_int(max_epochs) and max_epochs >= 1 and min_epochs > max_epochs:
        problems.append(f"trainer.min_epochs={min_epochs} > trainer.max_epochs={max_epochs}: allowed min <= max")
    crop, stored = data.get("crop_size"), data.get("stored_size")
    if _is_int(crop) and _is_int(stored) and crop > stored:
        problems.append(f"data.crop_size={crop} with data.stored_size={stored}: allowed crop_size <= stored_size")
    devices = (cfg.get("model") or {}).get("devices")
    if devices is not None and (not isinstance(devices, ListConfig) or len(devices) != 2):
        shown = OmegaConf.to_container(devices) if isinstance(devices, ListConfig) else devices
        problems.append(f"model.devices={shown!r}: allowed null or two devices, e.g. [cuda:0, cuda:1]")
    return problems
