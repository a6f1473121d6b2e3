"""Runs on a real SLURM (tests/slurm/cluster.sh): a sweep through Hydra's submitit launcher as shipped, a job of that
launcher and a job of docs/train.sbatch (the job script docs/slurm.md shows) preempted with the signal each asks
SLURM for and resumed to the bitwise weights of an uninterrupted run with W&B on, and a cancelled job of each reported
in the project's own words. Each requeued job is started again at once (SLURM would hold it for its credential's
life); docs/slurm.md says how long these tests take."""

from __future__ import annotations

import json
import re
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, Slurm, data_overrides

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOB_SCRIPT = ROOT / "docs" / "train.sbatch"
# 3 epochs of 125 batches (500 training images in batches of 4): a signal after the first epoch's checkpoint lands
# inside the second epoch, whose position is what an exact resume must get right
SMALL = ["model.width=0.125", "model.fc_width=64", "data.batch_size=4", "data.test_crops=1", "test=false",
         "callbacks.train_eval_error=null", "trainer.max_epochs=3", "seed=7", "callbacks.progress_bar=null",
         "callbacks.model_summary=null", "logger=[csv,wandb]"]  # fmt: skip
STEPS_PER_EPOCH = 125
LAUNCHER = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=15"]


def wait_for(what: str, ready, timeout: float = 300, alive=None) -> None:
    """Poll `ready()` until true; fail after `timeout` s, or at once when `alive()` (the sweep, say) is false."""
    deadline = time.time() + timeout
    while not ready():
        assert alive is None or alive(), f"ended before {what}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


def launcher_job_id(job_dir: Path) -> str:
    """The SLURM job of a sweep job (<array>_<task>), as Hydra's submitit launcher records it in the job's folder."""
    return str(yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])


def requested_signal(script: str) -> str:
    """The signal a job script asks SLURM for before its time limit (`#SBATCH --signal=[B:]SIG@seconds`)."""
    match = re.search(r"^#SBATCH --signal=(?:B:)?(\w+)@\d+", script, re.MULTILINE)
    assert match, "the job script asks SLURM for no signal"
    return match.group(1)


def launcher_signal(sweep: Path) -> str:
    return requested_signal(next((sweep / ".submitit").glob("*/*_submission.sh")).read_text())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_bitwise_equal(resumed: Path, reference: Path) -> None:
    a, b = weights(resumed), weights(reference)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ from the uninterrupted run's in {different}"
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (resumed, reference))
    assert sa["steps"] == sb["steps"] == 3 * STEPS_PER_EPOCH and sa["final_val"] == sb["final_val"]


def hpc_step(run_dir: Path, n: int) -> int:
    return torch.load(run_dir / f"hpc_ckpt_{n}.ckpt", weights_only=True)["global_step"]


def wandb_runs(run_dir: Path) -> list[Path]:
    """The run's offline W&B folders: one per start of the job, all under the id kept in the run directory."""
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    return sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))


def sweep_in_background(run_cli, slurm: Slurm, *args: str) -> Future:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(run_cli, "train.py", "-m", *args, env=slurm.env, timeout=900)
    pool.shutdown(wait=False)
    return future


def listening(job: str, signal_name: str) -> bool:
    """Whether the job's `python src/train.py` process has installed its handler for the signal (/proc's SigCgt):
    from then on, a signal during its imports, data set-up or checkpoint load must be kept, not kill it."""
    bit = 1 << (signal.Signals[f"SIG{signal_name}"] - 1)
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if len(argv) < 2 or b"python" not in Path(argv[0].decode()).name.encode() or argv[1] != b"src/train.py":
                continue  # srun's own command line names src/train.py too, and srun catches the signal to forward it
            if f"SLURM_JOB_ID={job}".encode() not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            caught = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("SigCgt"))
        except (OSError, StopIteration):
            continue
        if int(caught.split()[1], 16) & bit:
            return True
    return False


def test_a_launcher_sweep_writes_every_jobs_summary_and_names_the_failed_job_of_all(
    slurm: Slurm, tmp_path: Path, fmnist_dir: Path, run_cli
) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py", "-m", "debug=fast", *data_overrides(fmnist_dir), *SMALL[:4], "model.lrn.beta=0.75,-1,0.5",
        *LAUNCHER, f"hydra.sweep.dir={sweep}", env=slurm.env, timeout=900,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    for good in ("0", "2"):
        assert json.loads((sweep / good / "summary.json").read_text())["steps"] == 3, out[-3000:]
    record = json.loads((sweep / "1" / "failed.json").read_text())
    assert record["error"] == "ConfigError" and "model.lrn.beta=-1" in record["message"]
    tail = proc.stderr.strip().splitlines()
    at = next(i for i, line in enumerate(tail) if "jobs failed" in line)
    assert "error: 1 of 3 jobs failed" in tail[at] and f"{sweep / '1'}: ConfigError" in tail[at + 1]
    assert "Traceback" not in proc.stderr


def test_a_launcher_job_preempted_with_the_launchers_signal_resumes_bitwise_with_wandb_on(
    slurm: Slurm, tmp_path: Path, fmnist_dir: Path, run_cli
) -> None:
    # two jobs of one config (print_config changes nothing trained): job 0 is preempted, job 1 is the reference,
    # side by side on the node's two CPUs
    sweep = tmp_path / "sweep"
    twins = "extras.print_config=true,false"
    done = sweep_in_background(
        run_cli, slurm, *data_overrides(fmnist_dir), *SMALL, twins, *LAUNCHER, f"hydra.sweep.dir={sweep}"
    )
    job_dir = sweep / "0"
    wait_for("job 0's first checkpoint", (job_dir / "checkpoints" / "last.ckpt").exists, alive=lambda: not done.done())
    job = launcher_job_id(job_dir)
    signal_name = launcher_signal(sweep)  # as shipped: what submitit asks SLURM for (USR2)
    slurm.run("scancel", f"--signal={signal_name}", job)
    slurm.release_when_requeued(job)
    proc = done.result(timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert_bitwise_equal(job_dir, sweep / "1")
    assert hpc_step(job_dir, 1) % STEPS_PER_EPOCH  # saved inside an epoch
    log = next((sweep / ".submitit" / job).glob("*_log.err")).read_text()  # both starts of the job
    assert f"requeued: SIG{signal_name}: saved {job_dir / 'hpc_ckpt_1.ckpt'}" in log
    assert f"SLURM job {job} requeued" in log and f"resuming {job_dir}" in log
    assert "UncompletedJobError" not in log + out and "Traceback" not in log
    assert len(wandb_runs(job_dir)) == 2  # the requeued job continued the same W&B run


def test_a_cancelled_launcher_job_is_listed_in_the_projects_words_with_wandb_on(
    slurm: Slurm, tmp_path: Path, fmnist_dir: Path, run_cli
) -> None:
    sweep = tmp_path / "sweep"
    args = [*data_overrides(fmnist_dir), *SMALL, "trainer.max_epochs=3,1", *LAUNCHER, f"hydra.sweep.dir={sweep}"]
    done = sweep_in_background(run_cli, slurm, *args)
    job_dir = sweep / "0"
    wait_for("job 0's first checkpoint", (job_dir / "checkpoints" / "last.ckpt").exists, alive=lambda: not done.done())
    slurm.run("scancel", launcher_job_id(job_dir))
    proc = done.result(timeout=900)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    tail = proc.stderr.strip().splitlines()
    at = next(i for i, line in enumerate(tail) if "jobs failed" in line)
    assert "error: 1 of 2 jobs failed" in tail[at]
    assert f"{job_dir}: Interrupted: killed (SIGTERM) at step" in tail[at + 1] and "on_exception.ckpt" in tail[at + 1]
    assert "Traceback" not in proc.stderr and "UncompletedJobError" not in proc.stderr
    assert (job_dir / "checkpoints" / "on_exception.ckpt").exists() and (sweep / "1" / "summary.json").exists()
    assert json.loads((job_dir / "failed.json").read_text())["error"] == "Interrupted"
    assert "W&B could not close its run" in (job_dir / "train.log").read_text()  # the kill reached W&B's service too


def submit(slurm: Slurm, tmp_path: Path, *overrides: str) -> tuple[str, Path]:
    """docs/train.sbatch with train.py's overrides, from the repository's root as docs/slurm.md says; the job's id and
    its run directory (logs/train/runs/slurm-<id> under paths.log_dir)."""
    job = slurm.run(
        "sbatch", "--parsable", "--cpus-per-task=1", "--time=15", f"--output={tmp_path}/slurm-%j.out",
        str(JOB_SCRIPT.relative_to(ROOT)), *overrides, f"paths.log_dir={tmp_path / 'logs'}",
    )  # fmt: skip
    return job, tmp_path / "logs" / "train" / "runs" / f"slurm-{job}"


def test_an_sbatch_job_preempted_during_start_up_and_mid_epoch_resumes_bitwise_with_wandb_on(
    slurm: Slurm, tmp_path: Path, fmnist_dir: Path
) -> None:
    command = [*data_overrides(fmnist_dir), *SMALL]
    job, run = submit(slurm, tmp_path, *command)
    reference, reference_run = submit(slurm, tmp_path, *command)
    signal_name = requested_signal(JOB_SCRIPT.read_text())
    # the first warning as soon as the process listens: during its imports, before any checkpoint exists
    wait_for("the job's handler", lambda: listening(job, signal_name), timeout=120)
    slurm.run("scancel", f"--signal={signal_name}", job)
    slurm.release_when_requeued(job)
    assert hpc_step(run, 1) < STEPS_PER_EPOCH  # kept for the first training batches, not killed
    # the second inside the second epoch of the requeued job
    first = run / "hpc_ckpt_1.ckpt"
    last = run / "checkpoints" / "last.ckpt"
    wait_for("the requeued job's first epoch", lambda: last.exists() and last.stat().st_mtime > first.stat().st_mtime)
    slurm.run("scancel", f"--signal={signal_name}", job)
    slurm.release_when_requeued(job)
    for j in (job, reference):
        slurm.wait_for_state(j, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=600)
    output = (tmp_path / f"slurm-{job}.out").read_text()
    assert slurm.state(job) == "COMPLETED", output[-3000:]
    assert_bitwise_equal(run, reference_run)
    assert hpc_step(run, 2) % STEPS_PER_EPOCH and hpc_step(run, 2) > STEPS_PER_EPOCH
    assert output.count(f"requeued: SIG{signal_name}: saved") == 2 and output.count(f"resuming {run}") == 2
    assert "Traceback" not in output
    assert len(wandb_runs(run)) == 3


def test_a_cancelled_sbatch_job_says_so_in_the_projects_words_with_wandb_on(
    slurm: Slurm, tmp_path: Path, fmnist_dir: Path
) -> None:
    job, run = submit(slurm, tmp_path, *data_overrides(fmnist_dir), *SMALL)
    wait_for("the job's first checkpoint", (run / "checkpoints" / "last.ckpt").exists)
    slurm.run("scancel", job)
    assert slurm.wait_for_state(job, ("CANCELLED", "COMPLETED", "FAILED")) == "CANCELLED"
    output = tmp_path / f"slurm-{job}.out"
    wait_for("the run's last words", lambda: "error: killed (SIGTERM)" in output.read_text(), timeout=30)
    text = output.read_text()
    assert "error: killed (SIGTERM) at step" in text and f"Resume with: python src/train.py resume={run}" in text
    assert "Traceback" not in text and "ConnectionResetError" not in text.split("error: killed")[1]
    assert "W&B could not close its run" in text  # the kill reached W&B's service too, and did not hide the kill
    assert (run / "checkpoints" / "on_exception.ckpt").exists() and not (run / "summary.json").exists()
