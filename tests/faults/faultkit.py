"""Helpers of the fault tests (issue #30; the fixtures are in conftest.py): the environment of the entry points,
which run as children of the fork server (tests/forkserver.py: torch, Lightning and Hydra imported once), small
generated Fashion-MNIST files, snapshots of a directory's bytes, and tmpfs mounts (a full disk, a read-only directory).

Nothing here imports the project's package: every test goes through src/*.py and reads what they write with the
standard library, yaml or torch.load."""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from forkserver import Finished, ForkServer

ROOT = Path(__file__).resolve().parents[2]
TRAIN_IMAGES, TEST_IMAGES, VAL_IMAGES = 600, 200, 88  # 512 training images: 16 batches of 32
BATCHES_PER_EPOCH = 16


# --- data --------------------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format of the original files (zero, zero, 0x08 for unsigned bytes, ndim, big-endian dims, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_like(folder: Path) -> Path:
    """Well-formed Fashion-MNIST files of learnable fake images: class c is a bright bar at row 2 + 2c."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", TRAIN_IMAGES, 0), ("t10k", TEST_IMAGES, 1)):
        rng = np.random.default_rng(seed)
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def data_args(folder: Path) -> list[str]:
    """Only `folder`: no system copy, no download."""
    return [f"data.data_dir={folder}", "data.search_dirs=[]", "data.download_url=null", f"data.val_size={VAL_IMAGES}"]


# a debug=fast run, smaller still: batches of 32, centre-crop test, a small eval-mode sample
FAST = ["debug=fast", "data.batch_size=32", "data.test_crops=1", "callbacks.train_eval_error.sample=64"]
# a run long enough to be stopped mid-epoch: every batch of the 512 images, metrics.csv written at every step
LONG = [
    "debug=fast", "data.batch_size=32", "data.test_crops=1", "callbacks.train_eval_error.sample=64",
    f"trainer.limit_train_batches={BATCHES_PER_EPOCH}", "trainer.max_epochs=2",
    "+logger.csv.flush_logs_every_n_steps=1",
]  # fmt: skip


# --- the entry points as processes -------------------------------------------------------------------------------


def fault_environment(env: dict[str, str] | None) -> dict[str, str]:
    """The entry points' environment (ForkServer's `environment`): this process's with `env` added, less what a
    user's shell does not have: pytest's PYTEST_*, Lightning's PL_* (a seed exported by seed_everything) and
    HYDRA_FULL_ERROR, which turns the messages under test into tracebacks."""
    merged = {**os.environ, **(env or {})}
    return {k: v for k, v in merged.items() if not k.startswith(("PL_", "PYTEST_", "HYDRA_FULL_ERROR"))}


def fresh_interpreter(code: str, timeout: float = 120, cwd: Path = ROOT) -> Finished:
    """`python -c CODE` in a new interpreter (what a user's own script would see)."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1"})  # fmt: skip
    return Finished(proc.args, proc.returncode, proc.stdout, proc.stderr)


# --- files -------------------------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included) by relative path -> sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The files of `before` that are gone or whose bytes differ in `after`."""
    return sorted(k for k, digest in before.items() if after.get(k) != digest)


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def no_traceback(result: Finished) -> bool:
    return "Traceback (most recent call last)" not in result.output


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str = "1m", populate: Callable[[Path], None] | None = None,
          read_only: bool = False) -> Iterator[Path]:  # fmt: skip
    """A tmpfs of `size` at `mountpoint` (root only), filled by `populate`, then remounted read-only if asked;
    unmounted on the way out. Skips the test where mounting is not allowed."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {mountpoint} (root with CAP_SYS_ADMIN needed): {mounted.stderr.strip()}")
    try:
        if populate is not None:
            populate(mountpoint)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=True, capture_output=True)
        yield mountpoint
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)
        else:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


NARROW = ["model.width=0.125", "model.fc_width=64"]


def stop_mid_epoch(entry: ForkServer, run_dir: Path, overrides: list[str], after_step: int, sig: int) -> Finished:
    """Start a LONG run of `overrides` into `run_dir` and send `sig` once metrics.csv shows step `after_step`."""
    started = entry.start("train.py", *overrides, f"hydra.run.dir={run_dir}")
    metrics = run_dir / "metrics.csv"

    def reached() -> bool:
        if started.returncode is not None:
            return True  # ended on its own: the caller's checks say what went wrong
        if not metrics.is_file():
            return False
        with contextlib.suppress(OSError, ValueError):
            return any(r.get("train/loss_step") and int(r["step"]) >= after_step for r in read_rows(metrics))
        return False

    wait_until(reached, 240, f"step {after_step} in {metrics}", poll=0.01)
    started.signal(sig)
    return started.wait()
