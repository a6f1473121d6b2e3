"""Interrupted runs through the real entry points: a resumed run equals the uninterrupted one (SIGKILL, SIGTERM
mid-epoch; SLURM's warning and requeue on a real SLURM: tests/slurm), a kill that also ends W&B's service is still
reported as the kill, sweeps skip finished jobs, run directories never collide, checkpoint writes never leave a partial
file, and loading a checkpoint never runs code from it."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, data_overrides, run_script, train_in_process

SMALL = ["model.width=0.125", "model.fc_width=64", "data.batch_size=4", "data.test_crops=1", "test=false",
         "callbacks.train_eval_error=null", "trainer.max_epochs=3", "seed=7", "callbacks.progress_bar=null",
         "callbacks.model_summary=null"]  # fmt: skip


def start(*overrides: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    # not the W&B service of a run in this process (wandb.init exports its address): the run starts its own
    inherited = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env = {**inherited, **(env or {}), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: int = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path} appeared:\n{proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def interrupted(fmnist_dir: Path, run: Path, how: signal.Signals, pause: float = 0.0) -> subprocess.Popen:
    """A run of SMALL into `run`, sent `how` once its first checkpoint exists (and `pause` seconds more)."""
    proc = start(*data_overrides(fmnist_dir), *SMALL, f"hydra.run.dir={run}")
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(pause)
    proc.send_signal(how)
    return proc


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["steps"] == sb["steps"] and sa["final_val"] == sb["final_val"] and sa["best_val"] == sb["best_val"]
    assert sa["lr_reductions"] == sb["lr_reductions"] and sa["final_lr"] == sb["final_lr"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> Path:
    """The uninterrupted run every interrupted one is compared with (in this process: the same run as the command
    line's, test_train.py::test_a_run_in_process_writes_what_the_command_line_writes)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train_in_process([*data_overrides(fmnist_dir), *SMALL], run)
    return run


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_equals_the_uninterrupted_run(
    reference: Path, fmnist_dir: Path, tmp_path: Path, run_cli
) -> None:
    run = tmp_path / "run"
    interrupted(fmnist_dir, run, signal.SIGKILL).wait()
    assert not (run / "summary.json").exists()
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["RunClock"]["seconds"]
    began = time.time()
    resumed = run_cli("train.py", f"resume={run}", timeout=300)
    took = time.time() - began
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    assert "resuming" in out
    assert_same_run(run, reference)
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    epochs = [r.split(",")[0] for r in rows]
    assert sorted(set(epochs)) == ["0", "1", "2"]  # metrics.csv continued, not restarted
    # the run's time counts the killed start up to its checkpoint, and the resumed start once
    summary, first = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    assert summary["starts"] == 2 and first["starts"] == 1
    assert before > 0 and before < summary["wall_seconds"] <= before + took + 0.1


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_equals_the_uninterrupted_run(
    reference: Path, fmnist_dir: Path, tmp_path: Path, run_cli
) -> None:
    run = tmp_path / "run"
    proc = interrupted(fmnist_dir, run, signal.SIGTERM, pause=0.3)  # into the second epoch (125 batches of 4)
    out = finish(proc)
    assert proc.returncode == 1 and f"resume={run}" in out, out[-3000:]
    saved = torch.load(run / "checkpoints" / "on_exception.ckpt", weights_only=True)
    batches = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert 0 < batches < 125  # 500 training images in batches of 4: stopped inside an epoch
    resumed = run_cli("train.py", f"resume={run}", timeout=300)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert_same_run(run, reference)


@pytest.mark.slow
def test_closing_a_wandb_run_whose_service_was_killed_never_replaces_the_error_that_ends_the_run(
    tmp_path: Path,
) -> None:
    """SLURM's scancel and requeue send SIGTERM to every process of a job, W&B's service included (it runs in a
    session of its own): closing the run then fails (ConnectionResetError), and that must not replace the kill or
    the requeue in flight (tests/slurm has the whole run, on a real SLURM). A fresh interpreter: W&B's service and
    its exit hooks belong to it alone."""
    code = f"""
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT / "src")!r})
import wandb
from alexnet.errors import Interrupted
from alexnet.train.loggers import finish_wandb
wandb.init(mode="offline", dir={str(tmp_path)!r}, settings=wandb.Settings(silent=True))
# the processes this one started, W&B's service among them (pid (comm) state ppid ... in /proc/PID/stat)
service = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
           if p.read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid())]
assert service, "no W&B service process"
for pid in service:
    os.kill(pid, signal.SIGTERM)
time.sleep(2)
try:
    try:
        raise Interrupted("killed (SIGTERM) at step 7")
    except Interrupted as e:
        finish_wandb(e)
        raise
except Interrupted as e:
    print("still:", e)
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        # its own W&B service, not one a run in this process started (wandb.init exports its address)
        env={**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "WANDB_MODE": "offline"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "still: killed (SIGTERM) at step 7" in done.stdout, out[-3000:]
    assert "W&B could not close its run" in out  # the service did die, and closing failed
    assert "Traceback" not in out and "Exception ignored" not in out  # nor does W&B's exit hook fail after us


@pytest.mark.slow
def test_a_rerun_sweep_skips_finished_jobs_and_resumes_the_interrupted_one(
    fmnist_dir: Path, tmp_path: Path, run_cli
) -> None:
    sweep = tmp_path / "sweep"
    # batches of 20: 25 steps an epoch, still a whole epoch's work left when seed 3's first checkpoint appears
    command = ["-m", *data_overrides(fmnist_dir), *SMALL, "data.batch_size=20", "trainer.max_epochs=2",
               "seed=1,2,3,4", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=seed${seed}"]  # fmt: skip
    proc = start(*command)
    wait_for(sweep / "seed3" / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {s: (sweep / f"seed{s}" / "summary.json").stat().st_mtime_ns for s in (1, 2)}
    assert not (sweep / "seed3" / "summary.json").exists() and not (sweep / "seed4").exists()
    rerun = run_cli("train.py", *command, timeout=300)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    for s in (1, 2):  # not trained again
        assert (sweep / f"seed{s}" / "summary.json").stat().st_mtime_ns == finished[s]
    assert out.count("finished: skipping it") == 2 and f"resuming {sweep / 'seed3'}" in out
    summaries = [json.loads((sweep / f"seed{s}" / "summary.json").read_text()) for s in (1, 2, 3, 4)]
    assert [s["seed"] for s in summaries] == [1, 2, 3, 4] and all(s["epochs"] == 2 for s in summaries)


def test_a_run_from_before_callbacks_train_eval_error_is_the_same_run(train_cfg, tmp_path: Path) -> None:
    """A run directory of the code before the callback held the eval-mode training error (top-level
    train_error_sample, no callbacks.train_eval_error): a rerun sweep still skips it, or resumes it."""
    from alexnet.train.resume import existing_run

    cfg = train_cfg()
    old = OmegaConf.to_container(cfg, resolve=True)
    del old["callbacks"]["train_eval_error"]
    old["train_error_sample"] = 10000
    run = tmp_path / "old"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    (run / "config.yaml").write_text(OmegaConf.to_yaml(old))
    assert existing_run(cfg, run) == ("finished", None)
    old["model"]["dropout"] = 0.3  # what the run computed still counts
    (run / "config.yaml").write_text(OmegaConf.to_yaml(old))
    with pytest.raises(ValueError, match=r"differs in model\.dropout\)"):
        existing_run(cfg, run)


def test_a_run_from_before_callbacks_early_stopping_is_the_same_run_while_it_stays_off(train_cfg, tmp_path: Path):
    """A finished run of the code before the option (no callbacks.early_stopping in its config): a rerun sweep still
    skips it; one that turns early stopping on is another run."""
    from alexnet.train.resume import existing_run

    cfg = train_cfg()
    old = OmegaConf.to_container(cfg, resolve=True)
    del old["callbacks"]["early_stopping"]
    run = tmp_path / "old"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    (run / "config.yaml").write_text(OmegaConf.to_yaml(old))
    assert existing_run(cfg, run) == ("finished", None)
    cfg.callbacks.early_stopping.patience = 3
    with pytest.raises(ValueError, match=r"differs in callbacks\.early_stopping"):
        existing_run(cfg, run)


def test_a_directory_holding_another_run_is_named(train_here, train_run) -> None:
    quick = ["debug=fast", *SMALL[:4], "callbacks.train_eval_error=null"]
    _, run_dir = train_here(*quick)  # the run already there; then the command that clashes
    proc, run_dir_again = train_run(*quick, "model.dropout=0.3")
    assert run_dir_again == run_dir
    assert proc.returncode == 1
    assert f"{run_dir} holds another run (it differs in model.dropout)" in proc.stderr


@pytest.mark.slow
def test_two_runs_started_together_get_two_directories(fmnist_dir: Path, tmp_path: Path, run_cli) -> None:
    from concurrent.futures import ThreadPoolExecutor

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}  # outside SLURM: time-named directories
    command = [*data_overrides(fmnist_dir), "debug=fast", *SMALL[:4], f"paths.log_dir={tmp_path}"]
    with ThreadPoolExecutor(2) as pool:  # two processes, started within a few milliseconds of each other
        procs = list(pool.map(lambda _: run_cli("train.py", *command, env=env), range(2)))
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "summary.json").is_file() for r in runs)


class Payload:
    """What a crafted checkpoint could do when unpickled: run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path: Path, run_cli) -> None:
    marker, crafted = tmp_path / "pwned", tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "alexnet_config": {"x": Payload(marker)}}, crafted, pickle_protocol=2)
    proc = run_cli("eval.py", f"ckpt_path={crafted}", f"hydra.run.dir={tmp_path}/eval", timeout=300)
    assert proc.returncode == 1 and f"{crafted}: refused to load" in proc.stderr
    proc = run_cli("predict.py", str(tmp_path / "x.png"), f"ckpt_path={crafted}", f"hydra.run.dir={tmp_path}/predict",
                   timeout=300)  # fmt: skip
    assert proc.returncode == 1 and "refused to load" in proc.stderr
    run = tmp_path / "run"  # a run directory whose checkpoint was replaced: resuming refuses it too
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(crafted.read_bytes())
    proc = run_cli("train.py", f"resume={run}", timeout=300)
    assert proc.returncode == 1 and "no usable checkpoint" in proc.stderr
    assert not marker.exists()  # torch.load(weights_only=False) would have created it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(crafted, weights_only=True)


def test_an_interrupted_checkpoint_write_leaves_the_last_good_one(tmp_path: Path) -> None:
    import fsspec.implementations.local as local
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from alexnet.train.checkpoints import safe_load

    path = tmp_path / "last.ckpt"
    io = TorchCheckpointIO()
    io.save_checkpoint({"global_step": 1, "state_dict": {"w": torch.ones(1000)}}, path)
    good = path.read_bytes()

    original = local.LocalFileOpener.write

    def disk_full(self, data):  # half of the bytes reach the disk, then ENOSPC
        original(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    local.LocalFileOpener.write = disk_full
    try:
        with pytest.raises(OSError, match="No space left"):
            io.save_checkpoint({"global_step": 2, "state_dict": {"w": torch.zeros(1000)}}, path)
    finally:
        local.LocalFileOpener.write = original
    assert path.read_bytes() == good and safe_load(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left behind


@pytest.mark.slow
def test_a_first_run_prints_no_warnings_that_are_not_the_users(tmp_path: Path, fmnist_dir: Path) -> None:
    # a fresh interpreter: what the imports print counts too
    run_dir = tmp_path / "run"
    proc = run_script("train.py", *data_overrides(fmnist_dir), f"hydra.run.dir={run_dir}", "debug=fast",
                      "model.width=0.125", "model.fc_width=64", "data.batch_size=16")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert any(r.split(",")[0] for r in rows[1:]) and len(rows) == len(set(rows))  # no row written twice
    assert "test/top1_err" in rows[0]  # the test's columns, which appear last, joined the header
    output = proc.stdout + proc.stderr
    for noise in ("LeafSpec", "exists and is not empty", "Total FLOPs: 0"):
        assert noise not in output, noise
    assert "CONFIG" in output and "Test error" in output


def test_a_resumed_run_continues_its_wandb_run(tmp_path: Path) -> None:
    from alexnet.train.loggers import wandb_logger

    first = wandb_logger(str(tmp_path), mode="offline", arm="lrn", seed=1)
    again = wandb_logger(str(tmp_path), mode="offline", arm="lrn", seed=1)  # the same run directory, resumed
    other = wandb_logger(str(tmp_path / "other"), mode="offline", arm="lrn", seed=1)
    kept = (tmp_path / "wandb_run_id").read_text().strip()
    assert first.version == again.version == kept and other.version != kept
    assert again._wandb_init["resume"] == "allow"


def test_a_finished_run_from_another_checkout_is_still_finished(tmp_path: Path, fmnist_dir: Path) -> None:
    """A committed sweep (experiments/runs) written in one checkout and rerun from another: its runs' data.data_dir
    is the other checkout's, which names where the data was read, not what ran."""
    import yaml

    from alexnet.train.resume import existing_run
    from conftest import compose_train, data_overrides

    run_dir = tmp_path / "job"
    cfg = compose_train([*data_overrides(fmnist_dir), "experiment=ablate_lrn", "arm=lrn"], run_dir)
    run_dir.mkdir()
    saved = OmegaConf.to_container(cfg, resolve=True)
    saved["data"]["data_dir"] = "/elsewhere/checkout/data/fashion-mnist"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    (run_dir / "summary.json").write_text("{}")
    assert existing_run(cfg, run_dir) == ("finished", None)
    saved["claim"]["paper"] = {"test/top1_err": {"delta": 0.02, "base": 0.4}}  # how it is judged: not what ran
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    assert existing_run(cfg, run_dir) == ("finished", None)
    saved["optimizer"]["lr"] = 0.5  # what ran did change: still refused
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ValueError, match="optimizer.lr"):
        existing_run(cfg, run_dir)
