"""A run directory belongs to one process at a time, and a process that is refused, or fails before it has
restored the run, changes nothing in it.

- **The lock.** `.lock` in the run directory, held with a POSIX record lock for as long as the process lives: the
  kernel releases it on any exit, a SIGKILL included, so a stale lock cannot outlive its holder (the file stays,
  empty). A second process is refused with the holder's pid.
- **Hydra's record.** Hydra writes `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` into the run directory
  before the project sees the config, and `resume=RUN` reads them back. When the directory already holds a run,
  src/train.py points Hydra's record at a staging folder beside it (`hydra.output_subdir`, `staging_subdir`); the
  pipeline moves it over `.hydra/` once the run is accepted and restored (`promote_hydra_record`), and discards it
  otherwise (`discard_hydra_record`): a refused resume, a second start with another seed or a resume that fails
  leaves the run's own record, and so `resume=RUN`, as it was. A staged record whose process was killed before it
  could discard it is removed by the next process that holds the lock (`discard_stale_records`)."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig

from alexnet.errors import ConfigError

LOCK = ".lock"
STAGING = ".hydra.staged"  # + the process id


def staging_subdir(argv: list[str]) -> str | None:
    """The `hydra.output_subdir` for a single run whose `hydra.run.dir=` already holds a run's `.hydra/` record;
    None for a new directory (Hydra writes `.hydra/` itself) and for sweeps (their job directories are Hydra's)."""
    if any(a in ("-m", "--multirun") for a in argv[1:]) or any(a.startswith("hydra.output_subdir=") for a in argv):
        return None
    given = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("hydra.run.dir=")]
    if not given or not (Path(given[-1]).expanduser() / ".hydra").is_dir():
        return None
    return f"{STAGING}-{os.getpid()}"


def hydra_record_subdir() -> str | None:
    """Where Hydra wrote this process's record, relative to the run directory (None: no Hydra, or no record)."""
    return HydraConfig.get().output_subdir if HydraConfig.initialized() else None


def _staged(out: Path, subdir: str | None) -> Path | None:
    return out / subdir if subdir and subdir.startswith(STAGING) else None


def promote_hydra_record(out: Path, subdir: str | None) -> None:
    """Hydra's record of this process, staged in `out/subdir`, replaces the run's `.hydra/` files one by one."""
    staged = _staged(out, subdir)
    if staged is None or not staged.is_dir():
        return
    record = out / ".hydra"
    record.mkdir(exist_ok=True)
    for path in staged.iterdir():
        os.replace(path, record / path.name)
    staged.rmdir()


def discard_hydra_record(out: Path, subdir: str | None) -> None:
    """This process's staged record, unused: the run was refused, found finished, or failed before its restore."""
    staged = _staged(out, subdir)
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)


def discard_stale_records(out: Path) -> None:
    """Staged records of processes that ended before they could discard theirs (a SIGKILL during a start): their
    pid is gone. A staged record of a live process (one starting beside this one, to be refused) stays its own."""
    for staged in out.glob(f"{STAGING}-*"):
        pid = staged.name.removeprefix(f"{STAGING}-")
        if staged.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(staged, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunLock:
    """The one process that may write in a run directory (module docstring). Held from `acquire` until `release` or
    the end of the process."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise a ConfigError naming the directory and the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = lock_holder(self.path)
            by = f" (pid {holder})" if holder else ""
            raise ConfigError(
                f"{self.path.parent} is in use: another process{by} is already running there, and a run directory "
                "takes one process at a time. Wait for it to end (then resume= or rerun continues the run), or give "
                "this run another directory"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the record lock
            self._fd = None


def lock_holder(path: Path) -> int | None:
    """The pid of the process holding `path`'s record lock (F_GETLK; Linux's struct flock), None if unknown."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        layout = "hhqqi4x"  # l_type, l_whence, l_start, l_len, l_pid (and the C struct's padding)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        kind, _, _, _, pid = struct.unpack(layout, answer)
        return pid if kind != fcntl.F_UNLCK and pid > 0 else None
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


class WhenRestored(L.Callback):
    """Calls `action` once, when the fit begins training: Lightning has restored the checkpoint it continues by then
    (weights, optimizer, loops), so a start that fails before (missing data, a checkpoint that does not load) never
    runs it. `run_once` calls it where no training begins (a fit with nothing left to train, a test alone)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action, self.done = action, False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run_once()

    def run_once(self) -> None:
        if not self.done:
            self.done = True
            self.action()


class RunClock(L.Callback):
    """A run's wall time over all its starts. Every checkpoint saves the seconds run so far (the earlier starts' and
    this one's up to the save), and a resumed start restores them: its record counts each earlier start up to the
    checkpoint it continues, once (what an interrupted start ran after that checkpoint is run again, and counted
    then). `starts`: the starts that trained the run; `restored`: whether a checkpoint gave the clock its time (a
    checkpoint written before the clock existed does not)."""

    def __init__(self, started: float) -> None:
        self.started, self.earlier, self.starts, self.restored = started, 0.0, 1, False

    def seconds(self) -> float:
        return self.earlier + time.time() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds(), "starts": self.starts}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier, self.starts, self.restored = float(state_dict["seconds"]), int(state_dict["starts"]) + 1, True
