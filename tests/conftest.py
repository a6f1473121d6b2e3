"""Shared fixtures: small generated Fashion-MNIST files, composed configs, runs of train.py (a subprocess) and of
alexnet.train.pipeline.train (in this process), and a real single-node SLURM cluster (tests/slurm/cluster.sh)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# One thread per test process, before torch is imported (its children inherit it): the suite runs a worker per core
# (pytest-xdist, pyproject.toml), and torch's OpenMP threads spinning against the other worker's cost more than they
# give to nets this small; on 2 cores this halved the suite's CPU time (docs/install.md). A user's setting stays.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from forkserver import ForkServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("ALEXNET_ROOT", str(ROOT))


def write_idx(path: Path, array: torch.Tensor) -> None:
    """The idx format of the original files: zero, zero, type 0x08 (ubyte), ndim, dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.to(torch.uint8).numpy().tobytes())


def make_fashion_like(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """28x28 images whose class is a bright bar at a class-dependent row: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
    return images, labels


def write_fashion_mnist(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_fashion_like(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion-mnist"))


def data_overrides(folder: Path) -> list[str]:
    """Point the data module at `folder` only: no system copy, no download; its generated files are not the published
    ones, on purpose (data.checksums=off)."""
    return [f"data.data_dir={folder}", "data.search_dirs=[]", "data.download_url=null", "data.val_size=100",
            "data.checksums=off"]  # fmt: skip


def mini_kwargs(**overrides) -> dict:
    """AlexNet's arguments in the embedded default, `model=alexnet_mini`, as the config gives them."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        model = OmegaConf.to_container(compose("train").model, resolve=True)
    del model["_target_"], model["devices"]
    return {**model, **overrides}


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config src/train.py's task gets: Hydra's own node taken out, the experiment named from its choice."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.experiment_name = cfg.experiment_name  # read from hydra.runtime.choices while that is there
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


def checked_build(cfg: DictConfig) -> tuple:
    """What pipeline.train does with a config before the run starts: check every value once, then build the parts."""
    from alexnet.train.build import build, check_values

    check_values(cfg)
    return build(cfg)


@pytest.fixture
def train_cfg(tmp_path: Path, fmnist_dir: Path):
    """Compose the train config on the small generated data, writing into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_train([*data_overrides(fmnist_dir), "debug=fast", *overrides], tmp_path / "run")

    return make


def run_script(
    script: str, *overrides: str, cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """python src/<script> as a user would run it (in `env`, default this process's), output captured."""
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_in_process(overrides: list[str], run_dir: Path) -> dict:
    """What `python src/train.py OVERRIDES hydra.run.dir=RUN_DIR` does once Hydra has composed the config:
    alexnet.train.pipeline.train in this process, without torch, Lightning and Hydra starting again. The run directory
    gets the same files as the command line's, less Hydra's own (.hydra/, train.log). For tests of what a run
    writes; tests of argv, exit codes, the entry point's messages, signals and sweeps run the script
    (run_script)."""
    from alexnet.train.pipeline import train

    seeded = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        return train(compose_train(overrides, run_dir))
    finally:  # Lightning's seed_everything exports the seed: later subprocesses of run_script must not inherit it
        for key, value in seeded.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def evaluate_in_process(overrides: list[str], out_dir: Path) -> dict:
    """What `python src/eval.py OVERRIDES hydra.run.dir=OUT_DIR` does after Hydra: alexnet.train.pipeline.evaluate here;
    returns the report it writes to OUT_DIR/eval.json."""
    from alexnet.train.pipeline import evaluate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    return evaluate(cfg)


@pytest.fixture
def train_here(tmp_path: Path, fmnist_dir: Path):
    """train_in_process on the generated data into tmp_path/run (or run_dir); returns (summary, run_dir)."""

    def run(*overrides: str, run_dir: Path | None = None, generated_data: bool = True) -> tuple[dict, Path]:
        run_dir = run_dir or tmp_path / "run"
        data = data_overrides(fmnist_dir) if generated_data else []
        return train_in_process([*data, *overrides], run_dir), run_dir

    return run


def cli_environment(env: dict[str, str] | None) -> dict[str, str]:
    """run_cli's children: `env` (default this process's environment), unbuffered, with Hydra's full tracebacks."""
    return {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}


@pytest.fixture(scope="session")
def run_cli() -> Iterator:
    """run_cli(script, *args, cwd=ROOT, timeout=600, env=None): `python src/<script> ARGS` as a child of a
    pre-started interpreter (tests/forkserver.py), for tests of argv, exit codes, messages and sweeps (in `env`,
    default this process's environment); returns a CompletedProcess with the output captured, or raises
    subprocess.TimeoutExpired. Commands run side by side when called from several threads. Signals (the test needs
    the process's id) and import-time output: run_script."""
    server = ForkServer(cli_environment)
    yield server.run
    server.close()


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> tuple[str, Path]:
    """One finished debug=fast run of a net narrower than today's default, with centre-crop testing, shared by the
    tests that only read it (test_train.py, test_predict.py); returns what it printed and its directory."""
    run_dir = tmp_path_factory.mktemp("fast_run") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        overrides = ["debug=fast", "model.width=0.125", "model.fc_width=64", "data.test_crops=1", "data.batch_size=32"]
        train_in_process([*data_overrides(fmnist_dir), *overrides], run_dir)
    return printed.getvalue(), run_dir


@pytest.fixture
def train_run(tmp_path: Path, fmnist_dir: Path, run_cli):
    """Run src/train.py (run_cli) on the generated data into tmp_path/run; returns (process, run_dir)."""

    def run(*overrides: str, generated_data: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
        run_dir = tmp_path / "run"
        data = data_overrides(fmnist_dir) if generated_data else []
        proc = run_cli("train.py", *data, f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}/logs", *overrides)
        return proc, run_dir

    return run


# --- ILSVRC-like trees (tests/data/test_imagenet.py, tests/end_to_end/test_predict.py) ---------------------------

# WNIDs whose devkit order (ILSVRC2012_ID 1, 2, 3, 4) is not their sorted order: a mix-up gives wrong labels.
DEVKIT_ORDER = ["n03000134", "n01443537", "n02102040", "n01440764"]
WNIDS = sorted(DEVKIT_ORDER)
WORDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
         "n02102040": "English springer", "n03000134": "chainlink fence"}  # fmt: skip
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 210), (230, 210, 40)]  # class i in sorted order


def class_image(label: int, size: tuple[int, int], seed: int):
    """A PIL RGB image of its class's colour with some noise: the content says the label."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    noise = rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(np.clip(np.array(COLOURS[label]) + noise, 0, 255).astype(np.uint8))


def write_meta_mat(path: Path) -> None:
    """The devkit's meta.mat: a 1-column struct array `synsets` with the real fields; leaves get IDs 1..4 in
    DEVKIT_ORDER, then one non-leaf synset, as in the real file (1000 leaves, then 860 inner nodes)."""
    import numpy as np
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]  # fmt: skip
    synsets = np.zeros((len(DEVKIT_ORDER) + 1, 1), dtype=[(f, object) for f in fields])
    for i, wnid in enumerate(DEVKIT_ORDER):
        synsets[i, 0] = (i + 1, wnid, WORDS[wnid], f"gloss of {wnid}", 0, np.zeros((1, 0)), 0, 1300)
    synsets[-1, 0] = (len(DEVKIT_ORDER) + 1, "n00001740", "entity", "that which exists", 2,
                      np.array([[1, 2]]), 19, 0)  # fmt: skip
    savemat(path, {"synsets": synsets})


def write_ilsvrc(
    root: Path,
    val_layout: str = "folders",
    train_per_class: int = 3,
    val_per_class: int = 2,
    size: tuple[int, int] = (40, 30),
) -> dict[str, int]:
    """An ILSVRC-2012-like tree; val/ in the layout `folders`, `devkit` or `kaggle` (Kaggle's folders too).
    Returns the true label (sorted-WNID index) of every validation image by file stem."""
    base = root / "ILSVRC/Data/CLS-LOC" if val_layout == "kaggle" else root
    for label, wnid in enumerate(WNIDS):
        (base / "train" / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            class_image(label, size, seed=100 * label + i).save(base / "train" / wnid / f"{wnid}_{i}.JPEG")
    # validation images in an interleaved class order, numbered as the real ones
    truth = {}
    n = val_per_class * len(WNIDS)
    for k in range(n):
        label = (3 * k + 1) % len(WNIDS)  # 1, 0, 3, 2, 1, ...: each class val_per_class times
        stem = f"ILSVRC2012_val_{k + 1:08d}"
        truth[stem] = label
        folder = base / "val" / (WNIDS[label] if val_layout == "folders" else "")
        folder.mkdir(parents=True, exist_ok=True)
        class_image(label, size, seed=10_000 + k).save(folder / f"{stem}.JPEG")
    if val_layout == "devkit":
        devkit = root / "ILSVRC2012_devkit_t12" / "data"
        devkit.mkdir(parents=True)
        write_meta_mat(devkit / "meta.mat")
        ids = [DEVKIT_ORDER.index(WNIDS[truth[s]]) + 1 for s in sorted(truth)]
        (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))
    elif val_layout == "kaggle":
        rows = [f"{s},{WNIDS[label]} 1 2 30 25 {WNIDS[label]} 3 4 20 20 " for s, label in sorted(truth.items())]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {WORDS[w]}\n" for w in WNIDS))
    return truth


def ilsvrc_overrides(root: Path, *extra: str) -> list[str]:
    """data=imagenet on a generated tree: its 4 classes, 32x32 stored, 28x28 crops (the mini net's input)."""
    return ["data=imagenet", f"data.root={root}", "data.num_classes=4", "data.stored_size=32", "data.crop_size=28",
            *extra]  # fmt: skip


# --- a real SLURM (tests/slurm/) ---------------------------------------------------------------------------------
# tests/slurm/cluster.sh brings a single-node cluster up once per session (the tests marked `slurm` are skipped, with
# the script's own reason, where it cannot: not root, no package registry, a daemon that fails) and down at the end,
# unless it was up before the session. Jobs run this checkout's code (PYTHONPATH) in the test's environment (sbatch
# exports it), so that the `python` of a job script is the test's; W&B stays offline.

SLURM_CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"


def _cluster(command: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SLURM_CLUSTER), command], capture_output=True, text=True, timeout=timeout)


class Slurm:
    """The cluster as the tests use it: its client commands in the jobs' environment, and the jobs of one test."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.before: set[str] = set()

    def run(self, *command: str, check: bool = True) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    def jobs(self) -> set[str]:
        return set(self.run("squeue", "-h", "-o", "%i").split())

    def state(self, job: str) -> str:
        """The job's state (PENDING, RUNNING, COMPLETED, CANCELLED, ...): squeue while SLURM holds it, else sacct."""
        state = self.run("squeue", "-h", "-j", job, "-o", "%T", check=False)
        if state:
            return state.split()[0]
        rows = self.run("sacct", "-n", "-X", "-P", "-j", job, "-o", "State", check=False).splitlines()
        return rows[-1].split()[0] if rows else "UNKNOWN"  # "CANCELLED by 0": the state, not who

    def wait_for_state(self, job: str, states: tuple[str, ...], timeout: float = 120) -> str:
        deadline = time.time() + timeout
        while (state := self.state(job)) not in states:
            assert time.time() < deadline, f"job {job} still {state} after {timeout} s, not {'/'.join(states)}"
            time.sleep(0.5)
        return state

    def release_when_requeued(self, job: str) -> None:
        """A requeued job waits in PENDING (Reason=BeginTime) for its credential's life (cluster.sh's cred_expire,
        10 s; SLURM's default 120 s): start it again at once."""
        self.wait_for_state(job, ("PENDING",))
        self.run("scontrol", "update", f"jobid={job}", "starttime=now", check=False)

    def cancel_own(self) -> None:
        """Cancel what a test left in the queue (it failed half-way), so that the next test has the node to itself."""
        left = self.jobs() - self.before
        if left:
            self.run("scancel", *sorted(left), check=False)
            deadline = time.time() + 60
            while self.jobs() - self.before and time.time() < deadline:
                time.sleep(0.5)


def _unavailable(reason: str) -> None:
    """Skip the SLURM tests, or fail them where SLURM is required (.ci/run: ALEXNET_REQUIRE_SLURM=1)."""
    if os.environ.get("ALEXNET_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason} (ALEXNET_REQUIRE_SLURM=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Slurm]:
    try:
        was_up = _cluster("status", timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"SLURM unavailable: {e}")
    if not was_up:
        up = _cluster("up", timeout=1800)  # the first time on a fresh machine: apt-get installs SLURM and MariaDB
        if up.returncode != 0:
            lines = (up.stderr or up.stdout).strip().splitlines()
            _unavailable(lines[-1] if lines else f"cluster.sh up: exit {up.returncode}")
    conf = _cluster("env", timeout=60).stdout.strip().removeprefix("export SLURM_CONF=")
    env = {
        # not the W&B service of a run in this process (wandb.init exports its address): a job starts its own, which
        # SLURM's signals reach as they reach the job's other processes
        **{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
        "SLURM_CONF": conf,
        # the jobs import this checkout's package and run this interpreter's `python`
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
        "HYDRA_FULL_ERROR": "1",
    }
    yield Slurm(env)
    if not was_up:
        _cluster("down", timeout=300)


@pytest.fixture
def slurm(slurm_cluster: Slurm) -> Iterator[Slurm]:
    slurm_cluster.before = slurm_cluster.jobs()
    yield slurm_cluster
    slurm_cluster.cancel_own()
