"""Fixtures of the fault tests (issue #30): a fork server running the entry points, generated data, and a few shared
runs that tests copy before they damage them. The helpers are in faultkit.py (test modules import them from there:
`conftest` is tests/conftest.py's module name too)."""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import (
    BATCHES_PER_EPOCH,
    FAST,
    LONG,
    NARROW,
    ROOT,
    Finished,
    data_args,
    fault_environment,
    load_checkpoint,
    stop_mid_epoch,
    write_fashion_like,
)

from forkserver import ForkServer


def pytest_configure(config: pytest.Config) -> None:
    """Conftest files outside packages are all imported as the module `conftest`, each replacing the last in
    sys.modules; tests/test_streams.py and tests/test_record.py import their helpers with `from conftest import`, and
    are collected after this folder. Give the name back to tests/conftest.py's module (pytest keeps its own
    reference to this one). Called when pytest registers this file, by pluggy's replay of the historic hook."""
    parent = config.pluginmanager.get_plugin(str(Path(__file__).resolve().parents[1] / "conftest.py"))
    if parent is not None:
        sys.modules["conftest"] = parent


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def entry() -> Iterator[ForkServer]:
    """entry.run(script, *args, cwd=, timeout=, env=) -> Finished; entry.start(...) -> Started (pid, signal(),
    wait()); `env` adds to this process's environment (fault_environment)."""
    server = ForkServer(fault_environment)
    yield server
    server.close()


@pytest.fixture(scope="session")
def fm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion_like(tmp_path_factory.mktemp("fashion-mnist"))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, fm_data: Path, entry: ForkServer) -> tuple[Finished, Path]:
    """One finished debug=fast run of the default net (read it, or copy it before changing anything)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = entry.run("train.py", *data_args(fm_data), *FAST, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.output[-3000:]
    return result, run_dir


@pytest.fixture(scope="session")
def interrupted_run(
    tmp_path_factory: pytest.TempPathFactory, fm_data: Path, entry: ForkServer
) -> tuple[Finished, Path]:
    """A narrow-net LONG run stopped by SIGTERM a few steps into its first epoch: checkpoints/on_exception.ckpt
    holds its state (copy it before changing anything)."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    result = stop_mid_epoch(entry, run_dir, [*data_args(fm_data), *LONG, *NARROW], 4, signal.SIGTERM)
    state = run_dir / "checkpoints" / "on_exception.ckpt"
    assert result.returncode != 0 and state.is_file(), result.output[-3000:]
    step = load_checkpoint(state)["global_step"]
    assert 0 < step < BATCHES_PER_EPOCH, f"stopped at step {step}, not inside the first epoch"
    return result, run_dir


@pytest.fixture(scope="session")
def sweep_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 arms x 2 seeds of a committed sweep (experiments/runs/ablate_towers), copied: what compare.py reads."""
    source = ROOT / "experiments" / "runs" / "ablate_towers" / "programme"
    jobs = [source / f"ablate_towers_{arm}_seed{seed}" for arm in ("one", "two") for seed in (11, 12)]
    if not all((job / "summary.json").is_file() for job in jobs):
        pytest.skip(f"the committed sweep {source} is not there")
    target = tmp_path_factory.mktemp("sweep") / "ablate_towers"
    target.mkdir()
    for job in jobs:
        shutil.copytree(job, target / job.name, ignore=shutil.ignore_patterns("checkpoints", "wandb", "*.ckpt"))
    for name in ("multirun.yaml",):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    return target
