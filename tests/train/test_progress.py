"""What `python src/train.py` prints while it trains: one line per epoch into a pipe or file, the rich bar in a
terminal (the real entry point, in a real process each way: the terminal's a fresh interpreter on a pty)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

from alexnet.train.progress import time_left
from conftest import ROOT, data_overrides

EPOCH_LINE = re.compile(
    r"^epoch (\d+)/2 \| train loss (\d+\.\d{4}) \| val top-1 (\d+\.\d\d)% \| lr 0\.02 \| ([\d,]+) images/s \| "
    r"elapsed \d+:\d\d:\d\d \| ETA <= \d+:\d\d:\d\d$"
)


def overrides(fmnist_dir: Path, run_dir: Path) -> list[str]:
    # a narrower net than the default: what is printed does not depend on it
    return [*data_overrides(fmnist_dir), "debug=fast", "trainer.max_epochs=2", "test=false", "model.width=0.125",
            "model.fc_width=64", f"hydra.run.dir={run_dir}"]  # fmt: skip


def test_a_pipe_gets_one_line_per_epoch(tmp_path: Path, fmnist_dir: Path, run_cli) -> None:
    proc = run_cli("train.py", *overrides(fmnist_dir, tmp_path / "run"))  # its stdout is a file, not a terminal
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [m for m in map(EPOCH_LINE.match, proc.stdout.splitlines()) if m]
    assert [int(m[1]) for m in lines] == [1, 2], proc.stdout[-3000:]
    # the numbers are the run's: the validation error printed is the one metrics.csv holds for that epoch
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = [
        float(r.split(",")[header.index("val/top1_err")])
        for r in rows[1:]
        if r.split(",")[header.index("val/top1_err")]
    ]
    assert [float(m[3]) / 100 for m in lines] == [round(v, 4) for v in logged]
    assert all(int(m[4].replace(",", "")) > 0 for m in lines)
    assert "Epoch 1/" not in proc.stdout + proc.stderr  # no rich bar drawn into the pipe


def test_a_terminal_gets_the_rich_bar(tmp_path: Path, fmnist_dir: Path) -> None:
    primary, secondary = os.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *overrides(fmnist_dir, tmp_path / "run")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(timeout=600) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "Epoch 1/" in screen, screen[-3000:]  # the rich bar
    assert not any(EPOCH_LINE.match(line.strip()) for line in screen.splitlines())


def test_a_resumed_run_paces_its_time_left_by_what_it_ran_itself() -> None:
    # resumed at epoch 3 of 15 half way through it (50 of 100 batches), 60 s later epoch 3 ends: 0.5 epoch a minute,
    # 12 epochs left take 24 minutes (counting the run's epoch number, 3 epochs in 60 s, would say 4)
    assert time_left(60.0, 50, 100, 12) == 24 * 60
    assert time_left(60.0, 200, 100, 3) == 90  # two epochs in a minute from the start: 3 more take 90 s
    assert math.isnan(time_left(5.0, 0, 100, 3)) and math.isnan(time_left(5.0, 10, float("inf"), 3))
