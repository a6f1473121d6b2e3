"""The signal story without a cluster (tests/slurm runs it on a real SLURM): the shipped launchers ask SLURM for a
signal the run answers, the run listens for it only under SLURM, and docs/slurm.md shows the job script the tests
submit."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from alexnet.jobs.slurm import PREEMPTION_SIGNALS
from conftest import CONF, ROOT


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm_gpu"])
def test_the_shipped_slurm_launchers_ask_for_a_signal_the_run_answers(launcher: str) -> None:
    from submitit.slurm.slurm import SlurmJobEnvironment

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True).hydra.launcher
    # what submitit writes into the sbatch script: USR_SIG (SUBMITIT_PREEMPT_SIGNAL, default USR2) @ signal_delay_s,
    # unless additional_parameters names a signal of its own
    asked = (cfg.additional_parameters or {}).get("signal") or f"{SlurmJobEnvironment.USR_SIG}@{cfg.signal_delay_s}"
    name, seconds = asked.removeprefix("B:").split("@")
    assert signal.Signals[f"SIG{name}"] in PREEMPTION_SIGNALS
    assert int(seconds) >= 60  # SLURM sends it up to a minute early or late: the checkpoint needs the rest


def listens(env: dict[str, str]) -> list[bool]:
    """Whether a fresh interpreter's handlers for SIGUSR1 and SIGUSR2 are ours after listen_for_preemption."""
    code = (
        "import signal; from alexnet.jobs import slurm; slurm.listen_for_preemption(); "
        "print([signal.getsignal(s) is slurm._hear for s in slurm.PREEMPTION_SIGNALS])"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT / "src")},
                          capture_output=True, text=True, check=True)  # fmt: skip
    return eval(done.stdout)


def test_the_run_listens_for_slurms_warning_only_in_a_slurm_job() -> None:
    job = {"SLURM_JOB_ID": "12", "SLURM_JOB_NAME": "alexnet"}
    assert listens(job) == [True, True]
    assert listens({}) == [False, False]  # elsewhere a user signal keeps its meaning
    assert listens({**job, "SLURM_JOB_NAME": "interactive"}) == [False, False]  # salloc's shell: no batch job


def test_a_warning_is_kept_until_the_run_asks() -> None:
    code = (
        "import os, signal; from alexnet.jobs import slurm; slurm.listen_for_preemption(); "
        "before = slurm.preemption_warning(); "
        "os.kill(os.getpid(), signal.SIGUSR2); os.kill(os.getpid(), signal.SIGUSR1); "
        "print(before, slurm.preemption_warning())"
    )
    env = {"SLURM_JOB_ID": "12", "SLURM_JOB_NAME": "alexnet", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # not killed by either signal
    assert done.stdout.split() == ["None", "SIGUSR2"]  # the first one heard


def test_the_slurm_docs_show_the_job_script_the_tests_submit() -> None:
    script = (ROOT / "docs" / "train.sbatch").read_text()
    docs = (ROOT / "docs" / "slurm.md").read_text()
    assert f"```bash\n{script}```" in docs
    assert re.search(r"^#SBATCH --signal=USR2@\d+$", script, re.MULTILINE) and "\nsrun python src/train.py" in script
