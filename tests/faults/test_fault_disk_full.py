"""#30, item 1: a run whose disk fills up. The run directory is a tmpfs with room for the run's first checkpoint and
not its second: best.ckpt is written at the end of the first epoch, then last.ckpt and, once that fails,
on_exception.ckpt find the disk full. Lightning writes a checkpoint into a temporary file in $TMPDIR and moves it
into place; from another filesystem that move is a copy into the target, so a full disk leaves a cut-off file under
a checkpoint's name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from faultkit import FAST, NARROW, Finished, copy_run, data_args, load_checkpoint, no_traceback, snapshot, tmpfs

pytestmark = pytest.mark.slow


def loads(path: Path) -> bool:
    try:
        load_checkpoint(path)
        return True
    except Exception:  # noqa: BLE001  (whatever torch.load raises on a damaged file)
        return False


class Aftermath:
    """The run as the full disk left it (`pristine`, a copy on another disk), what the failed run printed, and the
    tmpfs (grown: the user has freed space) holding the run directory, which `restore` puts back as it was left."""

    def __init__(self, result: Finished, run: Path, pristine: Path, args: list[str]) -> None:
        self.result, self.run, self.pristine, self.args = result, run, pristine, args

    def restore(self) -> Path:
        shutil.rmtree(self.run, ignore_errors=True)
        shutil.copytree(self.pristine, self.run, symlinks=True)
        return self.run


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory, interrupted_run, fm_data, entry):
    base = tmp_path_factory.mktemp("full_disk")
    # room for one checkpoint of the narrow net and the run's small files, not for two checkpoints
    one = (interrupted_run[1] / "checkpoints" / "on_exception.ckpt").stat().st_size
    size = (one * 3 // 2 + 160 * 1024) // 4096 * 4096
    with tmpfs(base / "disk", size=str(size)) as disk:
        run = disk / "run"
        args = [*data_args(fm_data), *FAST, *NARROW, f"hydra.run.dir={run}"]
        result = entry.run("train.py", *args)
        pristine = copy_run(run, base / "as-left")
        subprocess.run(["mount", "-o", f"remount,size={size * 8}", str(disk)], check=True, capture_output=True)
        yield Aftermath(result, run, pristine, args)


def test_the_full_disk_stopped_the_run(full_disk):
    """The situation the tests below are about (not a fault): the run failed at a checkpoint, best.ckpt is there."""
    assert full_disk.result.returncode != 0
    assert "No space left on device" in full_disk.result.output or "disk" in full_disk.result.stderr.lower()
    assert loads(full_disk.pristine / "checkpoints" / "best.ckpt")


def test_a_full_disk_leaves_no_damaged_checkpoint(full_disk):
    damaged = {
        name: (full_disk.pristine / name).stat().st_size
        for name in snapshot(full_disk.pristine)
        if name.endswith(".ckpt") and not loads(full_disk.pristine / name)
    }
    assert damaged == {}, f"files named like checkpoints that do not load (name: bytes): {damaged}"


def test_a_full_disk_says_so_and_how_to_go_on(full_disk):
    message = full_disk.result.stderr
    assert no_traceback(full_disk.result), message[-3000:]
    assert "No space left on device" in message or "disk is full" in message.lower()
    assert f"resume={full_disk.run}" in message, message[-2000:]


def test_after_a_full_disk_resume_goes_on_from_the_last_good_checkpoint(full_disk, entry):
    run = full_disk.restore()
    step = load_checkpoint(run / "checkpoints" / "best.ckpt")["global_step"]
    result = entry.run("train.py", f"resume={run}")
    assert result.returncode == 0, result.output[-2000:]
    assert f"(step {step})" in result.output


def test_starting_a_run_again_as_told_works(full_disk, entry):
    """resume= says 'start it again'; the same command again must then run."""
    full_disk.restore()
    result = entry.run("train.py", *full_disk.args)
    assert result.returncode == 0, result.output[-2000:]
    assert no_traceback(result)
