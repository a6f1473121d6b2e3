"""The "later evidence" column of the claim table: what later work found about each claim
(experiments/literature.yaml: experiment name -> a list of {source, finding, supports}), and whether our verdict
agrees with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from alexnet.claims.verdict import Outcome

FILE = "literature.yaml"
SHORT = 90  # characters of a finding shown in the table


def load(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """folder/literature.yaml as {experiment: entries}; {} without the file."""
    path = Path(folder) / FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a mapping from experiment name to a list of entries, not {type(data).__name__}")
    return {str(k): list(v or []) for k, v in data.items()}


def plain(text: Any) -> str:
    """Link-free, one-line text that cannot break a Markdown table: [label](url) -> label, bare URLs dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", str(text))
    text = re.sub(r"<?https?://\S+>?", "", text)
    return " ".join(text.split()).replace("|", "/")


def shorten(text: str, limit: int = SHORT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def agreement(verdict: str, supports: bool | None) -> str:
    """Whether our verdict agrees with a later finding (verdict.Outcome.agreement)."""
    return Outcome(verdict).agreement(supports)


def cell(entries: list[dict[str, Any]] | None, verdict: str) -> str:
    """The first entry's source and abbreviated finding, and whether our verdict agrees; – without one."""
    if not entries:
        return "–"
    first = entries[0]
    source, finding = plain(first.get("source", "")), shorten(plain(first.get("finding", "")))
    more = f" (+{len(entries) - 1} more)" if len(entries) > 1 else ""
    return f"{source}: {finding}{more} — {agreement(verdict, first.get('supports'))}"
