"""The command line held against the config it composes, before Hydra runs (config/command_line.py): a misspelt key
is named with the keys there are and the nearest of them, never with Hydra's "use +key"; a run directory that cannot
be written is named; every other mistake stays Hydra's to report."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexnet.config.command_line import command_line_problems

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    ("typo", "where", "meant"),
    [
        ("optimiser.lr=0.1", "the top-level keys", "optimizer.lr=0.1"),
        ("model.dropuot=0.3", "the keys of model", "model.dropout=0.3"),
        ("data.augment.flipp=false", "the keys of data.augment", "data.augment.flip=false"),
    ],
)
def test_a_misspelt_key_is_named_with_the_keys_there_are_and_the_nearest(typo: str, where: str, meant: str) -> None:
    (problem,) = command_line_problems(CONF, "train", [typo, "seed=3"])
    assert problem.startswith(f"{typo}: no such key ({where}: ") and problem.endswith(f"did you mean {meant}?")
    assert "+" not in problem


def test_every_misspelt_key_of_a_command_line_is_named_at_once() -> None:
    problems = command_line_problems(CONF, "train", ["model.dropuot=0.3", "experiment=ablate_lrn", "optimiser.lr=1"])
    assert [p.split(":")[0] for p in problems] == ["model.dropuot=0.3", "optimiser.lr=1"]


def test_a_command_line_without_mistakes_passes(tmp_path: Path) -> None:
    assert command_line_problems(CONF, "train", ["experiment=ablate_lrn", f"hydra.run.dir={tmp_path / 'run'}"]) == []
    assert command_line_problems(CONF, "eval", ["test_crops=1", f"hydra.run.dir={tmp_path / 'eval'}"]) == []


def test_a_run_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (problem,) = command_line_problems(CONF, "train", [f"hydra.run.dir={blocker / 'run'}"])
    assert problem.startswith(f"hydra.run.dir={blocker / 'run'}: ") and f"{blocker} is not a folder" in problem
    (problem,) = command_line_problems(CONF, "train", ["-m", f"hydra.sweep.dir={blocker / 'sweep'}"])
    assert problem.startswith("hydra.sweep.dir=")


@pytest.mark.parametrize("argv", [["model=nonet"], ["seed=1,2"], ["+optimiser.lr=0.1"], ["--config-name", "nope"]])
def test_other_mistakes_and_other_configs_are_left_to_hydra(argv: list[str]) -> None:
    """An unknown group option or sweep values outside -m: Hydra's own message is right; `+` adds a key on purpose."""
    assert command_line_problems(CONF, "train", argv) == []
