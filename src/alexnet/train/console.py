"""What a training run prints and asks at the terminal: the config's `extras` (warnings, tags), the config tree and
result tables."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rich
import rich.syntax
import rich.tree
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.prompt import Prompt
from rich.table import Table

from alexnet.errors import ConfigError
from alexnet.jobs.sweeps import in_multirun


def apply_extras(cfg: DictConfig) -> None:
    """What `extras` asks for before a run starts (conf/train.yaml): no Python warnings at all
    (`extras.ignore_warnings`), and tags on every run (`extras.enforce_tags`). `extras.print_config` is read by
    print_config_tree."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("enforce_tags") and not cfg.get("tags"):
        tags = ask_for_tags()
        with open_dict(cfg):
            cfg.tags = tags


def ask_for_tags() -> list[str]:
    """Tags typed at the terminal; refused where nobody can type them (no terminal, a sweep's jobs)."""
    if in_multirun() or not sys.stdin.isatty():
        raise ConfigError(
            "extras.enforce_tags=true and this run has no tags: pass them, e.g. tags=[lr_search,v2] "
            "(or extras.enforce_tags=false)"
        )
    answer = Prompt.ask("This run has no tags (extras.enforce_tags); tags, comma separated", default="dev")
    return [t.strip() for t in answer.split(",") if t.strip()]


@rank_zero_only
def print_config_tree(cfg: DictConfig, save_to: Path | None = None, show: bool = True) -> None:
    """Print the composed config, one branch per group (unless `extras.print_config=false` or not `show`), and save
    the same text."""
    tree = rich.tree.Tree("CONFIG", style="bold")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    if show and (cfg.get("extras") or {}).get("print_config", True):
        rich.print(tree)
    if save_to is not None:
        with open(save_to, "w") as f:
            rich.print(tree, file=f)


@rank_zero_only
def print_metrics_table(title: str, metrics: Mapping[str, float]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)


def to_float_dict(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items())}
