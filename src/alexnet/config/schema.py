"""The schema of a run's config (conf/train.yaml and its groups): which keys there are, and each key's rule
(type, range, allowed values), each stated once, here.

Two readers:
- `checks.check_config` holds a composed config against it before anything is built, read or written: every
  value against its rule, the RELATIONS between keys, and every key outside the instantiated groups against the
  table;
- the project's own constructors (AlexNet, LocalResponseNorm, PaperSGD, the schedules, the data modules, the
  callbacks, the W&B logger) pass their arguments to `require`, so a direct call is refused by the same rule, in
  the same words.

Keys are the config's dotted paths. A constructor names the node its arguments come from (`require("model.lrn",
beta=beta)`) and its message names the key below the group (`lrn.beta=-1: allowed a number > 0 ...`), which
`build.instantiate` prefixes with the group; the config check names the whole path (`model.lrn.beta=-1: ...`).
What one class accepts beyond these rules stays in that class (Fashion-MNIST's 28x28 images, ImageNet's RGB, an
even fc_width for two devices): facts of the class, not rules of a key. The rules that tie a key to the rest of the
composition (the arm among the experiment's arms, the budget's data sets) are build.check_arm and
build.check_budget.

Which keys there are. The instantiated groups (GROUPS) are bounded by their targets' signatures: Hydra passes every
key as an argument, and a key no argument takes stops `build.instantiate`, naming the group. Every other key is in
RULES: a top-level key, or a key of a plain block (extras, speed, budget), that is not there is refused, with the
keys there are. FREE blocks are not checked key by key: their readers check them (`claim`: src/compare.py and
alexnet.claims.verdict; `arms`: each arm's settings, which the experiment's own keys interpolate; `paths`: directories;
`hydra`: Hydra's). REMOVED keys are refused naming what replaced them.

Why not Hydra's structured configs (ConfigStore dataclasses): OmegaConf checks a value's type (and an Enum's
names), not its range (a dropout in [0, 1)), a list's length or a rule between keys, so those rules would need a
second home beside the dataclasses; OmegaConf's own messages come from Hydra at composition, before this check,
and say the type but not what is allowed; and every group's YAML would have to name its schema in its defaults.
One table that both the check and the constructors read changes none of the YAML.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet.config.rules import (
    Relation,
    Rule,
    boolean,
    errors,
    integer,
    is_int,
    limit,
    list_of,
    milestones,
    number,
    one_of,
    optional,
    text,
)

# the validation metrics the module logs (alexnet.train.module.AlexNetModule): what a schedule or checkpoint can watch
VAL_METRICS = ("val/top1_err", "val/top5_err", "val/loss")
# what a sweeper can optimise (src/train.py returns it): the best epoch's validation metrics, the test metrics
OPTIMIZABLE = (*VAL_METRICS, *(m.replace("val/", "test/", 1) for m in VAL_METRICS))
PRECISIONS = ("32-true", "32", "64-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "transformer-engine")
# the instantiated groups: their keys are their targets' arguments
GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "callbacks", "logger")
FREE = {
    "claim": "the paper's claim an experiment tests: read by src/compare.py (alexnet.claims)",
    "arms": "an experiment's arms, each with the settings it changes (the experiment's keys interpolate them)",
    "paths": "where data and runs live (conf/paths/default.yaml)",
    "hydra": "Hydra's own settings",
}


def in_this_process(strategy: Any) -> bool:
    """Whether a Lightning strategy (a name, or a node with `start_method`) trains in this script's own processes:
    spawned or forked ones (ddp_spawn, ddp_fork, ddp_notebook) train in children and hand back only the weights,
    so this process's data module is never set up and its module never sees the epochs. Lightning's `ddp` runs
    this script once per device, each process whole."""
    if isinstance(strategy, str):
        from lightning.pytorch.strategies import StrategyRegistry  # here: the net's modules check without Lightning

        # (the registry's own get() builds the strategy)
        method = StrategyRegistry[strategy]["init_params"].get("start_method") if strategy in StrategyRegistry else None
    else:
        method = strategy.get("start_method") if isinstance(strategy, Mapping) else None
    return method not in ("spawn", "fork", "forkserver")


def _strategy_shown(strategy: Any) -> str:
    return strategy if isinstance(strategy, str) else f"{{start_method: {strategy.get('start_method')}}}"


BOOL = Rule(boolean, "true or false")
SEED_MAX = 2**32 - 1
RULES: dict[str, Rule] = {
    "task_name": Rule(text, "a name for the run directory (train)"),
    "tags": Rule(list_of(text), "a list of tags, e.g. [lr_search, v2]"),
    # Lightning's seed_everything (numpy's global seed under it) takes 32 bits: a larger seed crashed in it
    "seed": Rule(lambda v: integer(0)(v) and v <= SEED_MAX, f"an integer in [0, {SEED_MAX}] (2^32 - 1)"),
    "train": BOOL,
    "test": BOOL,
    "stop_on_nonfinite": BOOL,
    "optimized_metric": Rule(optional(one_of(*OPTIMIZABLE)), "null or " + ", ".join(OPTIMIZABLE)),
    "extras.ignore_warnings": BOOL,
    "extras.enforce_tags": BOOL,
    "extras.print_config": BOOL,
    "speed.channels_last": BOOL,
    "speed.compile": BOOL,
    "speed.compile_options.mode": Rule(
        optional(one_of("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
        "null, default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs",
    ),
    # torch.compile's keyword arguments
    "speed.compile_options.backend": Rule(optional(text), "null (inductor) or a torch.compile backend's name"),
    "speed.compile_options.fullgraph": BOOL,
    "speed.compile_options.dynamic": Rule(optional(boolean), "null (torch decides), true or false"),
    "speed.compile_options.options": Rule(optional(lambda v: isinstance(v, Mapping)), "null or a mapping of options"),
    "speed.compile_options.disable": BOOL,
    "also_test_crops": Rule(list_of(one_of(1, 10)), "a list of crop counts, each 1 or 10"),
    "experiment_name": Rule(optional(text), "null or the experiment's name (conf/experiment/)"),
    "arm": Rule(optional(text), "null or one of the experiment's arms"),
    "arms": Rule(optional(lambda v: isinstance(v, Mapping)), "null or a mapping: arm -> the settings it changes"),
    "needs_rgb": Rule(boolean, "true or false (an experiment about colour)"),
    "ckpt_path": Rule(optional(text), "null or a checkpoint file to resume from"),
    "budget.name": Rule(text, "the budget's name (conf/budget/)"),
    "budget.data": Rule(
        list_of(text, non_empty=True),
        "the data modules a budget is sized for, e.g. [alexnet.data.FashionMNISTDataModule]",
    ),  # fmt: skip
    "model.width": Rule(number(0, low_open=True), "a number > 0 (1.0: the paper's 96, 256, 384, 384, 256 kernels)"),
    "model.fc_width": Rule(integer(2), "an integer >= 2 (the paper: 4096)"),
    "model.stem_kernel": Rule(integer(1), "an integer >= 1 (the paper: 11)"),
    "model.stem_stride": Rule(integer(1), "an integer >= 1 (the paper: 4)"),
    "model.stem_padding": Rule(
        list_of(integer(0), length=4), "4 integers >= 0: [left, right, top, bottom] (the paper's net: [0, 3, 0, 3])"
    ),
    "model.activation": Rule(one_of("relu", "tanh"), "relu or tanh"),
    "model.pooling": Rule(one_of("overlapping", "non_overlapping"), "overlapping or non_overlapping"),
    "model.pool_edges": Rule(one_of("floor", "cover"), "floor or cover"),
    "model.dropout": Rule(number(0, 1, high_open=True), "a probability in [0, 1); 0 turns dropout off"),
    "model.dropout_style": Rule(one_of("paper", "inverted"), "paper or inverted"),
    "model.towers": Rule(one_of("two", "one"), "two or one"),
    "model.init": Rule(one_of("paper", "gain_matched", "kaiming"), "paper, gain_matched or kaiming"),
    "model.devices": Rule(optional(list_of(text, length=2)), "null or two devices, e.g. [cuda:0, cuda:1]"),
    "model.lrn.enabled": BOOL,
    "model.lrn.n": Rule(integer(1), "an integer >= 1 (the paper: 5)"),
    "model.lrn.k": Rule(number(0, low_open=True), "a number > 0 (the paper: 2)"),
    "model.lrn.alpha": Rule(number(0), "a number >= 0 (the paper: 1e-4)"),
    "model.lrn.beta": Rule(number(0, low_open=True), "a number > 0 (the paper: 0.75)"),
    "model.lrn.alpha_convention": Rule(one_of("cuda_convnet", "paper"), "cuda_convnet or paper"),
    "model.lrn.mode": Rule(one_of("normalise", "constant"), "normalise (the paper) or constant (x k^-beta, a control)"),
    "data.batch_size": Rule(integer(1), "an integer >= 1 (the paper: 128)"),
    "data.num_workers": Rule(integer(0), "an integer >= 0"),
    "data.stored_size": Rule(integer(1), "an integer >= 1"),
    "data.crop_size": Rule(integer(1), "an integer >= 1"),
    "data.test_crops": Rule(one_of(1, 10), "1 (centre) or 10 (corners + centre, mirrored)"),
    "data.pixel_max": Rule(
        one_of(255, 1),
        "255 (raw pixel values, the paper's scale, for which §3.3's LRN constants were set) or 1 (pixels on [0, 1]; "
        "LRN then acts as a constant factor)",
    ),
    "data.pca_std": Rule(number(0), "a number >= 0: the standard deviation of alpha (§4.1: 0.1)"),
    "data.train_subset": Rule(optional(integer(1)), "null (every training image) or a number of training images >= 1"),
    "data.val_size": Rule(integer(0), "an integer >= 0"),
    "data.augment_on": Rule(
        one_of("loader", "device"),
        "loader (each worker augments its images) or device (the batch is augmented where it lands, e.g. the GPU: "
        "data/batched.py)",
    ),
    "data.resident": BOOL,
    "data.decode_on": Rule(one_of("loader", "device"), "loader (workers decode) or device (a batch at a time)"),
    "data.store_format": Rule(one_of("npy", "jpeg"), "npy (uint8, read as is) or jpeg (compressed)"),
    "data.jpeg_quality": Rule(lambda v: integer(1)(v) and v <= 100, "an integer in [1, 100] (90-95 keeps the images)"),
    "data.shuffle_block": Rule(optional(integer(1)), "null (shuffle images) or a block size >= 1"),
    "data.source": Rule(one_of("auto", "store", "raw"), "auto, store or raw"),
    "data.on_corrupt": Rule(one_of("error", "skip"), "error (stop, naming the file) or skip"),
    "data.checksums": Rule(
        one_of("warn", "error", "off"),
        "warn (a Fashion-MNIST file unlike the published one is named, and used), error (refused) or off (not "
        "checked: files made on purpose)",
    ),
    "data.augment.random_crop": BOOL,
    "data.augment.flip": BOOL,
    "data.augment.pca": BOOL,
    "optimizer.lr": Rule(number(0, low_open=True), "a number > 0 (the paper: 0.01)"),
    "optimizer.momentum": Rule(number(0, 1, high_open=True), "a number in [0, 1) (the paper: 0.9)"),
    "optimizer.weight_decay": Rule(number(0), "a number >= 0 (the paper: 5e-4)"),
    "optimizer.bias_decay": BOOL,
    "scheduler.monitor": Rule(one_of(*VAL_METRICS), ", ".join(VAL_METRICS)),
    "scheduler.factor": Rule(number(0, 1, low_open=True, high_open=True), "a number in (0, 1) (the paper: 0.1)"),
    "scheduler.patience": Rule(integer(0), "an integer >= 0 (epochs without improvement)"),
    "scheduler.threshold": Rule(number(0), "a number >= 0"),
    "scheduler.max_reductions": Rule(integer(0), "an integer >= 0 (the paper: 3)"),
    "scheduler.milestones": Rule(milestones, "a list of increasing epoch counts >= 1, e.g. [8, 11]"),
    "scheduler.warmup_epochs": Rule(integer(0), "a number of epochs >= 0, at most the first milestone"),
    "trainer.max_epochs": Rule(lambda v: v == -1 and is_int(v) or integer(1)(v), "an integer >= 1, or -1 (no limit)"),
    "trainer.min_epochs": Rule(optional(integer(0)), "null or an integer >= 0"),
    "trainer.check_val_every_n_epoch": Rule(optional(integer(1)), "null or an integer >= 1"),
    "trainer.log_every_n_steps": Rule(integer(1), "an integer >= 1"),
    "trainer.deterministic": Rule(one_of(True, False, "warn"), "true, false or warn"),
    "trainer.precision": Rule(one_of(*PRECISIONS, 16, 32, 64), ", ".join(PRECISIONS)),
    "trainer.accelerator": Rule(one_of("cpu", "gpu", "cuda", "mps", "auto"), "cpu, gpu, cuda, mps or auto"),
    "trainer.num_nodes": Rule(integer(1), "an integer >= 1"),
    "trainer.strategy": Rule(
        in_this_process,
        "auto (one process) or ddp: spawned or forked processes (ddp_spawn, ddp_fork, ...) hand nothing but the "
        "weights back to this one (no summary, no training error); use trainer=ddp (GPUs) or trainer=ddp_sim (two "
        "CPU processes)",
        _strategy_shown,
    ),
    "trainer.limit_train_batches": Rule(limit, "null, a number of batches >= 0 or a fraction in [0, 1]"),
    "trainer.limit_val_batches": Rule(limit, "null, a number of batches >= 0 or a fraction in [0, 1]"),
    "trainer.limit_test_batches": Rule(limit, "null, a number of batches >= 0 or a fraction in [0, 1]"),
    "callbacks.model_checkpoint.monitor": Rule(one_of(*VAL_METRICS), ", ".join(VAL_METRICS)),
    "callbacks.train_error_target.target": Rule(errors, "a training error in (0, 1), or a list of them"),
    "callbacks.train_error_target.window": Rule(integer(1), "a number of batches >= 1"),
    "callbacks.train_error_target.stop": BOOL,
    "callbacks.train_eval_error.sample": Rule(optional(integer(1)), "null (every training image) or a number >= 1"),
    "callbacks.train_eval_error.every": Rule(
        optional(integer(1)), "null (once, after training) or a number of epochs >= 1"
    ),
    "callbacks.early_stopping.monitor": Rule(one_of(*VAL_METRICS), ", ".join(VAL_METRICS)),
    "callbacks.early_stopping.patience": Rule(optional(integer(0)), "null (off) or a number of validations >= 0"),
    "callbacks.early_stopping.min_delta": Rule(number(0), "a number >= 0 (the least decrease that counts)"),
    "logger.wandb.mode": Rule(one_of("auto", "online", "offline", "disabled"), "auto, online, offline or disabled"),
}

RELATIONS: tuple[Relation, ...] = (
    Relation(("data.crop_size", "data.stored_size"), lambda crop, stored: crop <= stored,
             "{0} with {1}: allowed crop_size <= stored_size (the crop must fit in the stored image, as 224 in 256)"),
    Relation(("data.resident", "data.augment_on"), lambda resident, on: not resident or on == "device",
             "{0} with {1}: resident=true keeps the images on the device: it needs augment_on=device"),
    Relation(("data.decode_on", "data.augment_on"), lambda decode, on: decode != "device" or on == "device",
             "{0} with {1}: decode_on=device decodes JPEG batches where they land: it needs augment_on=device"),
    Relation(("data.decode_on", "data.store_format"), lambda decode, fmt: decode != "device" or fmt == "jpeg",
             "{0} with {1}: decode_on=device decodes JPEG batches: it needs store_format=jpeg (a JPEG store)"),
    Relation(("trainer.min_epochs", "trainer.max_epochs"), lambda low, high: low is None or high == -1 or low <= high,
             "{0} > {1}: allowed min_epochs <= max_epochs"),
    Relation(("scheduler.warmup_epochs", "scheduler.milestones"), lambda warmup, ms: not ms or warmup <= ms[0],
             "{0} with {1}: allowed a warm-up of at most the first milestone"),
    Relation(("optimized_metric", "test"), lambda metric, test: test or not str(metric).startswith("test/"),
             "{0} with {1}: allowed a val/ metric, or test=true"),
)  # fmt: skip

REMOVED = {
    "train_error_sample": "the eval-mode training error is callbacks.train_eval_error: callbacks.train_eval_error."
    "sample=N training images (after training, of the tested weights: summary.json's train_eval; with every=K also "
    "every K epochs), or callbacks.train_eval_error=null for none",
}


def plain(value: Any) -> Any:
    """A config node as Python lists and dicts (values are checked, and shown, as the user wrote them)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def problem(key: str, value: Any, name: str | None = None) -> str | None:
    """What is wrong with `value` for `key` ('key=value: allowed ...'), or None; `name`: the key as the message
    names it."""
    rule = RULES[key]
    value = plain(value)
    return None if rule.ok(value) else f"{name or key}={rule.show(value)}: allowed {rule.allowed}"


def relation_problems(values: Mapping[str, Any], name: Callable[[str], str] = str) -> list[str]:
    """The relations that `values` (key -> value, each allowed on its own) break, as messages."""
    problems = []
    for relation in RELATIONS:
        if all(k in values for k in relation.keys) and not relation.ok(*(values[k] for k in relation.keys)):
            parts = [f"{name(k)}={RULES[k].show(values[k])}" for k in relation.keys]
            problems.append(relation.problem.format(*parts))
    return problems


def require(node: str, **arguments: Any) -> None:
    """A constructor's check of its own arguments, which come from config node `node` (e.g. "model.lrn"): a
    ValueError naming the first key below its group whose value its rule, or a rule between the given keys, does
    not allow."""
    below = lambda key: key.split(".", 1)[1] if "." in key else key  # noqa: E731  (the group is the caller's)
    values = {f"{node}.{name}": plain(value) for name, value in arguments.items()}
    for key, value in values.items():
        if key not in RULES:  # e.g. a misspelt key of data.augment, which the data module takes as one dict
            raise ValueError(f"{below(key)}: no such key (the keys of {below(node)}: {', '.join(known_below(node))})")
        message = problem(key, value, below(key))
        if message:
            raise ValueError(message)
    problems = relation_problems(values, below)
    if problems:
        raise ValueError(problems[0])


def known_below(prefix: str) -> list[str]:
    """The keys the schema names right below `prefix` ("" for the top level)."""
    names = [*RULES, *GROUPS, *FREE] if not prefix else [k for k in RULES if k.startswith(prefix + ".")]
    return sorted({k.removeprefix(prefix + "." if prefix else "").split(".", 1)[0] for k in names})


def unknown_keys(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key of `config` (a plain dict of the composed config) the schema does not know, and every removed
    key, as messages; the groups' keys are their targets' arguments, FREE blocks are their readers'."""
    problems = []
    known = known_below(prefix)
    for name, value in config.items():
        key = f"{prefix}.{name}" if prefix else name
        if key in REMOVED:
            problems.append(f"{key}: removed; {REMOVED[key]}")
        elif not prefix and name in (*GROUPS, *FREE) or key in RULES:
            continue
        elif name in known and isinstance(value, Mapping):
            problems += unknown_keys(value, key)
        else:
            where = f"the keys of {prefix}" if prefix else "the top-level keys"
            problems.append(f"{key}: no such key ({where}: {', '.join(known)})")
    return problems


def removed_overrides(overrides: Iterable[str]) -> list[str]:
    """Command-line overrides of a REMOVED key (Hydra would only say the key is not in the config), as messages."""
    problems = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if not override.startswith("-") and key in REMOVED:
            problems.append(f"{override}: removed; {REMOVED[key]}")
    return problems
