"""A run directory's guards: a write that fails leaves the file it would have replaced, and a run directory takes one
process at a time, its lock freed by the kernel when the holder dies (a SIGKILL included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.errors import ConfigError
from alexnet.files import replacing, write_text
from alexnet.train.rundir import LOCK, RunLock

SRC = Path(__file__).resolve().parents[2] / "src"


def test_a_write_that_fails_leaves_the_previous_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    write_text(target, "the last good state")
    with pytest.raises(RuntimeError), replacing(target) as f:
        f.write("half of a new st")
        raise RuntimeError("the write stops here")
    assert target.read_text() == "the last good state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_failed_write_names_its_target(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "best.ckpt"  # its directory is not there: the open fails
    with pytest.raises(OSError) as raised, replacing(target, "wb") as f:
        f.write(b"x")
    assert raised.value.filename is not None and "best.ckpt" in raised.value.filename


def test_a_second_process_is_refused_until_the_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from alexnet.train.rundir import RunLock;"
         f" RunLock(Path({str(tmp_path)!r})).acquire(); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"{tmp_path} is in use: another process \(pid {holder.pid}\)"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock(tmp_path)  # the killed holder's lock is gone with it
    lock.acquire()
    lock.release()
    assert (tmp_path / LOCK).read_bytes() == b""  # the file stays, empty: nothing of the run changes
