"""An entry point's command line held against the config it composes, before Hydra runs the task (#30).

Two mistakes Hydra reports in words that mislead, or with a traceback, before any project code runs:
- a misspelt key (`optimiser.lr=0.1`, `model.dropuot=0.3`): Hydra says "To append to your config use
  +optimiser.lr=0.1", which adds the misspelt key and trains without the intended setting. Here the override is
  named with the keys there are at that level and the nearest of them (difflib), in the words of the schema's own
  check (schema.unknown_keys);
- a run (or sweep) directory that cannot be written: Hydra opens its log file there first, and a read-only one ends
  in logging's "Unable to configure handler" traceback. Here the directory is named.

The config is composed once more with Hydra's compose API (a few tenths of a second); anything else that fails to
compose (an unknown group option, a sweep's values outside -m) is left to Hydra, whose messages for those are
right. A command line that names another config (--config-name, --config-path, --config-dir) is not checked."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser  # Hydra's own command line: its flags, and which take a value
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alexnet.files import unwritable

# Hydra's words for an override of a key the config does not have (hydra/_internal/config_loader_impl.py)
NOT_THERE = re.compile(r"Could not override '([^']+)'")


def command_line_problems(conf_dir: Path, config_name: str, argv: list[str]) -> list[str]:
    """What is wrong with `argv` (an entry point's arguments, sys.argv[1:]) for config `config_name` of
    `conf_dir`: each override of a key the composed config lacks, else a run directory that cannot be written.
    Empty where nothing is, or where Hydra is left to say it."""
    try:
        parsed = get_args_parser().parse_args(argv)
    except SystemExit:  # a malformed command line: Hydra's own usage message says it
        return []
    if parsed.config_name or parsed.config_path or parsed.config_dir or parsed.shell_completion:
        return []
    overrides = list(parsed.overrides)
    unknown: list[str] = []
    while True:  # one unknown key per composition: each found is left out, and the rest composed again
        try:
            cfg = _compose(conf_dir, config_name, [o for o in overrides if o not in unknown])
            break
        except ConfigCompositionException as e:
            found = NOT_THERE.match(str(e))
            override = next((o for o in overrides if found and o not in unknown and _key(o) == found.group(1)), None)
            if override is None:  # another mistake, which Hydra names rightly (after the unknown keys, if any)
                return [f"{o}: no such key in the config" for o in unknown]
            unknown.append(override)
    if unknown:
        return [unknown_key(o, cfg) for o in unknown]
    if parsed.help or parsed.hydra_help or parsed.cfg or parsed.info:  # nothing is written
        return []
    key = "hydra.sweep.dir" if parsed.multirun else "hydra.run.dir"
    try:
        folder = OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException:  # an interpolation only Hydra's own run resolves: Hydra says it
        return []
    why = unwritable(Path(str(folder))) if folder else None
    if why:
        return [f"{key}={folder}: the run cannot write there ({why}); give {key}=DIR in a folder you can write to"]
    return []


def unknown_key(override: str, cfg: DictConfig) -> str:
    """'key=value: no such key (the keys of its group: ...); did you mean ...?', for a key `cfg` lacks."""
    key = _key(override)
    node, parts = cfg, key.split(".")
    for depth, part in enumerate(parts):
        where = f"the keys of {'.'.join(parts[:depth])}" if depth else "the top-level keys"
        if not isinstance(node, DictConfig):
            return f"{override}: no such key ({'.'.join(parts[:depth])} is a value, not a group of keys)"
        if part not in node:
            keys = sorted(str(k) for k in node if k != "hydra")
            near = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
            guess = ""
            if near:
                meant = ".".join([*parts[:depth], near[0], *parts[depth + 1 :]])
                guess = f"; did you mean {meant}{override[len(override.split('=', 1)[0]) :]}?"
            return f"{override}: no such key ({where}: {', '.join(keys)}){guess}"
        node = node[part]
    return f"{override}: no such key"


def _key(override: str) -> str:
    """The dotted key an override sets, without its prefix (+, ++, ~) or a package (@...)."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def _compose(conf_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)
