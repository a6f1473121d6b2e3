"""How the schema's rules are written (alexnet/config/schema.py): a Rule is a test of one value and the words that say
what it allows; a Relation, a test of several keys' values and its message. The tests take the values as the
user wrote them: plain Python (lists, dicts), with bool apart from int, so `true` is not the number 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


def shown(value: Any) -> str:
    """A value as a message shows it: true, false and null as the command line writes them, the rest as Python."""
    if value is None or isinstance(value, bool):
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value)


class Rule(NamedTuple):
    ok: Callable[[Any], bool]
    allowed: str  # what the message says is allowed
    show: Callable[[Any], str] = shown  # how the message shows a value


class Relation(NamedTuple):
    """A rule between keys, checked when all of them are there and each is allowed on its own. `problem` is the
    message, with each key's `key=value` as {0}, {1}, ..."""

    keys: tuple[str, ...]
    ok: Callable[..., bool]
    problem: str


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def boolean(v: Any) -> bool:
    return isinstance(v, bool)


def text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def integer(low: int) -> Callable[[Any], bool]:
    return lambda v: is_int(v) and v >= low


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


def list_of(check: Callable[[Any], bool], length: int | None = None, non_empty: bool = False):
    def ok(v: Any) -> bool:
        return (isinstance(v, list | tuple) and all(check(x) for x in v) and (length is None or len(v) == length)
                and (bool(v) or not non_empty))  # fmt: skip

    return ok


def limit(v: Any) -> bool:  # a Trainer limit_*_batches: null, a number of batches, or a fraction
    return v is None or is_int(v) and v >= 0 or isinstance(v, float) and 0.0 <= v <= 1.0


def errors(v: Any) -> bool:  # one training error in (0, 1), or a non-empty list of them
    one = number(0, 1, low_open=True, high_open=True)
    return list_of(one, non_empty=True)(v) if isinstance(v, list | tuple) else one(v)


def milestones(v: Any) -> bool:
    return list_of(integer(1))(v) and list(v) == sorted(set(v))
