"""A composed config checked against the schema (schema.py) before any data is read: a wrong override stops at once
with the key, the value and what is allowed, instead of training with a value that a constructor would silently
clamp or accept, or that reaches Lightning or torch unchecked. Keys absent from a composition (e.g.
`scheduler=none`) are skipped."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alexnet.config.schema import RULES, plain, problem, relation_problems, unknown_keys

ABSENT = "<absent>"


def check_config(cfg: DictConfig) -> list[str]:
    """Every problem with `cfg`, as 'key=value: allowed ...' lines (empty if none): each value against its rule,
    the rules between keys whose values are allowed, and the keys the schema does not know."""
    problems, allowed = [], {}
    for key in RULES:
        try:
            value = OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=True)
        except OmegaConfBaseException:  # an interpolation that cannot resolve: named where it is used
            continue
        if isinstance(value, str) and value == ABSENT:
            continue
        value = plain(value)
        message = problem(key, value)
        if message:
            problems.append(message)
        else:
            allowed[key] = value
    problems += relation_problems(allowed)
    return problems + unknown_keys(OmegaConf.to_container(cfg, resolve=False))
